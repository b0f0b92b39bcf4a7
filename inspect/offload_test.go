package inspect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/packettest"
)

func (l *lab) state(id uint64) string {
	for _, si := range l.e.Sessions() {
		if si.ID == id {
			return si.State
		}
	}
	return "gone"
}

// TestOffloadAtSynAck: a session without an inspector goes to the kernel
// fast path at its SYN-ACK, so the handshake's last ACK stays in the
// kernel. It stays half-open until something proves the handshake done:
// a later packet (here its FIN), or the kernel's conntrack saying the
// connection is established (Promote); mere traffic (Touch) is not proof.
func TestOffloadAtSynAck(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	c, s := ap(client, 41000), ap(server, 30001)
	l.process(client, packettest.TCP(c, s, syn, 1000, 0, nil), true, ReasonRelated)
	v := l.process(server, packettest.TCP(s, c, syn|ack, 5000, 1001, nil), true, ReasonSession)
	if !v.Offload {
		t.Fatal("the data connection's SYN-ACK was not offloaded")
	}
	if got := l.state(v.Session); got != "syn-recv" || l.e.Stats().HalfOpen != 1 {
		t.Fatalf("after the offloaded SYN-ACK: %s, half-open %d; want syn-recv, 1", got, l.e.Stats().HalfOpen)
	}
	// The server's FIN after the transfer, acknowledging what the kernel
	// carried: the handshake is proven, the session established, then
	// closing.
	l.process(server, packettest.TCP(s, c, fin|ack, 90000, 1001, nil), true, ReasonSession)
	if got := l.state(v.Session); got != "fin-wait" || l.e.Stats().HalfOpen != 0 {
		t.Fatalf("after the FIN: %s, half-open %d; want fin-wait, 0", got, l.e.Stats().HalfOpen)
	}

	// A rule's session, proven by the kernel's conntrack instead.
	rc, rs := ap(client, 42000), ap(server, 9000)
	l.process(client, packettest.TCP(rc, rs, syn, 1, 0, nil), true, ReasonRule)
	v = l.process(server, packettest.TCP(rs, rc, syn|ack, 7, 2, nil), true, ReasonSession)
	if !v.Offload || l.e.Stats().HalfOpen != 1 {
		t.Fatalf("rule session at its SYN-ACK: offload %v, half-open %d", v.Offload, l.e.Stats().HalfOpen)
	}
	k := conntrack.Key{Src: client, Dst: server, SrcPort: 42000, DstPort: 9000, Proto: 6}
	// Traffic the kernel saw is not proof: a spoofed SYN's SYN-ACK is
	// traffic too.
	if !l.e.Touch(k, l.now.Add(time.Second)) {
		t.Fatal("touch found no session")
	}
	if got := l.state(v.Session); got != "syn-recv" || l.e.Stats().HalfOpen != 1 {
		t.Fatalf("after traffic: %s, half-open %d; want syn-recv, 1", got, l.e.Stats().HalfOpen)
	}
	if !l.e.Promote(k) {
		t.Fatal("promote found no session to promote")
	}
	if got := l.state(v.Session); got != "established" || l.e.Stats().HalfOpen != 0 {
		t.Fatalf("after the kernel's word: %s, half-open %d; want established, 0", got, l.e.Stats().HalfOpen)
	}
}

// TestUnansweredOffloadedHandshakeExpires: a SYN-ACK answered by nobody
// (a spoofed SYN) leaves a half-open session that expires after
// tcp-synwait, offloaded or not.
func TestUnansweredOffloadedHandshakeExpires(t *testing.T) {
	l := newLab(t)
	rc, rs := ap(client, 42000), ap(server, 9000)
	l.process(client, packettest.TCP(rc, rs, syn, 1, 0, nil), true, ReasonRule)
	l.process(server, packettest.TCP(rs, rc, syn|ack, 7, 2, nil), true, ReasonSession)
	l.e.Tick(l.now.Add(31 * time.Second))
	if st := l.e.Stats(); st.Sessions != 0 || st.HalfOpen != 0 {
		t.Fatalf("sessions %d, half-open %d after tcp-synwait; want 0, 0", st.Sessions, st.HalfOpen)
	}
}

