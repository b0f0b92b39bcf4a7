package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/conntest"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeBackend serves canned answers.
type fakeBackend struct {
	mu        sync.Mutex
	hub       *api.Hub
	reloadErr error
	cleared   []uint64
}

func (f *fakeBackend) Sessions() []inspect.SessionInfo {
	return []inspect.SessionInfo{
		{ID: 1, Proto: "tcp", Src: "198.51.100.2:40000", Dst: "192.0.2.10:21", State: "established", ALG: "ftp",
			Created: t0, LastSeen: t0.Add(50 * time.Minute), Packets: [2]uint64{10, 9}, Bytes: [2]uint64{600, 900}},
		{ID: 4, Proto: "tcp", Src: "198.51.100.2:40001", Dst: "192.0.2.10:30001", State: "established", Parent: 1,
			Offloaded: true, Created: t0.Add(59 * time.Minute), LastSeen: t0.Add(time.Hour), Packets: [2]uint64{5, 800}, Bytes: [2]uint64{300, 3 << 20}},
		{ID: 7, Proto: "udp", Src: "[2001:db8:1::2]:5000", Dst: "[2001:db8:2::10]:69", State: "udp", ALG: "tftp",
			Created: t0, LastSeen: t0},
	}
}

func (f *fakeBackend) Expectations() []inspect.ExpectInfo {
	return []inspect.ExpectInfo{{ID: 9, Parent: 1, ALG: "ftp", What: "ftp PASV", Proto: "tcp", Src: "198.51.100.2:any",
		Dst: "192.0.2.10:30002", Created: t0.Add(time.Hour - 10*time.Second), Expires: t0.Add(time.Hour + 50*time.Second)}}
}

func (f *fakeBackend) Stats() api.Stats {
	return api.Stats{Workers: 2, Packets: 100, Accepted: 90, Dropped: 10, NewSessions: 3, SessionPackets: 87,
		DropReasons: map[string]uint64{"default deny": 7, "tcp: outside window": 3}, Sessions: 3,
		SessionCounts: []api.SessionCount{{State: "established", Count: 1}, {ALG: "ftp", State: "established", Count: 1}, {ALG: "tftp", State: "udp", Count: 1}}, ExpectCounts: []api.ExpectCount{{ALG: "ftp", Count: 1}},
		Limits:      []api.Usage{{Name: "sessions", Used: 2, Limit: 100}, {Name: "half-open", Used: 9, Limit: 10}},
		Queues:      []api.QueueStats{{Queue: 0, Packets: 60, Accepted: 55, Dropped: 5, QueueFull: 1}},
		Latency:     api.Histogram{Bounds: []float64{1e-6, 1e-5}, Counts: []uint64{50, 49, 1}, Count: 100, Sum: 0.0005},
		RulesLoaded: t0}
}

func (f *fakeBackend) Rules() api.Rules {
	return api.Rules{File: "lab.rules", Loaded: t0, Rules: []api.RuleInfo{
		{Index: 0, Pos: "lab.rules:15", Interface: "wan", Action: "permit", Inspect: "ftp", Text: "permit tcp from any to @server port { 21 2121 } inspect ftp", Hits: 4},
		{Index: 1, Pos: "lab.rules:16", Interface: "wan", Action: "permit", Text: "permit udp from any to @server port 69 inspect tftp"}},
		Defaults: []api.DefaultInfo{{Pos: "lab.rules:14", Interface: "wan", Device: "wan0", Action: "deny", Log: true}}}
}

func (f *fakeBackend) Clear(id uint64) (api.ClearResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != 4 {
		return api.ClearResult{}, api.ErrNotFound
	}
	f.cleared = append(f.cleared, id)
	return api.ClearResult{Sessions: 1, Kernel: 1}, nil
}

func (f *fakeBackend) ClearAll() (api.ClearResult, error) {
	return api.ClearResult{Sessions: 3, Kernel: 2, KernelError: "operation not permitted"}, nil
}

func (f *fakeBackend) Reload() (api.ReloadResult, error) {
	if f.reloadErr != nil {
		return api.ReloadResult{}, f.reloadErr
	}
	return api.ReloadResult{Summary: "lab.rules: 2 interfaces, 5 rules\n"}, nil
}

