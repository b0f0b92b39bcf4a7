package e2e

// The operator's view of a live daemon: the control socket and the CLI
// verbs during a real, slow, passive FTP download. inspectd-dependent:
// written against `inspectd run --rules FILE --socket PATH` serving the
// control API (internal/api).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/iosftp"
	"github.com/inspectd/inspectd/internal/lab"
)

// opsEnv is a lab with inspectd on the edge serving its control API on
// sock.
type opsEnv struct {
	*env
	bin, sock string
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	if !wantFirewall("inspectd") {
		t.Skip("inspectd not in E2E_FIREWALLS")
	}
	lab.Require(t)
	checkInspectd(t)
	o := &opsEnv{bin: requireInspectd(t), sock: filepath.Join(t.TempDir(), "inspectd.sock")}
	rules, err := filepath.Abs(labRules)
	if err != nil {
		t.Fatal(err)
	}
	o.env = newEnv(t, firewall{name: "inspectd", stateful: true, check: checkInspectd, setup: func(t *testing.T, e *env) {
		p, err := e.lab.Start(e.lab.Edge, "inspectd", o.bin, "run", "--rules", rules, "--queues", "2",
			"--log-format", "json", "--socket", o.sock)
		if err != nil {
			t.Fatal(err)
		}
		e.inspectd = p
		t.Cleanup(func() {
			select {
			case <-p.Done():
				return
			default:
			}
			if err := p.Stop(5 * time.Second); err != nil {
				t.Errorf("inspectd did not stop cleanly on SIGTERM: %v\n%s", err, p.Log())
			}
		})
		// The daemon is ready when its control socket answers.
		deadline := time.Now().Add(15 * time.Second)
		for {
			if _, _, err := o.cli(t, "stats"); err == nil {
				return
			}
			select {
			case <-p.Done():
				if strings.Contains(p.Log(), "-socket") {
					t.Fatalf("inspectd run does not accept --socket yet: the daemon must serve the control API (internal/api):\n%s", p.Log())
				}
				t.Fatalf("inspectd exited: %v\n%s", p.Err(), p.Log())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("inspectd's control socket %s did not answer within 15s (does the daemon serve internal/api?):\n%s", o.sock, p.Log())
			}
		}
	}})
	return o
}

// cli runs an inspectd CLI verb against the lab's daemon.
func (o *opsEnv) cli(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, append(args, "--socket", o.sock)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("inspectd %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String(), err
}

// cliJSON runs a verb with --json and decodes its output into v.
func (o *opsEnv) cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, _, err := o.cli(t, append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("inspectd %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// watcher runs `inspectd watch --json` and collects its events.
type watcher struct {
	mu     sync.Mutex
	events []api.Event
	bad    []string
}

func (o *opsEnv) watch(t *testing.T) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, o.bin, "watch", "--json", "--socket", o.sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev api.Event
			w.mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				w.bad = append(w.bad, sc.Text())
			} else {
				w.events = append(w.events, ev)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		cmd.Wait()
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.bad) > 0 {
			t.Errorf("watch printed lines that are not JSON: %q (stderr %s)", w.bad, errb.String())
		}
	})
	// The watch is live once it reports something: knock on a denied port
	// until it shows the denial (on a busy machine the CLI may take a
	// while to connect, and events before that are not replayed).
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancelDial := context.WithTimeout(context.Background(), 200*time.Millisecond)
		if c, err := o.lab.Client.DialContext(ctx, "tcp", hostPort(lab.ServerV4, 22)); err == nil {
			c.Close()
		}
		cancelDial()
		if _, ok := w.find(func(ev api.Event) bool { return ev.Kind == "deny" }); ok {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("inspectd watch showed no event within 15 s (stderr %s)", errb.String())
		}
	}
}

// find returns the first event that f accepts.
func (w *watcher) find(f func(api.Event) bool) (api.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range w.events {
		if f(ev) {
			return ev, true
		}
	}
	return api.Event{}, false
}

func (w *watcher) kinds() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var k []string
	for _, ev := range w.events {
		k = append(k, ev.Kind)
	}
	return strings.Join(k, " ")
}

type slowResult struct {
	n   int64
	err error
}

