package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/api/client"
	"github.com/inspectd/inspectd/internal/conntest"
)

// fake is a Backend with canned answers.
type fake struct {
	mu        sync.Mutex
	sessions  []inspect.SessionInfo
	cleared   []uint64
	clearAll  int
	reloadErr error
	reloads   int
	hub       *api.Hub
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newFake() *fake {
	return &fake{hub: api.NewHub(4), sessions: []inspect.SessionInfo{
		{ID: 1, Proto: "tcp", Src: "198.51.100.2:40000", Dst: "192.0.2.10:21", State: "established", ALG: "ftp",
			Created: t0, LastSeen: t0.Add(time.Minute), Packets: [2]uint64{10, 9}, Bytes: [2]uint64{600, 900}},
		{ID: 2, Proto: "tcp", Src: "198.51.100.2:40001", Dst: "192.0.2.10:30001", State: "established", Parent: 1,
			Offloaded: true, Created: t0.Add(30 * time.Second), LastSeen: t0.Add(time.Minute), Packets: [2]uint64{5, 800}, Bytes: [2]uint64{300, 1 << 20}},
		{ID: 3, Proto: "udp", Src: "[2001:db8:1::2]:5000", Dst: "[2001:db8:2::10]:69", State: "udp", ALG: "tftp",
			Created: t0, LastSeen: t0},
	}}
}

func (f *fake) Sessions() []inspect.SessionInfo { return f.sessions }
func (f *fake) Expectations() []inspect.ExpectInfo {
	return []inspect.ExpectInfo{{ID: 7, Parent: 1, ALG: "ftp", What: "PASV", Proto: "tcp", Src: "198.51.100.2:any",
		Dst: "192.0.2.10:30002", Created: t0, Expires: t0.Add(time.Minute)}}
}
func (f *fake) Stats() api.Stats {
	return api.Stats{Workers: 2, Packets: 100, Accepted: 90, Dropped: 10, NewSessions: 3, SessionPackets: 87,
		DropReasons: map[string]uint64{"default deny": 10}, Sessions: 3,
		SessionCounts: []api.SessionCount{{State: "established", Count: 1}, {ALG: "ftp", State: "established", Count: 1}, {ALG: "tftp", State: "udp", Count: 1}},
		Limits:        []api.Usage{{Name: "sessions", Used: 2, Limit: 4}},
		Queues:        []api.QueueStats{{Queue: 0, Packets: 60, QueueFull: 1}},
		Latency:       api.Histogram{Bounds: []float64{1e-6, 1e-5}, Counts: []uint64{50, 49, 1}, Count: 100, Sum: 0.0005}}
}
func (f *fake) Rules() api.Rules {
	return api.Rules{File: "lab.rules", Loaded: t0, Rules: []api.RuleInfo{{Index: 0, Pos: "lab.rules:15", Interface: "wan",
		Action: "permit", Inspect: "ftp", Text: "permit tcp from any to @server port 21 inspect ftp", Hits: 4}}}
}
func (f *fake) Clear(id uint64) (api.ClearResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id > 3 {
		return api.ClearResult{}, api.ErrNotFound
	}
	f.cleared = append(f.cleared, id)
	return api.ClearResult{Sessions: 1, Kernel: 1}, nil
}
func (f *fake) ClearAll() (api.ClearResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clearAll++
	return api.ClearResult{Sessions: 3, Kernel: 2, KernelError: "kconntrack: delete: operation not permitted"}, nil
}
func (f *fake) Reload() (api.ReloadResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	if f.reloadErr != nil {
		return api.ReloadResult{}, f.reloadErr
	}
	return api.ReloadResult{Summary: "lab.rules: 2 interfaces, 5 rules"}, nil
}
func (f *fake) Watch() *api.Watcher { return f.hub.Watch() }

// serve starts a server for b on a socket in a fresh directory.
func serve(t *testing.T, b api.Backend, opt api.Options) *api.Server {
	t.Helper()
	if opt.Path == "" {
		opt.Path = filepath.Join(t.TempDir(), "inspectd.sock")
	}
	if opt.Version == "" {
		opt.Version = "v9.9-test"
	}
	s, err := api.NewServer(b, opt)
	if err != nil {
		t.Fatal(err)
	}
	conntest.Serve(t, s)
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEndpoints(t *testing.T) {
	f := newFake()
	s := serve(t, f, api.Options{})
	c := client.New(s.Path(), "v1.0-cli")
	v, err := c.Version(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "v9.9-test" || v.API != "v1" || c.ServerVersion() != "v9.9-test" {
		t.Errorf("version = %+v, header %q", v, c.ServerVersion())
	}
	all, err := c.Sessions(ctx(t), api.SessionFilter{})
	if err != nil || len(all) != 3 || all[1].Parent != 1 || !all[1].Offloaded || all[1].Bytes[1] != 1<<20 {
		t.Fatalf("sessions = %+v, %v", all, err)
	}
	for _, tc := range []struct {
		f    api.SessionFilter
		want []uint64
	}{
		{api.SessionFilter{Proto: "udp"}, []uint64{3}},
		{api.SessionFilter{Port: 21}, []uint64{1}},
		{api.SessionFilter{Addr: netip.MustParsePrefix("2001:db8::/32")}, []uint64{3}},
		{api.SessionFilter{Addr: netip.MustParsePrefix("192.0.2.10/32"), ALG: "none"}, []uint64{2}},
		{api.SessionFilter{Parent: 1}, []uint64{2}},
		{api.SessionFilter{State: "established", ALG: "ftp"}, []uint64{1}},
		{api.SessionFilter{Port: 9}, nil},
	} {
		got, err := c.Sessions(ctx(t), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, s := range got {
			ids = append(ids, s.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("filter %+v: ids %v, want %v", tc.f, ids, tc.want)
		}
	}
	xs, err := c.Expectations(ctx(t))
	if err != nil || len(xs) != 1 || xs[0].Parent != 1 || !xs[0].Expires.Equal(t0.Add(time.Minute)) {
		t.Errorf("expectations = %+v, %v", xs, err)
	}
	st, err := c.Stats(ctx(t))
	if err != nil || st.Dropped != 10 || st.DropReasons["default deny"] != 10 || st.Latency.Count != 100 || st.Queues[0].QueueFull != 1 {
		t.Errorf("stats = %+v, %v", st, err)
	}
	rs, err := c.Rules(ctx(t))
	if err != nil || len(rs.Rules) != 1 || rs.Rules[0].Hits != 4 {
		t.Errorf("rules = %+v, %v", rs, err)
	}
	if r, err := c.Clear(ctx(t), 2); err != nil || r.Sessions != 1 || fmt.Sprint(f.cleared) != "[2]" {
		t.Errorf("clear 2 = %+v, %v (cleared %v)", r, err, f.cleared)
	}
	if r, err := c.ClearAll(ctx(t)); err != nil || r.Sessions != 3 || r.KernelError == "" || f.clearAll != 1 {
		t.Errorf("clear all = %+v, %v", r, err)
	}
	if r, err := c.Reload(ctx(t)); err != nil || !strings.Contains(r.Summary, "5 rules") {
		t.Errorf("reload = %+v, %v", r, err)
	}
	f.reloadErr = errors.New("lab.rules:3:1: unknown keyword \"bogus\"")
	_, err = c.Reload(ctx(t))
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !strings.Contains(ae.Message, "lab.rules:3:1") ||
		!strings.Contains(ae.Message, "old rules stay") {
		t.Errorf("failed reload: %v", err)
	}
}

func TestWatch(t *testing.T) {
	f := newFake()
	s := serve(t, f, api.Options{})
	c := client.New(s.Path(), "test")
	st, err := c.Watch(ctx(t), "expect-add", "expect-use")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Watch returns once the server has registered the watcher.
	sess := f.sessions[0]
	x := f.Expectations()[0]
	f.hub.Publish(inspect.Event{Kind: inspect.SessionOpen, Time: t0, Session: &sess}) // filtered out
	f.hub.Publish(inspect.Event{Kind: inspect.ExpectAdd, Time: t0, Reason: "PASV", Session: &sess, Expect: &x})
	f.hub.Publish(inspect.Event{Kind: inspect.ExpectUse, Time: t0.Add(time.Second), Expect: &x,
		Flow: inspect.FlowInfo{Proto: "tcp", Src: "198.51.100.2:40001", Dst: "192.0.2.10:30002"}})
	ev, err := st.Next()
	if err != nil || ev.Kind != "expect-add" || ev.Expect == nil || ev.Expect.ID != 7 || ev.Session.ID != 1 || !ev.Time.Equal(t0) {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	ev, err = st.Next()
	if err != nil || ev.Kind != "expect-use" || ev.Flow.Dst != "192.0.2.10:30002" {
		t.Fatalf("second event = %+v, %v", ev, err)
	}

	// Overflow the watcher's buffer (4) faster than the server drains it:
	// the events after a loss are preceded by a "lost" notice.
	st.Close()
	st2, err := c.Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := c.Watch(ctx(t), "bogus"); err == nil || !strings.Contains(err.Error(), `unknown event kind "bogus"`) {
		t.Errorf("watch with a bad kind: %v", err)
	}
	before := f.hub.Lost()
	for i := 0; i < 10000; i++ {
		f.hub.Publish(inspect.Event{Kind: inspect.Deny, Time: t0, Reason: fmt.Sprint(i)})
	}
	time.Sleep(100 * time.Millisecond)
	f.hub.Publish(inspect.Event{Kind: inspect.Note, Time: t0, Reason: "end"})
	var lost uint64
	for {
		ev, err := st2.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == api.KindLost {
			lost += ev.Lost
		}
		if ev.Kind == "note" {
			break
		}
	}
	// The first watcher may also lose events until the server notices it
	// is gone.
	if lost == 0 || lost+before > f.hub.Lost() {
		t.Errorf("lost notices sum to %d, hub lost %d", lost, f.hub.Lost())
	}
}

func TestBadRequests(t *testing.T) {
	s := serve(t, newFake(), api.Options{})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", s.Path())
	}}}
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"GET", "/v1/nothing", "", 404, "no such endpoint"},
		{"GET", "/v2/sessions", "", 404, "unknown API version"},
		{"POST", "/v1/sessions", "", 405, "wants GET"},
		{"GET", "/v1/clear", "", 405, "wants POST"},
		{"GET", "/v1/sessions?proto=sctp", "", 400, "bad protocol"},
		{"GET", "/v1/sessions?port=70000", "", 400, "bad port"},
		{"GET", "/v1/sessions?addr=300.1.1.1", "", 400, "bad address"},
		{"GET", "/v1/sessions?colour=red", "", 400, "unknown filter"},
		{"GET", "/v1/sessions?parent=x", "", 400, "bad parent"},
		{"GET", "/v1/sessions?alg=http", "", 400, "bad inspector"},
		{"GET", "/v1/sessions?state=establised", "", 400, "want one of new, syn-sent, syn-recv"},
		{"GET", "/v1/stats?x=1", "", 400, "takes no parameters"},
		{"GET", "/v1/watch?since=1", "", 400, "unknown parameter"},
		{"POST", "/v1/clear", "{bad json", 400, "bad request body"},
		{"POST", "/v1/clear", "", 400, "empty request body"},
		{"POST", "/v1/clear", `{"id": "seven"}`, 400, "bad request body"},
		{"POST", "/v1/clear", `{"id": -1}`, 400, "bad request body"},
		{"POST", "/v1/clear", `{"session": 1}`, 400, "unknown field"},
		{"POST", "/v1/clear", `{}`, 400, `give a session`},
		{"POST", "/v1/clear", `{"id": 1, "all": true}`, 400, `not both`},
		{"POST", "/v1/clear", `{"id": 1} {"id": 2}`, 400, "data after"},
		{"POST", "/v1/clear", `{"id": 99}`, 404, "no session 99"},
		{"POST", "/v1/clear", `{"id": 1, "pad": "` + strings.Repeat("x", 70<<10) + `"}`, 413, "over"},
	} {
		req, _ := http.NewRequest(tc.method, "http://inspectd"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.msg) || !strings.HasPrefix(string(b), `{"error":`) {
			t.Errorf("%s %s %.40q: %d %s, want %d with %q", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.code, tc.msg)
		}
		if resp.Header.Get(api.VersionHeader) != "v9.9-test" {
			t.Errorf("%s %s: no version header", tc.method, tc.path)
		}
		if tc.code == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inspectd.sock")
	_, err := client.New(path, "test").Stats(ctx(t))
	if !errors.Is(err, client.ErrNotRunning) || !strings.Contains(err.Error(), "no socket at "+path) {
		t.Errorf("no socket: %v", err)
	}
	// A socket file with nobody behind it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = client.New(path, "test").Stats(ctx(t))
	if !errors.Is(err, client.ErrNotRunning) || !strings.Contains(err.Error(), "stale socket") {
		t.Errorf("stale socket: %v", err)
	}
	// The server replaces the stale socket.
	s := serve(t, newFake(), api.Options{Path: path})
	if _, err := client.New(s.Path(), "test").Stats(ctx(t)); err != nil {
		t.Errorf("after replacing the stale socket: %v", err)
	}
	// A second server refuses to start.
	if _, err := api.NewServer(newFake(), api.Options{Path: path}); !errors.Is(err, api.ErrRunning) {
		t.Errorf("second server: %v", err)
	}
	// Not a socket.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := api.NewServer(newFake(), api.Options{Path: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
	if _, err := api.NewServer(newFake(), api.Options{Path: filepath.Join(dir, "x.sock"), Group: "no-such-group-here"}); err == nil {
		t.Error("unknown group accepted")
	}
}

func TestSocketModeAndRemoval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "inspectd") // created by the server
	path := filepath.Join(dir, "inspectd.sock")
	s, err := api.NewServer(newFake(), api.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left temporary files: %v", ents)
	}
	go s.Serve()
	s.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	gpath := filepath.Join(dir, "g.sock")
	gid := os.Getgid() // a group we are sure to be allowed to chown to
	s, err = api.NewServer(newFake(), api.Options{Path: gpath, Group: fmt.Sprint(gid)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err = os.Stat(gpath)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(gid) {
		t.Errorf("group socket %v, %v", fi.Mode(), err)
	}
}

// The permission test runs the client in a copy of this test binary as
// user nobody (65534).
const asOtherUser = "INSPECTD_API_TEST_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(asOtherUser); path != "" {
		_, err := client.New(path, "test").Stats(context.Background())
		switch {
		case err == nil:
			fmt.Println("ok")
		case errors.Is(err, client.ErrPermission):
			fmt.Println("permission:", err)
		default:
			fmt.Println("other:", err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPermissionOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody = 65534
	dir := t.TempDir()
	for d := dir; d != "/" && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // let nobody reach the socket and the binary
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(path string) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{asOtherUser + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as nobody: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	root := serve(t, newFake(), api.Options{Path: filepath.Join(dir, "root.sock")})
	if out := run(root.Path()); !strings.HasPrefix(out, "permission:") || !strings.Contains(out, "sudo") {
		t.Errorf("nobody on a root-only socket: %s", out)
	}
	grp := serve(t, newFake(), api.Options{Path: filepath.Join(dir, "group.sock"), Group: fmt.Sprint(nobody)})
	if out := run(grp.Path()); out != "ok" {
		t.Errorf("nobody on a socket of its group: %s", out)
	}
}

func TestWatchersBounded(t *testing.T) {
	f := newFake()
	s := serve(t, f, api.Options{})
	c := client.New(s.Path(), "test")
	for range api.MaxWatchers {
		st, err := c.Watch(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
	if _, err := c.Watch(ctx(t)); err == nil || !strings.Contains(err.Error(), "too many watch streams") {
		t.Fatalf("watch %d: %v; want refused", api.MaxWatchers+1, err)
	}
	// The refused client's connection is closed.
	conn := conntest.Dial(t, "unix", s.Path())
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /v1/watch HTTP/1.1\r\nHost: inspectd\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || !resp.Close {
		t.Errorf("watch over the cap: %s, close %v", resp.Status, resp.Close)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the refusal: %v, want EOF", err)
	}
}