// TestOffloadAtSyn: the kernel carries the rest of the handshake of a
// session handed over at its SYN; the engine next sees a FIN (with ACK)
// and tracks on from there, or the kernel's conntrack promotes it.
func TestOffloadAtSyn(t *testing.T) {
	l := newLab(t)
	c, s := ap(client, 43000), ap(server, 9000)
	v := l.process(client, packettest.TCP(c, s, syn, 100, 0, nil), true, ReasonRule)
	if !v.Offload {
		t.Fatal("the SYN of an uninspected session was not offloaded")
	}
	// (SYN-ACK, ACK and data went through the kernel.)
	l.process(client, packettest.TCP(c, s, fin|ack, 5101, 777001, nil), true, ReasonSession)
	if got := l.state(v.Session); got != "fin-wait" || l.e.Stats().HalfOpen != 0 {
		t.Fatalf("after the client's FIN: %s, half-open %d; want fin-wait, 0", got, l.e.Stats().HalfOpen)
	}
	l.process(server, packettest.TCP(s, c, fin|ack, 777001, 5102, nil), true, ReasonSession)
	if got := l.state(v.Session); got != "closing" {
		t.Fatalf("after both FINs: %s, want closing", got)
	}

	c2 := ap(client, 43001)
	v = l.process(client, packettest.TCP(c2, s, syn, 100, 0, nil), true, ReasonRule)
	k := conntrack.Key{Src: client, Dst: server, SrcPort: 43001, DstPort: 9000, Proto: 6}
	if !l.e.Promote(k) || l.state(v.Session) != "established" || l.e.Stats().HalfOpen != 0 {
		t.Fatalf("promote at syn-sent: %s, half-open %d", l.state(v.Session), l.e.Stats().HalfOpen)
	}

	// Replay has no fast path: nothing is offloaded there.
	e := New(mustRules(t, testRules), Options{})
	if v := e.Process(packettest.TCP(ap(client, 43002), s, syn, 1, 0, nil), Meta{Time: start, In: "wan0"}); v.Offload {
		t.Fatal("offloaded without a fast path")
	}
}

// TestAccountOffloaded: the kernel's counters of an offloaded session
// raise the engine's, turned to the session's direction, and never lower
// them.
func TestAccountOffloaded(t *testing.T) {
	l := newLab(t)
	rc, rs := ap(client, 42000), ap(server, 9000)
	v := l.process(client, packettest.TCP(rc, rs, syn, 1, 0, nil), true, ReasonRule)
	k := conntrack.Key{Src: client, Dst: server, SrcPort: 42000, DstPort: 9000, Proto: 6}
	// A read of the kernel's table made before the session began tells of
	// an earlier connection on these ports: the session is not listed.
	if got := l.e.Offloaded(l.now); len(got) != 0 {
		t.Fatalf("Offloaded(at its creation) = %v, want none", got)
	}
	if got := l.e.Offloaded(l.now.Add(time.Millisecond)); len(got) != 1 || got[0].Key != k || !got[0].Created.Equal(l.now) {
		t.Fatalf("Offloaded(after its creation) = %v, want %v created %v", got, k, l.now)
	}
	counts := func() ([2]uint64, [2]uint64) {
		for _, si := range l.e.Sessions() {
			if si.ID == v.Session {
				return si.Packets, si.Bytes
			}
		}
		t.Fatal("session gone")
		return [2]uint64{}, [2]uint64{}
	}
	if !l.e.Account(k, [2]uint64{10, 20}, [2]uint64{1000, 900000}) {
		t.Fatal("account found no session")
	}
	if p, b := counts(); p != [2]uint64{10, 20} || b != [2]uint64{1000, 900000} {
		t.Fatalf("after the kernel's counters: packets %v, bytes %v", p, b)
	}
	// The kernel's entry the other way round (it saw the server first).
	l.e.Account(k.Reverse(), [2]uint64{30, 12}, [2]uint64{2000000, 1200})
	if p, b := counts(); p != [2]uint64{12, 30} || b != [2]uint64{1200, 2000000} {
		t.Fatalf("after reversed counters: packets %v, bytes %v", p, b)
	}
	// Smaller counts (a stale read) change nothing.
	l.e.Account(k, [2]uint64{1, 1}, [2]uint64{1, 1})
	if p, b := counts(); p != [2]uint64{12, 30} || b != [2]uint64{1200, 2000000} {
		t.Fatalf("after smaller counters: packets %v, bytes %v", p, b)
	}
	if l.e.Account(conntrack.Key{Src: client, Dst: server, SrcPort: 1, DstPort: 2, Proto: 6}, [2]uint64{1, 1}, [2]uint64{1, 1}) {
		t.Fatal("account of an unknown flow reported a session")
	}
}

