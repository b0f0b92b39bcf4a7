package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NS names a network namespace created with `ip netns add`.
type NS string

// Path is the namespace's file under /run/netns.
func (n NS) Path() string { return "/run/netns/" + string(n) }

// Command returns a command that runs name with args inside the namespace.
func (n NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", string(n), name}, args...)...)
}

// Run runs name with args inside the namespace and returns its combined
// output; a failure's error includes that output.
func (n NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: in %s: %s %s: %w: %s",
			n, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// PIDs lists the processes whose network namespace is n.
func (n NS) PIDs(ctx context.Context) ([]int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", string(n)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lab: ip netns pids %s: %w: %s", n, err, bytes.TrimSpace(out))
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("lab: ip netns pids %s: bad pid %q", n, f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Do runs f on an OS thread that has entered the namespace. Sockets that f
// creates belong to the namespace for their whole life, so f may hand them
// to other goroutines. f must not start goroutines that create sockets.
func (n NS) Do(f func() error) error {
	target, err := os.Open(n.Path())
	if err != nil {
		return fmt.Errorf("lab: open namespace: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: open own namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: enter %s: %w", n, err)
			return
		}
		ferr := f()
		if err := setns(orig); err != nil {
			// Leave the thread locked: the runtime ends it with this
			// goroutine instead of reusing a thread in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("lab: leave %s: %w", n, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// DialContext connects to address from inside the namespace. address must
// hold a literal IP, so no name resolution (which would run elsewhere) is
// needed. Its signature fits net.Dialer.DialContext users.
func (n NS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// DialFrom connects to address over TCP from inside the namespace with
// local address laddr (the zero Addr lets the kernel choose).
func (n NS) DialFrom(ctx context.Context, laddr netip.Addr, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		if laddr.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(laddr, 0))
		}
		var err error
		c, err = d.DialContext(ctx, "tcp", address)
		return err
	})
	return c, err
}

// Listen opens a listener inside the namespace.
func (n NS) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}
