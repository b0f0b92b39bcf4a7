package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/lab"
)

// firewall is one way to run the edge namespace.
type firewall struct {
	name string
	// stateful firewalls must block what was not negotiated; "none" lets
	// everything through, and negative tests use it as their control.
	stateful bool
	// check, if set, runs before the lab is built: a firewall that cannot
	// run fails fast there.
	check func(t *testing.T)
	setup func(t *testing.T, e *env)
}

var firewalls = []firewall{
	{name: "none", setup: func(*testing.T, *env) {}},
	{name: "kernel", stateful: true, setup: setupKernel},
	{name: "inspectd", stateful: true, check: checkInspectd, setup: setupInspectd}, // inspectd-dependent
}

// wantFirewall reports whether E2E_FIREWALLS (default: all) selects name.
func wantFirewall(name string) bool {
	v := os.Getenv("E2E_FIREWALLS")
	return v == "" || slices.Contains(strings.Split(v, ","), name)
}

// forEachFirewall runs f in a subtest per selected firewall, each with its
// own lab.
func forEachFirewall(t *testing.T, f func(t *testing.T, e *env)) {
	for _, fw := range firewalls {
		if !wantFirewall(fw.name) {
			continue
		}
		t.Run(fw.name, func(t *testing.T) {
			e := newEnv(t, fw)
			f(t, e)
		})
	}
}

// Files every lab serves over FTP and TFTP.
var files = map[string]int64{
	"small.bin": 64 << 10,
	"a.bin":     1 << 20,
	"b.bin":     3<<20 + 7,
	"big.bin":   8 << 20,
}

// env is a lab with its FTP and TFTP servers and firewall running.
type env struct {
	fw       firewall
	lab      *lab.Lab
	ftpRoot  string
	tftpRoot string
	work     string            // client-side download directory
	sums     map[string]string // file name → sha256
	inspectd *lab.Proc         // set by setupInspectd
}

func newEnv(t *testing.T, fw firewall) *env {
	t.Helper()
	if fw.check != nil {
		lab.Require(t)
		fw.check(t)
	}
	l := lab.New(t)
	e := &env{fw: fw, lab: l, ftpRoot: t.TempDir(), tftpRoot: t.TempDir(), work: t.TempDir(),
		sums: make(map[string]string)}
	for name, size := range files {
		sum, err := lab.WriteRandomFile(filepath.Join(e.ftpRoot, name), size)
		if err != nil {
			t.Fatal(err)
		}
		e.sums[name] = sum
		if _, err := lab.WriteRandomFile(filepath.Join(e.tftpRoot, "t-"+name), size); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, port := range []int{21, 2121} {
		if err := l.StartVsftpd(ctx, e.ftpRoot, port); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.StartTFTPD(ctx, e.tftpRoot, true); err != nil {
		t.Fatal(err)
	}
	fw.setup(t, e)
	return e
}

// ctx returns a context for one step, ended with the test.
func (e *env) ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run runs a command in ns and fails the test on error.
func (e *env) run(t *testing.T, ns lab.NS, d time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(e.ctx(t, d), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkFile fails unless path holds the served file name.
func (e *env) checkFile(t *testing.T, path, name string) {
	t.Helper()
	got, err := lab.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != e.sums[name] {
		t.Fatalf("%s differs from served %s (sha256 %s, want %s)", path, name, got[:12], e.sums[name][:12])
	}
}

// local returns a fresh path in the client's download directory.
func (e *env) local(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(e.work, "dl-")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// ftpLog reads the vsftpd protocol log of port and family from offset and
// returns the text and the new offset, so a test can see which commands
// its client really sent.
func (e *env) ftpLog(t *testing.T, port int, v6 bool, offset int64) (string, int64) {
	t.Helper()
	fam := "4"
	if v6 {
		fam = "6"
	}
	f, err := os.Open(filepath.Join(e.lab.Dir, fmt.Sprintf("vsftpd-%d-v%s.protocol.log", port, fam)))
	if os.IsNotExist(err) {
		return "", 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), offset + int64(len(b))
}

// setupKernel makes the edge a stateful iptables firewall using the
// kernel's FTP and TFTP helpers (lab.KernelFirewall, the ruleset
// equivalent to examples/lab.rules): the baseline inspectd replaces.
func setupKernel(t *testing.T, e *env) {
	if err := e.lab.KernelFirewall(e.ctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// labRules is the rule file the inspectd firewall runs with.
var labRules = filepath.Join(repoRoot, "examples", "lab.rules")

// checkInspectd fails unless the inspectd binary and examples/lab.rules
// exist. inspectd-dependent.
func checkInspectd(t *testing.T) {
	t.Helper()
	requireInspectd(t)
	if _, err := os.Stat(labRules); err != nil {
		t.Fatalf("inspectd firewall needs %s: %v", labRules, err)
	}
}

// setupInspectd starts inspectd on the edge with examples/lab.rules.
// inspectd-dependent.
func setupInspectd(t *testing.T, e *env) {
	rules, err := filepath.Abs(labRules)
	if err != nil {
		t.Fatal(err)
	}
	e.startInspectd(t, rules)
}

// startInspectd runs `inspectd run --rules rules --queues 2 --log-format
// json` in the edge namespace and waits for its "inspectd started" log line (logged once the queues are open and the hooks installed). The
// process stops with SIGTERM at the end of the test, and must exit cleanly.
// inspectd-dependent.
func (e *env) startInspectd(t *testing.T, rules string) *lab.Proc {
	t.Helper()
	bin := requireInspectd(t)
	sock := filepath.Join(t.TempDir(), "inspectd.sock")
	p, err := e.lab.Start(e.lab.Edge, "inspectd", bin, "run", "--rules", rules, "--queues", "2", "--log-format", "json", "--socket", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitLog(e.ctx(t, 15*time.Second), `"msg":"inspectd started"`); err != nil {
		t.Fatal(err)
	}
	e.inspectd = p
	t.Cleanup(func() {
		select {
		case <-p.Done():
			return // killed by the test on purpose, or already stopped
		default:
		}
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("inspectd did not stop cleanly on SIGTERM: %v\n%s", err, p.Log())
		}
	})
	return p
}

// curl runs curl in the client namespace with a connect timeout.
func (e *env) curl(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"-sS", "--connect-timeout", "5", "--max-time", "60"}, args...)
	return e.lab.Client.Run(ctx, "curl", args...)
}