func (f *fakeBackend) Watch() *api.Watcher { return f.hub.Watch() }

// startFake serves a fake backend and points INSPECTD_SOCKET at it.
func startFake(t *testing.T, daemonVersion string) *fakeBackend {
	t.Helper()
	f := &fakeBackend{hub: api.NewHub(64)}
	path := filepath.Join(t.TempDir(), "inspectd.sock")
	s, err := api.NewServer(f, api.Options{Path: path, Version: daemonVersion})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	t.Setenv("INSPECTD_SOCKET", path)
	now = func() time.Time { return t0.Add(time.Hour) }
	t.Cleanup(func() { now = time.Now })
	return f
}

// cli runs the CLI and returns its exit code, stdout and stderr.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestSessionsTable(t *testing.T) {
	startFake(t, version)
	code, out, errs := cli("sessions")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := `ID  PROTO  SOURCE                DESTINATION          STATE        ALG   PARENT  AGE    IDLE    PACKETS  BYTES      OFFLOADED
1   tcp    198.51.100.2:40000    192.0.2.10:21        established  ftp   -       1h00m  10m00s  10/9     600B/900B  no
4   tcp    198.51.100.2:40001    192.0.2.10:30001     established  -     1       1m00s  0s      5/800    300B/3.0M  yes
7   udp    [2001:db8:1::2]:5000  [2001:db8:2::10]:69  udp          tftp  -       1h00m  1h00m   0/0      0B/0B      no
`
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
	// Filters reach the daemon; flags may follow arguments.
	if code, out, _ := cli("sessions", "--proto", "udp"); code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "tftp") {
		t.Errorf("--proto udp: %d\n%s", code, out)
	}
	if code, out, _ := cli("sessions", "--parent", "1", "--port", "30001"); code != 0 || !strings.Contains(out, "30001") || strings.Contains(out, ":21 ") {
		t.Errorf("--parent 1: %d\n%s", code, out)
	}
	if code, out, _ := cli("sessions", "--addr", "203.0.113.0/24"); code != 0 || out != "no sessions\n" {
		t.Errorf("no match: %d %q", code, out)
	}
}

// --state, --alg and --proto take any case; a state the engine does not
// have is a usage error that lists the ones it has.
func TestSessionsFilterValues(t *testing.T) {
	startFake(t, version)
	for _, args := range [][]string{{"--state", "ESTABLISHED"}, {"--alg", "FTP"}, {"--proto", "TCP", "--state", "Established"}} {
		code, out, errs := cli(append([]string{"sessions"}, args...)...)
		if code != 0 || !strings.Contains(out, "198.51.100.2:40000") || strings.Contains(out, "tftp") {
			t.Errorf("%v: exit %d: %s%s", args, code, out, errs)
		}
	}
	states := "new, syn-sent, syn-recv, established, fin-wait, closing, time-wait, closed"
	for _, st := range []string{"establised", "udp"} {
		code, out, errs := cli("sessions", "--state", st)
		want := fmt.Sprintf("inspectd sessions: bad state %q (want one of %s)", st, states)
		if code != 2 || out != "" || !strings.HasPrefix(errs, want) {
			t.Errorf("--state %s: exit %d: %s%s", st, code, out, errs)
		}
	}
	if code, out, _ := cli("sessions", "--help"); code != 0 || !strings.Contains(out, "only sessions in STATE: "+states) {
		t.Errorf("--help does not list the states: %s", out)
	}
	if code, _, errs := cli("sessions", "--alg", "ftpx"); code != 2 || !strings.Contains(errs, `bad inspector "ftpx" (want ftp, tftp or none)`) {
		t.Errorf("--alg ftpx: exit %d: %s", code, errs)
	}
}

