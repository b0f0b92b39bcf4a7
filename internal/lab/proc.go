package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a background process running in a namespace with its output
// captured to a file.
type Proc struct {
	// Name labels the process in reports.
	Name string
	// NS is the namespace it runs in.
	NS NS
	// LogPath is the file holding its stdout and stderr.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status; read only after done is closed
}

func startProc(dir string, ns NS, name string, argv []string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: Start needs a command")
	}
	path := logPath(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: log file: %w", err)
	}
	defer f.Close() // the child holds its own copy
	// `ip netns exec` execs the program, so the pid we get is the program's.
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(ns)}, argv...)...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	p := &Proc{Name: name, NS: ns, LogPath: path, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns the exit status once Done is closed, nil before.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Signal sends sig to the process; a process that has exited is not an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("lab: signal %s: %w", p.Name, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to grace for the exit, then kills the
// process group. It returns the exit status.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Signal(syscall.SIGTERM) // only fails when already gone
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.done
	return p.err
}

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// WaitLog waits until the log contains substr. It fails when ctx ends or the
// process exits first; the error then quotes the log.
func (p *Proc) WaitLog(ctx context.Context, substr string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if strings.Contains(p.Log(), substr) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.Log(), substr) {
				return nil
			}
			return fmt.Errorf("lab: %s exited (%v) before logging %q; log:\n%s", p.Name, p.err, substr, p.Log())
		case <-ctx.Done():
			return fmt.Errorf("lab: %s did not log %q: %w; log:\n%s", p.Name, substr, ctx.Err(), p.Log())
		case <-t.C:
		}
	}
}
