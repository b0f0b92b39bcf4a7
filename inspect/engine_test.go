package inspect

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
)

const testRules = `
interface wan wan0 net 198.51.100.0/24 2001:db8:1::/64
interface lan lan0 net 192.0.2.0/24 2001:db8:2::/64

set servers { 192.0.2.10 2001:db8:2::10 }

in on wan default deny log {
    permit tcp from any to @servers port { 21 2121 } inspect ftp
    permit udp from any to @servers port 69 inspect tftp
    permit tcp from any to @servers port 9000
    permit icmp from any to any type echo-request
    permit icmpv6 from any to any type echo-request
}
in on lan default deny log {
}
`

var (
	client  = netip.MustParseAddr("198.51.100.2")
	server  = netip.MustParseAddr("192.0.2.10")
	client6 = netip.MustParseAddr("2001:db8:1::2")
	server6 = netip.MustParseAddr("2001:db8:2::10")
	start   = time.Unix(1700000000, 0)
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func mustRules(t testing.TB, src string) *rules.Ruleset {
	t.Helper()
	rs, err := rules.Parse("test.rules", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// step is one packet of a scripted exchange and the verdict it must get.
type step struct {
	in     string
	pkt    []byte
	accept bool
	reason string // prefix of the expected reason; "" = don't care
}

func run(t *testing.T, e *Engine, steps []step) []Verdict {
	t.Helper()
	out := make([]Verdict, len(steps))
	for i, s := range steps {
		v := e.Process(s.pkt, Meta{Time: start.Add(time.Duration(i) * time.Millisecond), In: s.in})
		if v.Accept != s.accept || !strings.HasPrefix(v.Reason, s.reason) {
			t.Fatalf("packet %d: got accept=%v reason %q, want accept=%v reason %q", i+1, v.Accept, v.Reason, s.accept, s.reason)
		}
		out[i] = v
	}
	return out
}

const (
	syn = packettest.SYN
	ack = packettest.ACK
	psh = packettest.PSH
	fin = packettest.FIN
	rst = packettest.RST
)

func TestTCPSessionByRule(t *testing.T) {
	e := New(mustRules(t, testRules), Options{FastPath: true})
	c, s := ap(client, 40000), ap(server, 9000)
	v := run(t, e, []step{
		{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule},
		{"lan0", packettest.TCP(s, c, syn|ack, 500, 101, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack, 101, 501, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack|psh, 101, 501, []byte("hello")), true, ReasonSession},
		{"lan0", packettest.TCP(s, c, ack|fin, 501, 106, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack|fin, 106, 502, nil), true, ReasonSession},
		{"lan0", packettest.TCP(s, c, ack, 502, 107, nil), true, ReasonSession},
	})
	if v[0].Rule != "test.rules:10" {
		t.Errorf("rule %q, want test.rules:10", v[0].Rule)
	}
	if !v[3].Offload || v[4].Offload {
		t.Errorf("offload: data %v, fin %v; want true, false", v[3].Offload, v[4].Offload)
	}
}

func TestDenials(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	run(t, e, []step{
		{"wan0", packettest.TCP(c, ap(server, 22), syn, 1, 0, nil), false, ReasonDenyDefault},
		{"wan0", packettest.TCP(c, s, ack, 1, 1, nil), false, ReasonNoSession},
		{"wan0", packettest.TCP(c, s, syn|ack, 1, 1, nil), false, ReasonNoSession},
		{"lan0", packettest.TCP(s, c, syn, 1, 0, nil), false, ReasonDenyDefault},
		{"eth9", packettest.TCP(c, s, syn, 1, 0, nil), false, ReasonNoRules},
		{"wan0", []byte{0x45, 0, 0}, false, "decode:"},
		{"wan0", packettest.ICMPEcho(server, client, 7, 1, true), false, ReasonNoSession},
	})
}

func TestICMPEchoAndErrors(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	req := packettest.ICMPEcho(client, server, 7, 1, false)
	c, s := ap(client, 40000), ap(server, 9000)
	synPkt := packettest.TCP(c, s, syn, 100, 0, nil)
	router := netip.MustParseAddr("192.0.2.1")
	run(t, e, []step{
		{"wan0", req, true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server, client, 7, 1, true), true, ReasonSession},
		{"wan0", packettest.ICMPEcho(client6, server6, 9, 1, false), true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server6, client6, 9, 1, true), true, ReasonSession},
		{"wan0", synPkt, true, ReasonRule},
		// Port unreachable from the server's side quoting the SYN.
		{"lan0", packettest.ICMPError(router, client, 3, 3, packettest.Quote(synPkt)), true, ReasonICMPRelated},
		// An error quoting a flow nobody opened.
		{"lan0", packettest.ICMPError(router, client, 3, 3, packettest.Quote(packettest.TCP(c, ap(server, 7777), syn, 1, 0, nil))), false, ReasonICMPOrphan},
	})
}

// TestICMPQueriesKeyedByType: a ping session carries the initiator's
// requests and the responder's replies only. The responder's own echo
// requests with the same identifier are a flow of their own, judged by
// the rules (denied here, permitted with a rule, and then tracked apart);
// each query kind keeps its own replies (Linux's conntrack keys ICMP by
// type too).
func TestICMPQueriesKeyedByType(t *testing.T) {
	src := testRules + `
in on lan default deny {
    permit icmp from any to any type echo-request
}
`
	src = strings.Replace(src, "in on lan default deny log {\n}\n", "", 1)
	src = strings.Replace(src, "type echo-request\n    permit icmpv6", "type { echo-request timestamp-request }\n    permit icmpv6", 1)
	e := New(mustRules(t, testRules), Options{})
	run(t, e, []step{
		{"wan0", packettest.ICMPEcho(client, server, 7, 1, false), true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server, client, 7, 1, false), false, ReasonDenyDefault},
		{"lan0", packettest.ICMPEcho(server, client, 7, 1, true), true, ReasonSession},
		{"wan0", packettest.ICMPEcho(client6, server6, 9, 1, false), true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server6, client6, 9, 1, false), false, ReasonDenyDefault},
		{"lan0", packettest.ICMPEcho(server6, client6, 9, 1, true), true, ReasonSession},
		// The initiator's replies are not part of its own session either.
		{"wan0", packettest.ICMPEcho(client, server, 7, 1, true), false, ReasonNoSession},
	})

	e = New(mustRules(t, src), Options{})
	stamp := make([]byte, 12)
	v := run(t, e, []step{
		{"wan0", packettest.ICMPEcho(client, server, 7, 1, false), true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server, client, 7, 1, false), true, ReasonRule},
		{"lan0", packettest.ICMPEcho(server, client, 7, 1, true), true, ReasonSession},
		{"wan0", packettest.ICMPEcho(client, server, 7, 1, true), true, ReasonSession},
		{"wan0", packettest.ICMPv4Query(client, server, 13, 7, 1, stamp), true, ReasonRule},
		{"lan0", packettest.ICMPv4Query(server, client, 14, 7, 1, stamp), true, ReasonSession},
		// An address mask reply answers no query that was sent.
		{"lan0", packettest.ICMPv4Query(server, client, 18, 7, 1, make([]byte, 4)), false, ReasonNoSession},
		// An error about the server's ping belongs to the server's session.
		{"wan0", packettest.ICMPError(client, server, 3, 3, packettest.Quote(packettest.ICMPEcho(server, client, 7, 1, false))), true, ReasonICMPRelated},
	})
	if v[0].Session == v[1].Session || v[2].Session != v[0].Session || v[3].Session != v[1].Session || v[5].Session != v[4].Session {
		t.Errorf("sessions: %d %d %d %d %d %d", v[0].Session, v[1].Session, v[2].Session, v[3].Session, v[4].Session, v[5].Session)
	}
}