func TestSessionsJSON(t *testing.T) {
	startFake(t, version)
	code, out, _ := cli("sessions", "--json")
	if code != 0 {
		t.Fatal(code)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d sessions", len(got))
	}
	for _, k := range []string{"id", "proto", "src", "dst", "state", "alg", "parent", "offloaded", "packets", "bytes"} {
		if _, ok := got[0][k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if got[1]["parent"] != 1.0 || got[0]["parent"] != 0.0 || got[2]["src"] != "[2001:db8:1::2]:5000" || got[1]["offloaded"] != true {
		t.Errorf("JSON = %v", got)
	}
}

func TestOtherVerbs(t *testing.T) {
	f := startFake(t, "v0.0-other")
	for _, tc := range []struct {
		args []string
		code int
		out  []string
		err  string
	}{
		{[]string{"expectations"}, 0, []string{"ID  OWNER  ALG  WHAT      PROTO  SOURCE            DESTINATION       AGE  EXPIRES IN",
			"9   1      ftp  ftp PASV  tcp    198.51.100.2:any  192.0.2.10:30002  10s  50s"}, ""},
		{[]string{"expectations", "--json"}, 0, []string{`"expires": "2025-01-02T04:04:55Z"`, `"parent": 1`}, ""},
		{[]string{"stats"}, 0, []string{"packets", "default deny", "tcp: outside window", "ftp established", "(none) established",
			"half-open              9 / 10", "90.0%  NEAR THE LIMIT", "queue full 1", "p99 <= 10µs", "rules loaded"}, ""},
		{[]string{"stats", "--json"}, 0, []string{`"drop_reasons"`, `"queue_full": 1`, `"latency"`}, ""},
		{[]string{"rules"}, 0, []string{"rules from lab.rules", "lab.rules:15  wan    4     permit tcp",
			"lab.rules:16  wan    0     permit udp", "default deny log (device wan0)"}, ""},
		{[]string{"rules", "--json"}, 0, []string{`"hits": 4`}, ""},
		{[]string{"clear", "session", "4"}, 0, []string{"cleared session 4, 1 flow from the kernel's conntrack"}, ""},
		{[]string{"clear", "session", "5"}, 1, nil, "no session 5"},
		{[]string{"clear", "--all"}, 1, []string{"cleared 3 sessions, 2 flows"}, "not fully cleared: operation not permitted"},
		{[]string{"clear", "--json", "session", "4"}, 0, []string{`"kernel": 1`}, ""},
		{[]string{"clear", "session", "four"}, 2, nil, `bad session ID "four"`},
		{[]string{"clear", "session", "0"}, 2, nil, `bad session ID "0"`},
		{[]string{"clear", "4"}, 2, nil, `unknown object "4"`},
		{[]string{"clear"}, 2, nil, "what to clear?"},
		{[]string{"clear", "--all", "session", "4"}, 2, nil, "not both"},
		{[]string{"reload"}, 0, []string{"rules reloaded\nlab.rules: 2 interfaces"}, ""},
		{[]string{"sessions", "--port", "http"}, 2, nil, `bad port "http"`},
		{[]string{"sessions", "--bogus"}, 2, nil, "flag provided but not defined: -bogus"},
		{[]string{"sessions", "extra"}, 2, nil, `unexpected argument "extra"`},
		{[]string{"watch", "--kind", "denial"}, 2, nil, `unknown event kind "denial"`},
		{[]string{"stats", "--help"}, 0, []string{"Usage: inspectd stats"}, ""},
	} {
		code, out, errs := cli(tc.args...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d; stderr %s", tc.args, code, tc.code, errs)
		}
		for _, w := range tc.out {
			if !strings.Contains(out, w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, out)
			}
		}
		if tc.err != "" && !strings.Contains(errs, tc.err) {
			t.Errorf("%v: stderr lacks %q: %s", tc.args, tc.err, errs)
		}
		if code == 0 && !strings.Contains(tc.args[len(tc.args)-1], "help") && !strings.Contains(errs, "the daemon runs version v0.0-other") {
			t.Errorf("%v: no version note: %q", tc.args, errs)
		}
	}
	if len(f.cleared) != 2 {
		t.Errorf("cleared %v", f.cleared)
	}
	f.reloadErr = errors.New("lab.rules:3:1: unknown keyword")
	if code, _, errs := cli("reload"); code != 1 || !strings.Contains(errs, "lab.rules:3:1") || !strings.Contains(errs, "old rules stay") {
		t.Errorf("failed reload: %d %s", code, errs)
	}
}

func TestWatchCLI(t *testing.T) {
	f := startFake(t, version)
	s := f.Sessions()[1]
	x := f.Expectations()[0]
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"watch", "--count", "2", "--json", "--kind", "expect-add,expect-use"}, []string{`"kind":"expect-add"`, `"kind":"expect-use"`}},
		{[]string{"watch", "--count", "4"}, []string{"expect-add", "expectation 9 of session 1 (ftp PASV): tcp 198.51.100.2:any -> 192.0.2.10:30002",
			"used by session 4", "session-open  session 4 tcp 198.51.100.2:40001 -> 192.0.2.10:30001 child of 1 in wan0: related",
			"deny          tcp 198.51.100.2:1 -> 192.0.2.10:22 in wan0: default deny (lab.rules:14)"}},
	} {
		done := make(chan struct{})
		var code int
		var out, errs string
		go func() {
			code, out, errs = cli(tc.args...)
			close(done)
		}()
		// Publish until the watcher has seen enough: it may register late.
	loop:
		for {
			f.hub.Publish(inspect.Event{Kind: inspect.SessionOpen, Time: t0, In: "wan0", Reason: "related", Session: &s})
			f.hub.Publish(inspect.Event{Kind: inspect.ExpectAdd, Time: t0, Reason: "PASV", Expect: &x})
			f.hub.Publish(inspect.Event{Kind: inspect.ExpectUse, Time: t0, Reason: "PASV", Expect: &x, Session: &s})
			f.hub.Publish(inspect.Event{Kind: inspect.Deny, Time: t0, In: "wan0", Reason: "default deny", Rule: "lab.rules:14",
				Flow: inspect.FlowInfo{Proto: "tcp", Src: "198.51.100.2:1", Dst: "192.0.2.10:22"}})
			select {
			case <-done:
				break loop
			case <-time.After(20 * time.Millisecond):
			}
		}
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: lacks %q:\n%s", tc.args, w, out)
			}
		}
		if strings.Contains(tc.args[2], "2") {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var ev api.Event
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Errorf("not JSON: %q", line)
				}
			}
		}
	}
}

func TestNotRunningCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	for _, verb := range []string{"sessions", "expectations", "stats", "rules", "watch", "reload"} {
		code, _, errs := cli(verb, "--socket", path)
		if code != 1 || !strings.Contains(errs, "inspectd is not running (no socket at "+path) {
			t.Errorf("%s: exit %d: %s", verb, code, errs)
		}
	}
	t.Setenv("INSPECTD_SOCKET", path)
	if code, _, errs := cli("clear", "--all"); code != 1 || !strings.Contains(errs, path) {
		t.Errorf("clear via env: %d %s", code, errs)
	}
}

// liveVerbs are the verbs that talk to the daemon, with the arguments
// they need.
var liveVerbs = [][]string{{"sessions"}, {"expectations"}, {"stats"}, {"rules"}, {"watch"}, {"clear", "--all"}, {"reload"}}

// cliWithin runs the CLI like cli, failing the test if it takes longer
// than d.
func cliWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := cli(args...)
		done <- result{code, out, errs}
	}()
	select {
	case r := <-done:
		return r.code, r.out, r.errs
	case <-time.After(d):
		t.Fatalf("%v still runs after %v", args, d)
	}
	return 0, "", ""
}

func TestTimeoutCLI(t *testing.T) {
	path := conntest.Hang(t)
	for _, v := range liveVerbs {
		code, _, errs := cliWithin(t, 10*time.Second, append(v, "--socket", path, "--timeout", "200ms")...)
		want := fmt.Sprintf("inspectd %s: no answer from inspectd on %s within 200ms (--timeout)\n", v[0], path)
		if code != 1 || errs != want {
			t.Errorf("%s: exit %d: %q, want %q", v[0], code, errs, want)
		}
		for _, bad := range []string{"0", "-1s"} {
			code, _, errs := cli(append(v, "--socket", path, "--timeout", bad)...)
			if code != 2 || !strings.HasPrefix(errs, "inspectd "+v[0]+": --timeout must be above 0") {
				t.Errorf("%s --timeout %s: exit %d: %s", v[0], bad, code, errs)
			}
		}
	}
}

func TestNotASocketCLI(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for path, kind := range map[string]string{dir: "directory", file: "regular file"} {
		for _, v := range liveVerbs {
			code, _, errs := cli(append(v, "--socket", path)...)
			want := fmt.Sprintf("inspectd %s: %s is not a socket (it is a %s)", v[0], path, kind)
			if code != 1 || !strings.HasPrefix(errs, want) {
				t.Errorf("%s on a %s: exit %d: %s", v[0], kind, code, errs)
			}
		}
	}
}

