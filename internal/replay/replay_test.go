package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/capture"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/rules"
)

// golden is a public capture replayed with a rule file for its network
// and checked against its expected-verdicts file (testdata/expect/).
type golden struct {
	capture string // in testdata/captures
	rules   string // in testdata
	packets int    // as INDEX.tsv counts them
	control int    // inspected sessions (FTP control, TFTP request)
	related int    // data connections in the capture, all legitimate
}

var goldens = []golden{
	{"ftp_ftp-download-active.pcap", "suricata.rules", 63, 1, 3},
	{"ftp_ftp-download-passive.pcap", "suricata.rules", 63, 1, 3},
	{"ftp_ftp-upload-active.pcap", "suricata.rules", 63, 1, 3},
	{"ftp_ftp-upload-passive.pcap", "suricata.rules", 63, 1, 3},
	// pyftpdlib connects before it confirms PORT: all 14 data connections
	// are related only because PORT opens its hole at once.
	{"firewall_ruletype-firewall-116-ftp-all-data-ipv4.pcap", "suricata.rules", 254, 2, 14},
	// A bounce PORT: dropped, nothing opened for it.
	{"ftp_ftp-bounce.pcap", "bounce.rules", 34, 2, 0},
	// Active data from ephemeral server ports: active-source-port any.
	{"ftp_ipv4.pcap", "zeek4.rules", 95, 1, 4},
	// IPv6; the EPSV data connection is not in the capture.
	{"ftp_ipv6-multiline-reply.pcap", "zeek6.rules", 50, 1, 0},
	// Loopback: AUTH TLS stops the inspection (a note); fake commands
	// and replies open nothing (notes).
	{"ftp_ftp-auth-tls.pcap", "loopback.rules", 84, 1, 0},
	{"ftp_fake-long-commands.pcap", "loopback.rules", 40, 1, 0},
	{"output-eve-tftp-01.pcap", "tftp.rules", 99, 1, 1},
	{"tftp-tx-handling-wrq.pcap", "tftp.rules", 100, 1, 1},
	{"tcpdump-tftp.pcap", "tftp.rules", 7, 1, 1},
}

func (g golden) paths() (capPath, rulesPath, expectPath string) {
	return filepath.Join("testdata", "captures", g.capture), filepath.Join("testdata", g.rules),
		filepath.Join("testdata", "expect", strings.TrimSuffix(g.capture, ".pcap")+".expect")
}