func TestICMPErrorFoundInSiblingWorker(t *testing.T) {
	rs := mustRules(t, testRules)
	a, b := New(rs, Options{Worker: 0, Workers: 2}), New(rs, Options{Worker: 1, Workers: 2})
	all := []*Engine{a, b}
	a.SetSiblings(all)
	b.SetSiblings(all)
	synPkt := packettest.TCP(ap(client, 40000), ap(server, 9000), syn, 100, 0, nil)
	if v := a.Process(synPkt, Meta{Time: start, In: "wan0"}); !v.Accept {
		t.Fatal(v.Reason)
	}
	errPkt := packettest.ICMPError(netip.MustParseAddr("192.0.2.1"), client, 3, 3, packettest.Quote(synPkt))
	if v := b.Process(errPkt, Meta{Time: start, In: "lan0"}); !v.Accept || v.Reason != ReasonICMPRelated {
		t.Fatalf("sibling lookup: %+v", v)
	}
}

func TestReloadKeepsSessions(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	run(t, e, []step{{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule}})
	e.SetRules(mustRules(t, "interface wan wan0\ninterface lan lan0\nin on wan default deny {\n}\nin on lan default deny {\n}\n"))
	if v := e.Process(packettest.TCP(s, c, syn|ack, 500, 101, nil), Meta{Time: start, In: "lan0"}); !v.Accept {
		t.Fatalf("return traffic after reload: %s", v.Reason)
	}
	if v := e.Process(packettest.TCP(ap(client, 40001), s, syn, 100, 0, nil), Meta{Time: start, In: "wan0"}); v.Accept {
		t.Fatal("new rules not in force")
	}
}