// A daemon's garbled answers are reported with the verb's prefix once.
func TestBadAnswerCLI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "not JSON") })}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	for _, v := range liveVerbs {
		code, _, errs := cliWithin(t, 10*time.Second, append(v, "--socket", path)...)
		want := "inspectd " + v[0] + ": bad answer to /v1/"
		if v[0] == "watch" {
			want = "inspectd watch: bad event from the daemon: "
		}
		if code != 1 || !strings.HasPrefix(errs, want) || strings.Count(errs, "inspectd") != 1 {
			t.Errorf("%s: exit %d: %q, want %q...", v[0], code, errs, want)
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh"} {
		code, out, errs := cli("completion", sh)
		if code != 0 {
			t.Fatalf("%s: %d %s", sh, code, errs)
		}
		for _, w := range []string{"sessions", "--proto", "--socket", "--all", "replay", "--rules"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s completion lacks %q", sh, w)
			}
		}
		if _, err := exec.LookPath(sh); err == nil {
			f := filepath.Join(t.TempDir(), "c")
			os.WriteFile(f, []byte(out), 0o644)
			if b, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v %s", sh, err, b)
			}
		}
	}
	if code, _, errs := cli("completion", "fish"); code != 2 || !strings.Contains(errs, "bash or zsh") {
		t.Errorf("fish: %d %s", code, errs)
	}
}

// After a flag whose value is a file, the scripts complete file names, and
// bash treats what it completes as file names (directories get a slash,
// not a space).
func TestCompletionFiles(t *testing.T) {
	const files = "-expect|--expect|-rules|--rules|-socket|--socket|-write-expect|--write-expect"
	for sh, want := range map[string][]string{
		"bash": {"\n        " + files + `) _inspectd_files "$cur"; return ;;`, "\ncomplete -o filenames -F _inspectd inspectd\n"},
		"zsh":  {"\n    (" + files + ") _files; return ;;", "\n    (" + strings.ReplaceAll(files, "|", "=*|") + "=*) compset -P '*='; _files; return ;;"},
	} {
		_, out, _ := cli("completion", sh)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s completion lacks %q:\n%s", sh, w, out)
			}
		}
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the completion in")
	}
	dir := t.TempDir()
	_, script, _ := cli("completion", "bash")
	os.WriteFile(filepath.Join(dir, "inspectd.bash"), []byte(script), 0o644)
	work := filepath.Join(dir, "work")
	os.MkdirAll(filepath.Join(work, "exdir"), 0o755)
	for _, f := range []string{"example.rules", "ex space.rules", "other"} {
		os.WriteFile(filepath.Join(work, f), nil, 0o644)
	}
	// Each line of the output: the sorted completions of one command line.
	test := `source "$1"; cd "$2"
show() {
    COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
    _inspectd
    printf '%s\n' "${COMPREPLY[@]}" | sort | paste -sd '|'
}
show inspectd replay --rules ex
show inspectd run --rules ""
show inspectd replay --rules = ex
show inspectd replay --expect = ""
show inspectd stats -socket ex
show inspectd replay --rules x.rules --write-expect ex
show inspectd replay --rules x.rules ex
show inspectd sessions --st
show inspectd clear s
show inspectd st
complete -p inspectd
`
	out, err := exec.Command(bash, "--norc", "-c", test, "bash", filepath.Join(dir, "inspectd.bash"), work).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	ex, all := "ex space.rules|example.rules|exdir", "ex space.rules|example.rules|exdir|other"
	want := strings.Join([]string{ex, all, ex, all, ex, ex, ex, "--state", "session", "stats", "complete -o filenames -F _inspectd inspectd"}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("bash completions:\n%s\nwant:\n%s", out, want)
	}
}

func TestHumanFormats(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "0s", 42 * time.Second: "42s", 192 * time.Second: "3m12s",
		2*time.Hour + 5*time.Minute: "2h05m", 76 * time.Hour: "3d04h"} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1536: "1.5K", 3 << 20: "3.0M", 5 << 40: "5.0T"} {
		if got := bytesHuman(n); got != want {
			t.Errorf("bytesHuman(%d) = %q, want %q", n, got, want)
		}
	}
}
