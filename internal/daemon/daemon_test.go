package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/nfq"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

const rulesV1 = `
interface wan wan0
interface lan lan0
in on wan default deny log {
    permit tcp from any to any port 2100
}
in on lan default deny log {
}
timeouts { tcp-idle 3s tcp-synwait 2s }
`

// rulesV2 also permits port 2200.
const rulesV2 = `
interface wan wan0
interface lan lan0
in on wan default deny log {
    permit tcp from any to any port { 2100 2200 }
}
in on lan default deny log {
}
timeouts { tcp-idle 3s tcp-synwait 2s }
`

func writeRules(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesBadRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.rules")
	writeRules(t, path, "interface wan wan0\nin on wan default maybe {\n}\nbogus\n")
	core, logs := observer.New(zap.DebugLevel)
	err := Run(context.Background(), Options{RulesFile: path, Logger: zap.New(core), Socket: filepath.Join(t.TempDir(), "s.sock")})
	if err == nil || !strings.Contains(err.Error(), "errors in the rules") {
		t.Fatalf("Run = %v, want a refusal naming the rule errors", err)
	}
	if n := logs.FilterMessage("rule error").Len(); n < 2 {
		t.Fatalf("%d rule errors logged, want every error (at least 2)", n)
	}
	for _, e := range logs.FilterMessage("rule error").All() {
		if !strings.Contains(e.ContextMap()["error"].(string), "bad.rules:") {
			t.Errorf("rule error without file:line: %v", e.ContextMap())
		}
	}
}

// TestLoadRulesNotRegular checks that a FIFO is refused instead of read
// (which would block until someone writes to it).
func TestLoadRulesNotRegular(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo.rules")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadRules(zap.NewNop(), path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("loadRules(FIFO) = %v, want a refusal", err)
	}
}

// TestLoadRulesWarnsDropAll checks that a valid rule file without any
// block, which drops all forwarded traffic, is loaded with a warning.
func TestLoadRulesWarnsDropAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.rules")
	writeRules(t, path, "# nothing yet\n")
	core, logs := observer.New(zap.DebugLevel)
	if _, err := loadRules(zap.New(core), path); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessageSnippet("all forwarded traffic is dropped").Len() != 1 {
		t.Errorf("no warning for a file without blocks: %v", logs.All())
	}
}