func mustRules(t *testing.T, path string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestGolden replays every capture against its expected verdicts, strict
// and with the CLI's default gap recovery: no mismatch, and every data
// connection in the capture related to its control session.
func TestGolden(t *testing.T) {
	for _, g := range goldens {
		for _, gaps := range []int{0, 3} {
			capPath, rulesPath, expectPath := g.paths()
			exp, err := ParseExpectFile(expectPath)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			sum, err := Run(capPath, Options{Rules: mustRules(t, rulesPath), Expect: exp, Quiet: true, GapRecovery: gaps}, &out)
			if err != nil {
				t.Fatalf("%s (gap recovery %d): %v\n%s", g.capture, gaps, err, out.String())
			}
			if sum.Packets != g.packets || sum.Mismatches != 0 || sum.Sessions.Related != g.related ||
				sum.Expectations.Used != g.related || sum.Sessions.Opened != g.control+g.related {
				t.Errorf("%s (gap recovery %d): summary %+v, want %d packets, %d control and %d related sessions",
					g.capture, gaps, sum, g.packets, g.control, g.related)
			}
			if !strings.Contains(out.String(), "sessions: ") || strings.Contains(out.String(), "MISMATCH") {
				t.Errorf("%s: report:\n%s", g.capture, out.String())
			}
		}
	}
}

// TestDataChannelsAreChildren checks, from the engine's events, that each
// related session is the child of an inspected session between the same
// two hosts, and that every data connection was counted.
func TestDataChannelsAreChildren(t *testing.T) {
	for _, g := range goldens {
		capPath, rulesPath, _ := g.paths()
		rs := mustRules(t, rulesPath)
		eng := inspect.New(rs, inspect.Options{})
		control := map[uint64]inspect.SessionInfo{}
		var children []inspect.SessionInfo
		eng.Subscribe(func(ev inspect.Event) {
			if ev.Kind != inspect.SessionOpen {
				return
			}
			switch s := *ev.Session; {
			case ev.Reason == inspect.ReasonRelated:
				children = append(children, s)
			case s.ALG != "":
				control[s.ID] = s
			}
		})
		r, err := capture.Open(capPath)
		if err != nil {
			t.Fatal(err)
		}
		dec := decode.NewDecoder()
		var pkt decode.Packet
		for {
			f, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			eng.ProcessFrame(f.Link, f.Data, inspect.Meta{Time: f.Time, In: interfaceOf(rs, f.Interface, dec, f, &pkt)})
		}
		r.Close()
		if len(control) != g.control || len(children) != g.related {
			t.Errorf("%s: %d inspected and %d related sessions, want %d and %d", g.capture, len(control), len(children), g.control, g.related)
		}
		for _, c := range children {
			p, ok := control[c.Parent]
			if !ok {
				t.Errorf("%s: related session %d has parent %d, not an inspected session", g.capture, c.ID, c.Parent)
				continue
			}
			if got, want := hosts(t, c.Src, c.Dst), hosts(t, p.Src, p.Dst); got != want {
				t.Errorf("%s: data session %d joins %v, its control session %d joins %v", g.capture, c.ID, got, p.ID, want)
			}
		}
	}
}

// hosts returns the two addresses of a flow, in a fixed order.
func hosts(t *testing.T, a, b string) [2]netip.Addr {
	t.Helper()
	x, y := netip.MustParseAddrPort(a).Addr(), netip.MustParseAddrPort(b).Addr()
	if y.Less(x) {
		x, y = y, x
	}
	return [2]netip.Addr{x, y}
}

// TestMismatch checks that a wrong expectation is reported with the
// packet, the expected verdict and its line, and fails the run.
func TestMismatch(t *testing.T) {
	g := goldens[5] // ftp_ftp-bounce.pcap
	capPath, rulesPath, _ := g.paths()
	exp, err := ParseExpect(strings.NewReader("# the bounce PORT\n27 accept\n31 drop no session\n"), "bad.expect")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum, err := Run(capPath, Options{Rules: mustRules(t, rulesPath), Expect: exp, Quiet: true}, &out)
	if !errors.Is(err, ErrMismatch) || sum.Mismatches != 2 {
		t.Fatalf("err %v, %d mismatches; want ErrMismatch, 2", err, sum.Mismatches)
	}
	for _, want := range []string{
		"MISMATCH packet 27: expected accept (line 2), got drop (ftp: PORT names 2.2.2.3, not the client 1.1.1.2)",
		"MISMATCH packet 31: expected drop (no session) (line 3), got drop (ftp: out-of-order segment, waiting for the missing bytes)",
		"MISMATCHES: 2 packets",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestWriteExpect checks that --write-expect output parses back and
// matches its own run.
func TestWriteExpect(t *testing.T) {
	g := goldens[5]
	capPath, rulesPath, _ := g.paths()
	rs := mustRules(t, rulesPath)
	var written bytes.Buffer
	if _, err := Run(capPath, Options{Rules: rs, Quiet: true, WriteExpect: &written}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(written.String(), "27 drop ftp: PORT names 2.2.2.3, not the client 1.1.1.2\n") {
		t.Fatalf("written:\n%s", written.String())
	}
	exp, err := ParseExpect(&written, "written")
	if err != nil {
		t.Fatal(err)
	}
	if len(exp) != g.packets {
		t.Fatalf("%d lines written, want %d", len(exp), g.packets)
	}
	if sum, err := Run(capPath, Options{Rules: rs, Quiet: true, Expect: exp}, io.Discard); err != nil || sum.Mismatches != 0 {
		t.Fatalf("replay against its own verdicts: %v", err)
	}
}

// TestJSONShape checks the --json output: one object per packet with
// exactly the documented fields, then one {"summary": ...} object.
func TestJSONShape(t *testing.T) {
	g := goldens[len(goldens)-1] // tcpdump-tftp.pcap, 7 packets
	capPath, rulesPath, _ := g.paths()
	var out bytes.Buffer
	if _, err := Run(capPath, Options{Rules: mustRules(t, rulesPath), JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]json.RawMessage
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v: %s", len(lines)+1, err, sc.Text())
		}
		lines = append(lines, m)
	}
	if len(lines) != g.packets+1 {
		t.Fatalf("%d JSON lines, want %d packets and a summary", len(lines), g.packets)
	}
	wantKeys := []string{"in", "packet", "reason", "rule", "session", "summary", "time", "verdict"}
	for i, m := range lines[:g.packets] {
		want := wantKeys
		if i < 2 { // the RRQ opens an expectation, the reply uses it
			want = append([]string{"events"}, wantKeys...)
		}
		if got := keys(m); !reflect.DeepEqual(got, want) {
			t.Fatalf("packet line %d has keys %v, want %v", i+1, got, want)
		}
		var p Packet
		if err := json.Unmarshal(mustJSON(t, m), &p); err != nil {
			t.Fatal(err)
		}
		if p.Packet != i+1 || p.Time.IsZero() || p.In == "" || p.Verdict != "accept" || p.Reason == "" || p.Session == 0 {
			t.Errorf("packet line %d: %+v", i+1, p)
		}
		if (i == 0) != (p.Rule == "testdata/tftp.rules:12") {
			t.Errorf("packet line %d: rule %q", i+1, p.Rule)
		}
	}
	for i, kind := range []string{"expect-add", "expect-use"} {
		var evs []Event
		if err := json.Unmarshal(lines[i]["events"], &evs); err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Kind != kind || evs[0].Expect == nil || evs[0].Expect.What != "tftp RRQ" {
			t.Errorf("packet line %d: events %s, want one %s of the RRQ's expectation", i+1, lines[i]["events"], kind)
		}
	}
	// Summaries are tcpdump's "a > b", not "a \u003e b".
	if !strings.Contains(string(lines[0]["summary"]), " > ") {
		t.Errorf("summary %s lacks a literal '>'", lines[0]["summary"])
	}
	if i := g.packets - 1; string(lines[1]["reason"]) != `"related"` || string(lines[i]["reason"]) != `"session"` {
		t.Errorf("reasons %s, %s; want related, session", lines[1]["reason"], lines[i]["reason"])
	}
	last := lines[g.packets]
	if got := keys(last); !reflect.DeepEqual(got, []string{"summary"}) {
		t.Fatalf("final line has keys %v, want [summary]", got)
	}
	var sum map[string]json.RawMessage
	if err := json.Unmarshal(last["summary"], &sum); err != nil {
		t.Fatal(err)
	}
	wantSum := []string{"accepted", "capture", "dropped", "expectations", "mismatches", "packets", "sessions", "verdicts"}
	if got := keys(sum); !reflect.DeepEqual(got, wantSum) {
		t.Fatalf("summary keys %v, want %v", got, wantSum)
	}
	var s Summary
	if err := json.Unmarshal(last["summary"], &s); err != nil {
		t.Fatal(err)
	}
	if s.Packets != 7 || s.Accepted != 7 || s.Sessions.Related != 1 || s.Sessions.ByALG["tftp"] != 1 ||
		s.Verdicts["accept: session"] != 5 || s.Expectations.Added != 1 || s.Expectations.Used != 1 {
		t.Errorf("summary %+v", s)
	}
}

func keys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseExpect(t *testing.T) {
	exp, err := ParseExpect(strings.NewReader(`# comment

12        accept
13-40     accept   session   # trailing comment
41        drop     ftp: PORT names   203.0.113.9
*         drop     default deny
40        drop
`), "ok.expect")
	if err != nil {
		t.Fatal(err)
	}
	want := []Expectation{
		{First: 12, Last: 12, Verdict: "accept", Line: 3},
		{First: 13, Last: 40, Verdict: "accept", Reason: "session", Line: 4},
		{First: 41, Last: 41, Verdict: "drop", Reason: "ftp: PORT names 203.0.113.9", Line: 5},
		{First: 0, Last: 0, Verdict: "drop", Reason: "default deny", Line: 6},
		{First: 40, Last: 40, Verdict: "drop", Line: 7},
	}
	if !reflect.DeepEqual(exp, want) {
		t.Fatalf("got %+v\nwant %+v", exp, want)
	}
	// Which line applies: the last that names the packet, else '*'.
	idx := newExpectIndex(exp)
	for n, line := range map[int]int{12: 3, 13: 4, 39: 4, 40: 7, 41: 5, 1: 6, 99: 6} {
		if e := idx.lookup(n); e == nil || e.Line != line {
			t.Errorf("packet %d: got %+v, want line %d", n, e, line)
		}
	}
	if e := newExpectIndex(exp[:3]).lookup(1); e != nil {
		t.Errorf("without '*', packet 1 is not checked: got %+v", e)
	}
}

func TestParseExpectErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"12\n", `bad.expect:1: expected a packet number or range and a verdict, found "12"`},
		{"\n\n12 pass\n", `bad.expect:3: expected verdict accept or drop, found "pass"`},
		{"x accept\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "x"`},
		{"0 accept\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "0"`},
		{"-3 drop\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "-3"`},
		{"9-3 drop\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "9-3"`},
		{"3-x drop\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "3-x"`},
		{"1-2-3 drop\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "1-2-3"`},
		{"** accept\n", `bad.expect:1: expected a packet number (from 1) or range N-M, found "**"`},
		{"# fine\n1 accept\n2 ACCEPT\n3 drop\nfoo\n", "bad.expect:3: expected verdict accept or drop, found \"ACCEPT\"\n" +
			"bad.expect:5: expected a packet number or range and a verdict, found \"foo\""},
	} {
		exp, err := ParseExpect(strings.NewReader(tc.in), "bad.expect")
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, %v; want error %q", tc.in, exp, err, tc.want)
		}
	}
	if _, err := ParseExpectFile(filepath.Join("testdata", "no-such.expect")); err == nil ||
		!strings.Contains(err.Error(), "no-such.expect") {
		t.Errorf("missing file: %v", err)
	}
	// A long line (a pasted reason, a comment) is read; one longer than
	// 1 MiB is an error that names it, not a silent end of file.
	src := "1 accept\n2 drop\n# " + strings.Repeat("x", 70<<10) + "\n3 accept\n"
	if exp, err := ParseExpect(strings.NewReader(src), "x.expect"); err != nil || len(exp) != 3 {
		t.Errorf("a 70 KiB comment: %d expectations, %v", len(exp), err)
	}
	if _, err := ParseExpect(strings.NewReader("1 accept\n1 drop "+strings.Repeat("x", 1<<20)+"\n"), "long.expect"); err == nil ||
		err.Error() != "long.expect:2: line longer than 1048576 bytes" {
		t.Errorf("over-long line: %v", err)
	}
	// A file of errors reports the first 100 and counts the rest.
	_, err := ParseExpect(strings.NewReader(strings.Repeat("x\n", 250)), "bad.expect")
	if lines := strings.Split(fmt.Sprint(err), "\n"); len(lines) != 101 || lines[100] != "bad.expect: 150 more errors not shown" {
		t.Errorf("250 bad lines: %d lines reported, the last %q", len(lines), lines[len(lines)-1])
	}
}