// TestICMPErrorOfOffloadedConnection: an ICMP error that the kernel found
// related to an offloaded connection (the connmark restored into the
// packet mark: Meta.Offloaded) passes even when no table holds the flow
// any more (after a restart, or an idle timeout shorter than the
// kernel's): a packet-too-big must reach its sender. Without the mark it
// is still an orphan.
func TestICMPErrorOfOffloadedConnection(t *testing.T) {
	e := New(mustRules(t, testRules), Options{FastPath: true})
	router6, router4 := netip.MustParseAddr("2001:db8:ffff::1"), netip.MustParseAddr("203.0.113.1")
	big6 := packettest.TCP(ap(server6, 9000), ap(client6, 40000), ack, 5000, 1001, make([]byte, 1400))
	ptb := packettest.ICMPError(router6, server6, 2, 0, big6[:1232])
	big4 := packettest.TCP(ap(server, 9000), ap(client, 40000), ack, 5000, 1001, make([]byte, 1400))
	fragNeeded := packettest.ICMPError(router4, server, 3, 4, packettest.Quote(big4))
	for _, pkt := range [][]byte{ptb, fragNeeded} {
		if v := e.Process(pkt, Meta{Time: start, In: "wan0"}); v.Accept || v.Reason != ReasonICMPOrphan {
			t.Errorf("unmarked error: %+v, want an orphan", v)
		}
		if v := e.Process(pkt, Meta{Time: start, In: "wan0", Offloaded: true}); !v.Accept || v.Reason != ReasonICMPOffloaded {
			t.Errorf("error of an offloaded connection: %+v, want it accepted", v)
		}
	}
}

// TestICMPErrorByRule: an error that quotes no tracked flow is judged by
// the rules, and opens no session: a rule naming its type lets it pass.
func TestICMPErrorByRule(t *testing.T) {
	rs := strings.Replace(testRules, "permit icmpv6 from any to any type echo-request",
		"permit icmpv6 from any to any type { echo-request packet-too-big }", 1)
	e := New(mustRules(t, rs), Options{})
	router6 := netip.MustParseAddr("2001:db8:ffff::1")
	big := packettest.TCP(ap(server6, 9000), ap(client6, 40000), ack, 5000, 1001, make([]byte, 1400))
	ptb := packettest.ICMPError(router6, server6, 2, 0, big[:1232])
	if v := e.Process(ptb, Meta{Time: start, In: "wan0"}); !v.Accept || v.Reason != ReasonRule {
		t.Errorf("packet-too-big a rule permits: %+v", v)
	}
	unreach := packettest.ICMPError(router6, server6, 1, 0, big[:1232])
	if v := e.Process(unreach, Meta{Time: start, In: "wan0"}); v.Accept || v.Reason != ReasonICMPOrphan {
		t.Errorf("unreachable no rule permits: %+v, want an orphan", v)
	}
	if n := len(e.Sessions()); n != 0 {
		t.Errorf("%d sessions opened by errors", n)
	}
}