func TestRunBadOptions(t *testing.T) {
	if err := Run(context.Background(), Options{RulesFile: "x", Queues: -1}); err == nil {
		t.Error("Run accepted -1 queues")
	}
	if err := Run(context.Background(), Options{RulesFile: "x", LogLevel: "loud"}); err == nil ||
		!strings.Contains(err.Error(), "log level") {
		t.Errorf("Run with a bad log level: %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	for _, format := range []string{"json", "console"} {
		buf.Reset()
		l, err := buildLogger(zapcore.InfoLevel, format, zapcore.AddSync(&buf))
		if err != nil {
			t.Fatal(err)
		}
		l.Debug("hidden")
		l.Info("shown", zap.Int("n", 1))
		out := buf.String()
		if strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
			t.Errorf("%s: %q", format, out)
		}
		if json := strings.HasPrefix(out, "{"); json != (format == "json") {
			t.Errorf("%s: output %q", format, out)
		}
	}
	if _, err := buildLogger(zapcore.InfoLevel, "xml", zapcore.AddSync(&buf)); err == nil {
		t.Error("xml format accepted")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := newLogger("", "auto", f)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("to a file")
	l.Sync()
	b, _ := os.ReadFile(f.Name())
	if !bytes.HasPrefix(b, []byte("{")) {
		t.Errorf("auto format on a file is not JSON: %q", b)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(100, 0)
	l := newLimiter(10, 3)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if ok, _ := l.allow(); !ok {
			t.Fatalf("burst: line %d refused", i)
		}
	}
	for range 5 {
		if ok, _ := l.allow(); ok {
			t.Fatal("line allowed beyond the burst")
		}
	}
	now = now.Add(100 * time.Millisecond) // one token back
	if ok, sup := l.allow(); !ok || sup != 5 {
		t.Fatalf("after refill: allow = %v, %d suppressed; want true, 5", ok, sup)
	}
	if ok, _ := l.allow(); ok {
		t.Fatal("second line allowed with no token")
	}
}

// daemonUnderTest runs Run in the test's network namespace.
type daemonUnderTest struct {
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   <-chan struct{}
	err    error
}

func startDaemon(t *testing.T, o Options) *daemonUnderTest {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	o.Logger = zap.New(core)
	if o.Socket == "" {
		o.Socket = filepath.Join(t.TempDir(), "inspectd.sock")
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemonUnderTest{logs: logs, cancel: cancel}
	d.done = nstest.Go(t, func() { d.err = Run(ctx, o) })
	d.wait(t, "inspectd started", 1)
	return d
}

// wait waits until msg has been logged n times.
func (d *daemonUnderTest) wait(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for d.logs.FilterMessage(msg).Len() < n {
		select {
		case <-d.done:
			t.Fatalf("daemon stopped before logging %q: %v", msg, d.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemonUnderTest) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if d.err != nil {
		t.Fatalf("Run: %v", d.err)
	}
}

// echoServer listens on the topology's server for TCP on the given ports
// and echoes.
func echoServer(t *testing.T, tp *nstest.Topology, ports ...string) {
	for _, port := range ports {
		nstest.Echo(t, tp.Server, net.JoinHostPort(nstest.ServerAddr, port))
	}
}

// dial connects from the client to the server's port, waiting long for a
// connection that must pass (a loaded machine may be slow).
func dial(t *testing.T, tp *nstest.Topology, port string) (net.Conn, error) {
	return dialWithin(t, tp, port, 5*time.Second)
}

// dialBlocked tries a connection that must not pass: a short wait is
// enough to see it refused.
func dialBlocked(t *testing.T, tp *nstest.Topology, port string) (net.Conn, error) {
	return dialWithin(t, tp, port, time.Second)
}

func dialWithin(t *testing.T, tp *nstest.Topology, port string, wait time.Duration) (net.Conn, error) {
	var c net.Conn
	var err error
	nstest.In(t, tp.Client, func() {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(nstest.ServerAddr, port), wait)
	})
	return c, err
}

func echo(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return err
}

// TestRunLive runs the daemon on a router namespace between a client and
// a server: rules decide, denials and sessions are logged, an offloaded
// flow outlives its idle timeout while it carries traffic, SIGHUP reloads
// the rules (and refuses a broken file) keeping sessions, and stopping
// removes the hooks.
func TestRunLive(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "iptables-restore", "ip6tables-restore", "iptables-save")
	tp := nstest.Route(t)
	echoServer(t, tp, "2100", "2200")
	path := filepath.Join(t.TempDir(), "inspectd.rules")
	writeRules(t, path, rulesV1)
	d := startDaemon(t, Options{RulesFile: path, Queues: 2, KeepAlive: 500 * time.Millisecond})
	start := d.logs.FilterMessage("inspectd started").All()[0].ContextMap()
	if start["queues"] != "0-1" || !strings.Contains(start["rules"].(string), "1 rule") {
		t.Errorf("start-up summary %v", start)
	}
	if s := nstest.Run(t, "iptables-save"); !strings.Contains(s, "-j INSPECTD-FWD") {
		t.Fatalf("hooks not installed:\n%s", s)
	}
	// A second daemon in the namespace is refused before it changes
	// anything (it would take over the first one's hooks).
	err := Run(context.Background(), Options{RulesFile: path, FirstQueue: 5, Logger: zap.NewNop(),
		Socket: filepath.Join(t.TempDir(), "second.sock")})
	if err == nil || !strings.Contains(err.Error(), "another inspectd runs in this network namespace") {
		t.Fatalf("second daemon: %v, want a refusal", err)
	}
	if s := nstest.Run(t, "iptables-save"); !strings.Contains(s, "--queue-balance 0:1") {
		t.Fatalf("the second daemon changed the hooks:\n%s", s)
	}
	// Another tool flushes FORWARD: the hooks come back.
	nstest.Run(t, "iptables", "-F", "FORWARD")
	d.wait(t, "hooks installed again", 1)
	if s := nstest.Run(t, "iptables-save"); !strings.Contains(s, "-A FORWARD -j INSPECTD-FWD") {
		t.Fatalf("hooks not installed again:\n%s", s)
	}

	c, err := dial(t, tp, "2100")
	if err != nil {
		t.Fatalf("permitted port: %v", err)
	}
	defer c.Close()
	if err := echo(c, "hello"); err != nil {
		t.Fatalf("permitted port: echo: %v", err)
	}
	if c2, err := dialBlocked(t, tp, "2200"); err == nil {
		c2.Close()
		t.Fatal("port 2200 admitted by rules v1")
	}
	d.wait(t, "deny", 1)
	deny := d.logs.FilterMessage("deny").All()[0].ContextMap()
	if deny["reason"] == "" || !strings.HasSuffix(deny["dst"].(string), ":2200") {
		t.Errorf("deny logged as %v", deny)
	}
	d.wait(t, "session-open", 1)

	// Traffic on the offloaded flow for twice its idle timeout: the
	// keep-alive must keep the session. (tcp-synwait is below tcp-idle so
	// that the table's first expiry check comes before the idle timeout;
	// with KeepAlive disabled this session closes.)
	for range 12 {
		if err := echo(c, strings.Repeat("x", 1000)); err != nil {
			t.Fatalf("offloaded flow: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := d.logs.FilterMessage("session-close").Len(); n != 0 {
		t.Fatalf("session closed while its offloaded flow carried traffic: %v",
			d.logs.FilterMessage("session-close").All()[0].ContextMap())
	}

	// A broken file is refused; the old rules stay.
	writeRules(t, path, "in on nowhere default deny {\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	d.wait(t, "reload refused, the old rules stay in force", 1)
	// A good file is put in force; the session survives.
	writeRules(t, path, rulesV2)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	d.wait(t, "rules reloaded", 1)
	c2, err := dial(t, tp, "2200")
	if err != nil {
		t.Fatalf("port 2200 after reload: %v", err)
	}
	c2.Close()
	if err := echo(c, "still here"); err != nil {
		t.Fatalf("session lost across reload: %v", err)
	}

	d.stop(t)
	if s := nstest.Run(t, "iptables-save") + nstest.Run(t, "ip6tables-save"); strings.Contains(s, "INSPECTD") {
		t.Fatalf("hooks left after stop:\n%s", s)
	}
	d.wait(t, "hooks removed", 1)
}

// TestQueueFailureKeepsHooks: when a queue fails, the daemon stops with
// an error but leaves its hooks, as a crash would: no new flow passes
// (fail closed) while an offloaded one keeps going. The next run removes
// the leftovers and takes over.
func TestQueueFailureKeepsHooks(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "iptables-restore", "ip6tables-restore", "iptables-save")
	tp := nstest.Route(t)
	echoServer(t, tp, "2100")
	path := filepath.Join(t.TempDir(), "inspectd.rules")
	writeRules(t, path, rulesV1)
	fail := make(chan struct{})
	injected := errors.New("injected queue failure")
	o := Options{RulesFile: path, Queues: 1}
	o.runQueue = func(q *nfq.Queue, ctx context.Context, h nfq.Handler) error {
		qctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-fail:
				cancel()
			case <-qctx.Done():
			}
		}()
		if err := q.Run(qctx, h); err != nil || ctx.Err() != nil {
			return err
		}
		return injected
	}
	d := startDaemon(t, o)
	c, err := dial(t, tp, "2100")
	if err != nil {
		t.Fatalf("permitted port: %v", err)
	}
	defer c.Close()
	if err := echo(c, "hello"); err != nil {
		t.Fatalf("permitted port: echo: %v", err)
	}

	close(fail)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop after its queue failed")
	}
	if !errors.Is(d.err, injected) {
		t.Fatalf("Run: %v, want the queue's error", d.err)
	}
	d.wait(t, "hooks left in place: no new flow passes until inspectd runs again (it removes them on start)", 1)
	if s := nstest.Run(t, "iptables-save"); !strings.Contains(s, "-A FORWARD -j INSPECTD-FWD") {
		t.Fatalf("hooks removed after a queue failure:\n%s", s)
	}
	if c2, err := dialBlocked(t, tp, "2100"); err == nil {
		c2.Close()
		t.Fatal("a new connection passed with no reader (fail closed)")
	}
	if err := echo(c, "offloaded"); err != nil {
		t.Fatalf("offloaded connection cut with no reader: %v", err)
	}

	d = startDaemon(t, Options{RulesFile: path, Queues: 1})
	d.wait(t, "removed hooks left by an earlier run", 1)
	c2, err := dial(t, tp, "2100")
	if err != nil {
		t.Fatalf("new connection after the restart: %v", err)
	}
	c2.Close()
	d.stop(t)
	if s := nstest.Run(t, "iptables-save") + nstest.Run(t, "ip6tables-save"); strings.Contains(s, "INSPECTD") {
		t.Fatalf("hooks left after stop:\n%s", s)
	}
}

// TestRunNoHooks prints the plan and leaves the ruleset alone.
func TestRunNoHooks(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "iptables-save")
	path := filepath.Join(t.TempDir(), "inspectd.rules")
	writeRules(t, path, rulesV1)
	var out bytes.Buffer
	d := startDaemon(t, Options{RulesFile: path, NoHooks: true, FirstQueue: 3, FailOpen: true, Stdout: &out})
	if s := nstest.Run(t, "iptables-save"); strings.Contains(s, "INSPECTD") {
		t.Errorf("--no-hooks installed hooks:\n%s", s)
	}
	d.stop(t)
	if !strings.Contains(out.String(), "-j NFQUEUE --queue-num 3 --queue-bypass") {
		t.Errorf("plan:\n%s", out.String())
	}
}

// TestEnterOwnNamespaceWithoutSysAdmin checks that the maintenance
// goroutine stays on when the daemon lacks CAP_SYS_ADMIN, as under the
// systemd unit: entering the namespace its thread is in already must not
// call setns(2), which needs it even then.
func TestEnterOwnNamespaceWithoutSysAdmin(t *testing.T) {
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, with its lowered capabilities, ends with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		data[0].Effective &^= 1 << unix.CAP_SYS_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		if err := netns.Set(ns); err == nil {
			done <- errors.New("setns succeeded without CAP_SYS_ADMIN: the test proves nothing here")
			return
		}
		done <- enterNamespace(ns)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