func TestEventsAndStats(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	var kinds []string
	e.Subscribe(func(ev Event) { kinds = append(kinds, ev.Kind.String()+":"+ev.Reason) })
	c, s := ap(client, 40000), ap(server, 9000)
	run(t, e, []step{
		{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule},
		{"lan0", packettest.TCP(s, c, rst|ack, 0, 101, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, ap(server, 22), syn, 1, 0, nil), false, ReasonDenyDefault},
	})
	e.Tick(start.Add(time.Hour))
	want := "session-open:rule deny:default deny session-close:idle timeout"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	st := e.Stats()
	if st.Packets != 3 || st.Accepted != 2 || st.Dropped != 1 || st.Reasons[ReasonDenyDefault] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEstablishedZeroAllocs(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	run(t, e, []step{
		{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule},
		{"lan0", packettest.TCP(s, c, syn|ack, 500, 101, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack, 101, 501, nil), true, ReasonSession},
	})
	data := packettest.TCP(c, s, ack|psh, 101, 501, make([]byte, 100))
	m := Meta{Time: start, In: "wan0"}
	allocs := testing.AllocsPerRun(1000, func() {
		if v := e.Process(data, m); !v.Accept {
			t.Fatal(v.Reason)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per established packet, want 0", allocs)
	}
}

// BenchmarkEstablished measures decode + lookup + track for a packet of
// an established TCP flow (a retransmission of the same segment, so the
// window state stays put).
func BenchmarkEstablished(b *testing.B) {
	e := New(mustRules(b, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	for _, p := range [][]byte{
		packettest.TCP(c, s, syn, 100, 0, nil),
		packettest.TCP(s, c, syn|ack, 500, 101, nil),
		packettest.TCP(c, s, ack, 101, 501, nil),
	} {
		e.Process(p, Meta{Time: start, In: "wan0"})
	}
	data := packettest.TCP(c, s, ack|psh, 101, 501, make([]byte, 1400))
	m := Meta{Time: start, In: "wan0"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		e.Process(data, m)
	}
}

// rules200 is a realistic 200-rule block: the rule that matches is last.
func rules200() string {
	var b strings.Builder
	b.WriteString("interface wan wan0 net 198.51.100.0/24\ninterface lan lan0 net 192.0.2.0/24\n")
	b.WriteString("set servers { 192.0.2.10 192.0.2.11 192.0.2.12 }\n")
	b.WriteString("in on wan default deny {\n")
	for i := range 199 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  permit tcp from 203.0.113.%d to @servers port %d\n", i%250, 1000+i)
		case 1:
			fmt.Fprintf(&b, "  deny udp from any to 192.0.2.%d port %d-%d\n", i%250, 2000+i, 2100+i)
		case 2:
			fmt.Fprintf(&b, "  permit tcp from 2001:db8:%x::/48 to any port { %d %d }\n", i, 3000+i, 4000+i)
		default:
			fmt.Fprintf(&b, "  deny tcp from 198.51.100.0/25 to 192.0.2.%d port 22\n", i%250)
		}
	}
	b.WriteString("  permit tcp from any to @servers port 9000\n}\nin on lan default deny {\n}\n")
	return b.String()
}

// BenchmarkNewSession200Rules measures a new TCP session (SYN) that
// matches the last of 200 rules, including session creation.
func BenchmarkNewSession200Rules(b *testing.B) {
	e := New(mustRules(b, rules200()), Options{})
	pkts := make([][]byte, 4096)
	for i := range pkts {
		pkts[i] = packettest.TCP(ap(client, uint16(10000+i)), ap(server, 9000), syn, 100, 0, nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Close each session so the table does not fill: the RST from the
		// server ends it, and the next SYN on that port starts afresh.
		now := start.Add(time.Duration(i) * time.Minute)
		if v := e.Process(pkts[i%len(pkts)], Meta{Time: now, In: "wan0"}); !v.Accept {
			b.Fatal(v.Reason)
		}
	}
}

// TestAdoptsOffloadedFlowAfterRestart: a fresh engine (a restarted
// daemon) meets the teardown of a flow that the kernel fast path carried
// for an earlier run; the connection mark says so, and the engine lets it
// through, while an unmarked stray segment stays dropped.
func TestAdoptsOffloadedFlowAfterRestart(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	teardown := packettest.TCP(s, c, fin|ack, 90000, 5000, nil)
	if v := e.Process(teardown, Meta{Time: start, In: "lan0"}); v.Accept {
		t.Fatal("unmarked segment without a session accepted")
	}
	v := e.Process(teardown, Meta{Time: start, In: "lan0", Offloaded: true})
	if !v.Accept || v.Reason != ReasonAdopted {
		t.Fatalf("marked teardown: %+v", v)
	}
	if v := e.Process(packettest.TCP(c, s, fin|ack, 5000, 90001, nil), Meta{Time: start, In: "wan0"}); !v.Accept || v.Reason != ReasonSession {
		t.Fatalf("the other side's FIN: %+v", v)
	}
	if v := e.Process(packettest.TCP(ap(client, 40001), s, syn, 1, 0, nil), Meta{Time: start, In: "wan0", Offloaded: true}); v.Reason == ReasonAdopted {
		t.Fatal("a SYN was adopted")
	}
}

// TestResumesKernelEstablishedFlows: after a restart, a connection the
// kernel tracked as established is picked up with its rule and inspector
// when the rules permit its original direction; others stay dropped.
func TestResumesKernelEstablishedFlows(t *testing.T) {
	c, s := ap(client, 40000), ap(server, 21)
	other := ap(server, 22)
	known := map[string]bool{
		fmt.Sprint(c, s):     true,
		fmt.Sprint(c, other): true,
	}
	e := New(mustRules(t, testRules), Options{Known: func(k conntrack.Key) bool {
		return known[fmt.Sprint(netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort))]
	}})
	var opened []Event
	e.Subscribe(func(ev Event) {
		if ev.Kind == SessionOpen {
			opened = append(opened, ev)
		}
	})
	// The server's reply comes first: the session is the client's.
	v := e.Process(packettest.TCP(s, c, ack|psh, 9000, 7000, []byte("226 Transfer complete\r\n")), Meta{Time: start, In: "lan0"})
	if !v.Accept || v.Reason != ReasonResumed || v.Rule != "test.rules:8" {
		t.Fatalf("resumed reply: %+v", v)
	}
	if len(opened) != 1 || opened[0].Session.Src != c.String() || opened[0].Session.ALG != "ftp" {
		t.Fatalf("resumed session %+v", opened)
	}
	if v := e.Process(packettest.TCP(c, s, ack, 7000, 9023, nil), Meta{Time: start, In: "wan0"}); v.Reason != ReasonSession {
		t.Fatalf("client side after resume: %+v", v)
	}
	// Known to the kernel, but the rules do not permit it (port 22).
	if v := e.Process(packettest.TCP(c, other, ack, 1, 1, nil), Meta{Time: start, In: "wan0"}); v.Accept {
		t.Fatal("resumed a flow the rules deny")
	}
	// Not known to the kernel.
	if v := e.Process(packettest.TCP(ap(client, 40001), s, ack, 1, 1, nil), Meta{Time: start, In: "wan0"}); v.Accept {
		t.Fatal("resumed an unknown flow")
	}
}

// TestPortReuseAfterOffloadedClose: the last ACK of an offloaded
// connection is carried by the kernel fast path, so the engine sees both
// FINs but not the final ACK; a client reusing the port for a new
// connection must still get through.
func TestPortReuseAfterOffloadedClose(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	v := run(t, e, []step{
		{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule},
		{"lan0", packettest.TCP(s, c, syn|ack, 500, 101, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack|psh, 101, 501, []byte("x")), true, ReasonSession},
		{"lan0", packettest.TCP(s, c, fin|ack, 501, 102, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, fin|ack, 102, 502, nil), true, ReasonSession},
		// (the final ACK went through the kernel fast path)
		{"wan0", packettest.TCP(c, s, syn, 90000, 0, nil), true, ReasonRule},
	})
	if v[5].Session == v[0].Session {
		t.Fatal("the new connection kept the old session")
	}
	// A SYN on a session that is only half closed does not open a new
	// one: it passes to the server (which answers with a challenge ACK)
	// and changes nothing.
	v = run(t, e, []step{
		{"lan0", packettest.TCP(s, c, syn|ack, 7000, 90001, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, ack, 90001, 7001, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, fin|ack, 90001, 7001, nil), true, ReasonSession},
		{"wan0", packettest.TCP(c, s, syn, 12345, 0, nil), true, ReasonSession},
		{"lan0", packettest.TCP(s, c, ack, 7001, 90002, nil), true, ReasonSession},
	})
	if v[3].Session != v[0].Session {
		t.Fatal("a SYN on a half-closed session opened a new one")
	}
}

// TestReloadRenumbersSessions: after a reload that moves rules and
// interfaces, a session still names the rule text and the device it was
// admitted by.
func TestReloadRenumbersSessions(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	c, s := ap(client, 40000), ap(server, 9000)
	run(t, e, []step{{"wan0", packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule}})
	moved := strings.Replace(testRules, "interface wan wan0", "interface lan2 lan9 net 203.0.113.0/24\ninterface wan wan0", 1)
	moved = strings.Replace(moved, "in on lan default", "in on lan2 default deny {\n}\nin on lan default", 1)
	moved = strings.Replace(moved, "    permit tcp from any to @servers port 9000\n", "", 1)
	moved = strings.Replace(moved, "in on wan default deny log {\n", "in on wan default deny log {\n    permit tcp from any to @servers port 8080\n    permit tcp from any to @servers port 9000\n", 1)
	rs := mustRules(t, moved)
	e.SetRules(rs)
	ss := e.Sessions()
	if len(ss) != 1 || ss[0].In != "wan0" {
		t.Fatalf("sessions %+v", ss)
	}
	want := ""
	for _, r := range rs.Rules {
		if strings.Contains(r.Text, "port 9000") {
			want = r.Pos.String()
		}
	}
	if ss[0].Rule != want || want == "" {
		t.Fatalf("session's rule %q, want %q", ss[0].Rule, want)
	}
}

// TestUnwantedEventsCostNothing: when no subscriber wants an event (a
// rate limit with no room, nobody watching), a denial builds none.
func TestUnwantedEventsCostNothing(t *testing.T) {
	e := New(mustRules(t, testRules), Options{})
	got := 0
	e.SubscribeWhen(func(Event) { got++ }, func(k EventKind, log bool) bool { return false })
	denied := packettest.TCP(ap(client, 40000), ap(server, 22), syn, 1, 0, nil)
	m := Meta{Time: start, In: "wan0"}
	if a := testing.AllocsPerRun(1000, func() { e.Process(denied, m) }); a != 0 {
		t.Fatalf("%v allocations per unwanted denial", a)
	}
	if got != 0 {
		t.Fatalf("%d events delivered to a subscriber that wanted none", got)
	}
	e.SubscribeWhen(func(Event) { got++ }, func(k EventKind, log bool) bool { return k == Deny })
	e.Process(denied, m)
	if got != 1 {
		t.Fatalf("%d events, want the one denial", got)
	}
}

// TestDefaultsAgree: the rule language's defaults (what a file without
// timeouts or limits gets) are the session table's own.
func TestDefaultsAgree(t *testing.T) {
	rs := mustRules(t, "interface wan eth0\nin on wan default deny {\n}\n")
	if got := tableLimits(rs); got != conntrack.DefaultLimits {
		t.Errorf("rules' default limits %+v, the table's %+v", got, conntrack.DefaultLimits)
	}
	if got := tableTimeouts(rs); got != conntrack.DefaultTimeouts {
		t.Errorf("rules' default timeouts %+v, the table's %+v", got, conntrack.DefaultTimeouts)
	}
}