// slowDownload fetches file from the lab's IPv4 server over PASV, reading
// slowly through a 64 KiB receive buffer (curl --limit-rate cannot hold a
// transfer in flight: the kernel's buffers swallow megabytes). It reports
// the bytes read and why it stopped: nil after the whole file and the
// server's 226, an error when no data came for 5 s.
func (o *env) slowDownload(t *testing.T, file string) slowResult {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := &iosftp.Client{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := o.lab.Client.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(64 << 10)
		}
		return c, err
	}}
	c, err := cl.Login(ctx, hostPort(lab.ServerV4, 21))
	if err != nil {
		return slowResult{err: err}
	}
	defer c.Close()
	data, err := c.Retr(ctx, "PASV", file)
	if err != nil {
		return slowResult{err: err}
	}
	defer data.Close()
	var n int64
	buf := make([]byte, 16<<10)
	for {
		data.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := io.ReadFull(data, buf)
		n += int64(k)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			_, err = c.Expect("RETR", 2)
			return slowResult{n: n, err: err}
		}
		if err != nil {
			return slowResult{n: n, err: err}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func port(addrPort string) uint16 {
	ap, err := netip.ParseAddrPort(addrPort)
	if err != nil {
		return 0
	}
	return ap.Port()
}

// TestOpsLiveSessions follows a slow passive download with the CLI: the
// control and data sessions (the data session's parent is the control
// session), the expectation added and used, counters that move, and a
// `clear` of the data session that stops the transfer.
func TestOpsLiveSessions(t *testing.T) {
	o := newOpsEnv(t)
	var before api.Stats
	o.cliJSON(t, &before, "stats")
	var rulesBefore api.Rules
	o.cliJSON(t, &rulesBefore, "rules")
	w := o.watch(t)

	// A slow passive download with a small receive buffer, so the
	// transfer is in flight (not sitting in buffers) when it is cleared:
	// 8 MiB read 16 KiB every 50 ms takes about 26 s.
	dl := make(chan slowResult, 1)
	go func() { dl <- o.slowDownload(t, "big.bin") }()

	// The control session and its data session.
	var ctrl, data inspect.SessionInfo
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ss []inspect.SessionInfo
		o.cliJSON(t, &ss, "sessions")
		ctrl, data = inspect.SessionInfo{}, inspect.SessionInfo{}
		for _, s := range ss {
			if s.Proto == "tcp" && port(s.Dst) == 21 && s.ALG == "ftp" {
				ctrl = s
			}
		}
		for _, s := range ss {
			if ctrl.ID != 0 && s.Parent == ctrl.ID && s.Proto == "tcp" && port(s.Dst) >= lab.PasvMin && port(s.Dst) <= lab.PasvMax {
				data = s
			}
		}
		if data.ID != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control session with a data session child in sessions --json:\n%+v", ss)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(ctrl.Src, lab.ClientV4.String()+":") || data.Parent != ctrl.ID || data.ALG != "" {
		t.Errorf("control %+v, data %+v", ctrl, data)
	}
	// The table shows them too, with the parent column.
	if table, _, err := o.cli(t, "sessions", "--parent", fmt.Sprint(ctrl.ID)); err != nil ||
		!strings.Contains(table, "PARENT") || !strings.Contains(table, fmt.Sprintf("%d ", data.ID)) {
		t.Errorf("sessions --parent %d: %v\n%s", ctrl.ID, err, table)
	}

	// watch saw the expectation added by the control session and used by
	// the data session.
	deadline = time.Now().Add(5 * time.Second)
	for {
		add, okAdd := w.find(func(ev api.Event) bool {
			return ev.Kind == "expect-add" && ev.Expect != nil && ev.Expect.Parent == ctrl.ID
		})
		_, okUse := w.find(func(ev api.Event) bool {
			return ev.Kind == "expect-use" && ev.Expect != nil && ev.Expect.ID == add.Expect.ID && ev.Session != nil && ev.Session.ID == data.ID
		})
		if okAdd && okUse {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watch did not show the expectation added and used (add %v, use %v); kinds seen: %s", okAdd, okUse, w.kinds())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Counters moved.
	var after api.Stats
	o.cliJSON(t, &after, "stats")
	if after.Packets <= before.Packets || after.NewSessions < before.NewSessions+2 || after.Sessions < 2 {
		t.Errorf("stats did not move: before %+v, after %+v", before, after)
	}
	var rulesAfter api.Rules
	o.cliJSON(t, &rulesAfter, "rules")
	hits := func(r api.Rules) uint64 {
		for _, ri := range r.Rules {
			if ri.Inspect == "ftp" {
				return ri.Hits
			}
		}
		return 0
	}
	if hits(rulesAfter) <= hits(rulesBefore) {
		t.Errorf("the ftp rule's hits did not move: %d -> %d", hits(rulesBefore), hits(rulesAfter))
	}

	// The offloaded data session's counters follow the kernel's (read
	// every 5 s): the engine itself sees only its SYN.
	if !data.Offloaded {
		t.Errorf("data session %d not offloaded: %+v", data.ID, data)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		var ss []inspect.SessionInfo
		o.cliJSON(t, &ss, "sessions", "--parent", fmt.Sprint(ctrl.ID))
		var cur inspect.SessionInfo
		for _, s := range ss {
			if s.ID == data.ID {
				cur = s
			}
		}
		if cur.Bytes[1] >= 256<<10 {
			t.Logf("data session %d: %d packets, %d bytes from the server so far", data.ID, cur.Packets[1], cur.Bytes[1])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offloaded data session's counters did not follow the kernel's: %+v", cur)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Clearing the data session stops the transfer, offloaded or not.
	t.Logf("clearing data session %d (offloaded %v)", data.ID, data.Offloaded)
	if outp, _, err := o.cli(t, "clear", "session", fmt.Sprint(data.ID)); err != nil || !strings.Contains(outp, "cleared session") {
		t.Fatalf("clear: %v %s", err, outp)
	}
	select {
	case r := <-dl:
		if r.err == nil {
			t.Fatalf("the download completed (%d bytes) after its data session was cleared", r.n)
		}
		if r.n >= files["big.bin"] {
			t.Errorf("got all %d bytes after clear", r.n)
		}
		t.Logf("download stopped after %d bytes: %v", r.n, r.err)
	case <-time.After(45 * time.Second):
		t.Fatal("the download did not stop after its data session was cleared")
	}
	var ss []inspect.SessionInfo
	o.cliJSON(t, &ss, "sessions", "--parent", fmt.Sprint(ctrl.ID))
	for _, s := range ss {
		if s.ID == data.ID {
			t.Errorf("cleared session %d is still listed", data.ID)
		}
	}
	if _, errs, err := o.cli(t, "clear", "session", fmt.Sprint(data.ID)); err == nil || !strings.Contains(errs, fmt.Sprintf("no session %d", data.ID)) {
		t.Errorf("clearing it again: %v %s", err, errs)
	}
}

// TestOpsSocket checks the refusals on a live daemon: a second daemon in
// its network namespace (on the same socket, too), and a reload of a good
// file.
func TestOpsSocket(t *testing.T) {
	o := newOpsEnv(t)
	fi, err := os.Stat(o.sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	out, _, err := o.cli(t, "reload")
	if err != nil || !strings.Contains(out, "rules reloaded") {
		t.Errorf("reload: %v %s", err, out)
	}
	rules, _ := filepath.Abs(labRules)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	second, err := o.lab.Edge.Run(ctx, o.bin, "run", "--rules", rules, "--no-hooks", "--queue", "7", "--socket", o.sock)
	if err == nil || !strings.Contains(second, "another inspectd runs in this network namespace") {
		t.Errorf("a second daemon in the namespace, on the same socket: %v\n%s", err, second)
	}
	if _, _, err := o.cli(t, "stats"); err != nil {
		t.Errorf("the first daemon stopped answering: %v", err)
	}
}

// TestOpsAuditTrailCounts downloads a file over passive FTP and reads the
// audit trail: the data session, offloaded to the kernel after its SYN,
// closes with the kernel's counters, which include every byte the fast
// path carried (the engine itself saw three packets of it).
func TestOpsAuditTrailCounts(t *testing.T) {
	o := newOpsEnv(t)
	out := o.local(t, "big.bin")
	if _, err := o.curl(o.ctx(t, 60*time.Second), "--disable-epsv", "-o", out,
		"ftp://"+hostPort(lab.ServerV4, 21)+"/big.bin"); err != nil {
		t.Fatal(err)
	}
	o.checkFile(t, out, "big.bin")
	o.checkDataClose(t)
}

// TestOpsAuditTrailCountsDNAT is TestOpsAuditTrailCounts with the server
// port-forwarded: the client asks 203.0.113.1 (EPSV, so no address needs
// rewriting), which the edge forwards to the server. The kernel keys the
// connection by the public address, inspectd by the server's; the close
// line must still carry the kernel's counters the right way round.
func TestOpsAuditTrailCountsDNAT(t *testing.T) {
	o := newOpsEnv(t)
	const public = "203.0.113.1"
	o.run(t, o.lab.Edge, 10*time.Second, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", lab.WANIf,
		"-d", public, "-j", "DNAT", "--to-destination", lab.ServerV4.String())
	out := o.local(t, "big.bin")
	if _, err := o.curl(o.ctx(t, 60*time.Second), "-o", out, "ftp://"+public+":21/big.bin"); err != nil {
		t.Fatal(err)
	}
	o.checkFile(t, out, "big.bin")
	o.checkDataClose(t)
}

// checkDataClose waits for the session-close line of big.bin's passive
// data session and checks that it carries the kernel's counters.
func (o *opsEnv) checkDataClose(t *testing.T) {
	t.Helper()
	type closeLine struct {
		Msg          string `json:"msg"`
		Dst          string `json:"dst"`
		Offloaded    bool   `json:"offloaded"`
		CountedBy    string `json:"counted_by"`
		BytesReply   uint64 `json:"bytes_reply"`
		PacketsReply uint64 `json:"packets_reply"`
	}
	// A session that saw both FINs closes after tcp-finwait (10 s in
	// lab.rules), checked every second.
	deadline := time.Now().Add(25 * time.Second)
	for {
		var found *closeLine
		for _, line := range strings.Split(o.inspectd.Log(), "\n") {
			var l closeLine
			if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "session-close" {
				continue
			}
			if p := port(l.Dst); p >= lab.PasvMin && p <= lab.PasvMax {
				found = &l
			}
		}
		if found != nil {
			if !found.Offloaded || found.CountedBy != "kernel" || found.BytesReply < uint64(files["big.bin"]) {
				t.Fatalf("data session's close line %+v: want offloaded, counted by the kernel, at least %d bytes from the server",
					*found, files["big.bin"])
			}
			t.Logf("data session closed with %d packets, %d bytes from the server (counted by the kernel)",
				found.PacketsReply, found.BytesReply)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session-close line for the data session in inspectd's log %s:\n%s", o.inspectd.LogPath, o.inspectd.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
