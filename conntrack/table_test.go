package conntrack

import (
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

func udpPkt(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) *decode.Packet {
	return &decode.Packet{Proto: decode.ProtoUDP, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Length: 28}
}

func synFrom(src netip.Addr, sport uint16) *decode.Packet {
	p := tcpPkt(true, S, 1000, 0, 65535, 0, -1)
	p.Src, p.SrcPort = src, sport
	return p
}

func TestUDPSessionAndIdleTimeout(t *testing.T) {
	var closed []string
	tb := New(Config{Timeouts: Timeouts{UDPIdle: 30 * time.Second}, OnClose: func(s *Session, why string) { closed = append(closed, why) }})
	q := udpPkt(cli, 5000, srv, 69)
	s, err := tb.Create(q, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != StateNew {
		t.Fatalf("state %v", s.State)
	}
	r := udpPkt(srv, 69, cli, 5000)
	got, dir := tb.Lookup(KeyOf(r), t0.Add(10*time.Second))
	if got != s || dir != Reply {
		t.Fatal("reply not matched")
	}
	tb.Track(s, dir, r, t0.Add(10*time.Second))
	if s.State != StateEstablished || s.Packets[Reply] != 1 {
		t.Fatalf("after reply: %+v", s)
	}
	// Idle deadline moved with the reply: alive at 39 s, gone at 41 s.
	if got, _ := tb.Lookup(KeyOf(q), t0.Add(39*time.Second)); got == nil {
		t.Fatal("expired too early")
	}
	if got, _ := tb.Lookup(KeyOf(q), t0.Add(80*time.Second)); got != nil {
		t.Fatal("not expired")
	}
	if tb.Len() != 0 || len(closed) != 1 || closed[0] != "idle timeout" {
		t.Fatalf("len %d closed %v", tb.Len(), closed)
	}
}

func TestIncrementalExpiry(t *testing.T) {
	tb := New(Config{Timeouts: Timeouts{UDPIdle: time.Second}})
	for i := range 1000 {
		if _, err := tb.Create(udpPkt(cli, uint16(1000+i), srv, 53), t0, false); err != nil {
			t.Fatal(err)
		}
	}
	later := t0.Add(time.Minute)
	if !tb.Expire(later, 100) {
		t.Fatal("a budget of 100 should leave work")
	}
	if tb.Len() != 900 {
		t.Fatalf("len %d after one slice, want 900", tb.Len())
	}
	for tb.Expire(later, 100) {
	}
	if tb.Len() != 0 {
		t.Fatalf("len %d, want 0", tb.Len())
	}
}

func TestLimits(t *testing.T) {
	tb := New(Config{Limits: Limits{Sessions: 10, HalfOpen: 5, HalfOpenPerHost: 3}})
	other := netip.MustParseAddr("198.51.100.3")
	for i := range 3 {
		if _, err := tb.Create(synFrom(cli, uint16(2000+i)), t0, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Create(synFrom(cli, 3000), t0, false); !errors.Is(err, ErrHalfOpenPerHost) {
		t.Fatalf("4th half-open from one host: %v", err)
	}
	for i := range 2 {
		if _, err := tb.Create(synFrom(other, uint16(2000+i)), t0, false); err != nil {
			t.Fatal(err)
		}
	}
	third := netip.MustParseAddr("198.51.100.4")
	if _, err := tb.Create(synFrom(third, 2000), t0, false); !errors.Is(err, ErrHalfOpen) {
		t.Fatalf("6th half-open: %v", err)
	}
	for i := range 5 {
		if _, err := tb.Create(udpPkt(third, uint16(100+i), srv, 53), t0, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Create(udpPkt(third, 999, srv, 53), t0, false); !errors.Is(err, ErrTableFull) {
		t.Fatalf("11th session: %v", err)
	}
	// Half-open sessions that time out free their places.
	later := t0.Add(time.Minute)
	for tb.Expire(later, 100) {
	}
	if tb.HalfOpen() != 0 || tb.Len() != 0 {
		t.Fatalf("half-open %d len %d after expiry", tb.HalfOpen(), tb.Len())
	}
	if _, err := tb.Create(synFrom(cli, 3000), later, false); err != nil {
		t.Fatal(err)
	}
}

func TestExpectations(t *testing.T) {
	var expired []*Expectation
	tb := New(Config{OnExpectExpired: func(e *Expectation) { expired = append(expired, e) }})
	ctl, err := tb.Create(synFrom(cli, 40000), t0, false)
	if err != nil {
		t.Fatal(err)
	}
	pasv := Expect{Proto: decode.ProtoTCP, Src: cli, Dst: srv, DstPort: 30001, Timeout: 60 * time.Second, Replace: true, What: "ftp PASV"}
	x, err := tb.Expect(ctl, pasv, t0)
	if err != nil {
		t.Fatal(err)
	}
	data := Key{Proto: decode.ProtoTCP, Src: cli, SrcPort: 41000, Dst: srv, DstPort: 30001}
	third := data
	third.Src = netip.MustParseAddr("203.0.113.9")
	if tb.MatchExpectation(third, t0) != nil {
		t.Fatal("a third party took the hole")
	}
	other := data
	other.DstPort = 30002
	if tb.MatchExpectation(other, t0) != nil {
		t.Fatal("another port matched")
	}
	if got := tb.MatchExpectation(data, t0.Add(time.Second)); got != x {
		t.Fatal("the expected connection did not match")
	}
	syn := &decode.Packet{Proto: decode.ProtoTCP, Src: data.Src, SrcPort: data.SrcPort, Dst: data.Dst, DstPort: data.DstPort, Flags: decode.TCPSyn}
	child, err := tb.CreateRelated(syn, t0.Add(time.Second), x)
	if err != nil || tb.ParentID(child) != ctl.ID {
		t.Fatalf("CreateRelated: %v, parent %d", err, tb.ParentID(child))
	}
	if tb.MatchExpectation(data, t0.Add(time.Second)) != nil {
		t.Fatal("a hole was used twice")
	}
	tb.Remove(child, "test")

	// Replace: a new PASV replaces the pending one.
	tb.Expect(ctl, pasv, t0)
	pasv2 := pasv
	pasv2.DstPort = 30002
	tb.Expect(ctl, pasv2, t0)
	if tb.ExpectationCount() != 1 || tb.MatchExpectation(data, t0) != nil {
		t.Fatal("the old hole survived a replacing one")
	}

	// Timeout.
	if tb.MatchExpectation(other, t0.Add(61*time.Second)) != nil {
		t.Fatal("hole used after its timeout")
	}
	if len(expired) != 1 {
		t.Fatalf("expired callbacks %d", len(expired))
	}

	// Removed with the control session; a fixed source port must match.
	active := Expect{Proto: decode.ProtoTCP, Src: srv, SrcPort: 20, Dst: cli, DstPort: 50000, Timeout: time.Minute}
	tb.Expect(ctl, active, t0)
	k := Key{Proto: decode.ProtoTCP, Src: srv, SrcPort: 2020, Dst: cli, DstPort: 50000}
	if tb.MatchExpectation(k, t0) != nil {
		t.Fatal("active hole matched another source port")
	}
	tb.Remove(ctl, "closed")
	k.SrcPort = 20
	if tb.MatchExpectation(k, t0) != nil || tb.ExpectationCount() != 0 {
		t.Fatal("hole survived its control session")
	}
}

func TestTimeNeverRunsBack(t *testing.T) {
	tb := New(Config{Timeouts: Timeouts{UDPIdle: 10 * time.Second}})
	s, _ := tb.Create(udpPkt(cli, 1, srv, 2), t0, false)
	// A packet stamped earlier than the last one (capture reordering)
	// must not make the session live longer than its deadline.
	tb.Track(s, Original, udpPkt(cli, 1, srv, 2), t0.Add(-time.Hour))
	if got, _ := tb.Lookup(KeyOf(udpPkt(cli, 1, srv, 2)), t0.Add(11*time.Second)); got != nil {
		t.Fatal("session outlived its deadline")
	}
}

// BenchmarkMemory1M measures the memory held per tracked session with a
// million sessions (IPv6, so addresses take their full size; each from a
// host of its own, the worst case of the per-host counts) in one table.
func BenchmarkMemory1M(b *testing.B) {
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := New(Config{Limits: Limits{Sessions: 1 << 21}})
		// UDP sessions (the same Session as TCP), each from a host of its
		// own (an IPv6 /64), so that every session is counted per host.
		p := udpPkt(netip.Addr{}, 1000, netip.MustParseAddr("2001:db8:2::10"), 53)
		for i := range 1_000_000 {
			p.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 5: byte(i >> 16), 6: byte(i >> 8), 7: byte(i), 15: 1})
			if _, err := tb.Create(p, t0, false); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "bytes/session")
		runtime.KeepAlive(tb)
	}
}

// TestDeadlineMovingEarlierIsHonoured: a session whose deadline moves
// earlier (the FIN of a session armed for the 1 h idle timeout; a
// handshake completing with an idle timeout shorter than the handshake's)
// leaves the table at its new deadline, not at the old one.
func TestDeadlineMovingEarlierIsHonoured(t *testing.T) {
	tb := New(Config{Timeouts: Timeouts{TCPIdle: time.Hour, TCPFinWait: 10 * time.Second}})
	runScript(t, tb, with(handshake,
		seg{true, F | A, 1001, 5001, 65535, 0, -1, "", StateFinWait},
		seg{false, F | A, 5001, 1002, 65535, 0, -1, "", StateClosing},
		seg{true, A, 1002, 5002, 65535, 0, -1, "", StateTimeWait},
	))
	for tb.Expire(t0.Add(11*time.Second), 100) {
	}
	if tb.Len() != 0 {
		t.Fatal("a closed session waited for its old idle deadline")
	}

	tb = New(Config{Timeouts: Timeouts{TCPIdle: 2 * time.Second, TCPSynWait: 30 * time.Second}})
	runScript(t, tb, handshake)
	for tb.Expire(t0.Add(3*time.Second), 100) {
	}
	if tb.Len() != 0 {
		t.Fatal("an idle session waited for its handshake deadline")
	}
}

// TestResponderCannotKeepHalfOpenAlive: bare ACKs from the responder
// during the handshake pass (a server answering a reused port) but do not
// move the half-open session's deadline.
func TestResponderCannotKeepHalfOpenAlive(t *testing.T) {
	tb := New(Config{Timeouts: Timeouts{TCPSynWait: 30 * time.Second}})
	s, err := tb.Create(tcpPkt(true, S, 1000, 0, 65535, 0, -1), t0, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		now := t0.Add(time.Duration(i) * 20 * time.Second)
		ack := tcpPkt(false, A, 5000, uint32(i), 65535, 0, -1)
		got, dir := tb.Lookup(KeyOf(ack), now)
		if got == nil {
			if i == 1 {
				t.Fatal("session gone before its deadline")
			}
			return // expired at its first deadline, as it must
		}
		if why, _ := tb.Track(got, dir, ack, now); why != "" {
			t.Fatalf("ACK %d dropped: %s", i, why)
		}
	}
	t.Fatalf("half-open session still there after 60 s: %+v", s)
}

// TestReplacedExpectationsLeaveNoTimers: an inspector replacing its
// pending expectation over and over (a TFTP client re-sending its
// request) keeps one expectation and one timer, not one per request.
func TestReplacedExpectationsLeaveNoTimers(t *testing.T) {
	tb := New(Config{})
	parent, err := tb.Create(udpPkt(cli, 5000, srv, 69), t0, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		x := Expect{Proto: decode.ProtoUDP, Src: srv, Dst: cli, DstPort: 5000, Timeout: time.Minute, Replace: true, What: "tftp RRQ"}
		if _, err := tb.Expect(parent, x, t0.Add(time.Duration(i)*time.Microsecond)); err != nil {
			t.Fatal(err)
		}
	}
	if tb.ExpectationCount() != 1 || len(tb.timers) != 2 { // the session's timer and one expectation's
		t.Fatalf("%d expectations, %d timers; want 1 and 2", tb.ExpectationCount(), len(tb.timers))
	}
	// The survivor still expires on time.
	for tb.Expire(t0.Add(2*time.Minute), 100) {
	}
	if tb.ExpectationCount() != 0 {
		t.Fatal("the last expectation did not expire")
	}
}

// TestClosedSessionsLeaveNoTimers checks that a removed session takes its
// timer with it: connections that outlive their handshake timer (which
// then re-arms for the idle timeout) and close must not leave timers, and
// with them their sessions' memory, in the heap until that old deadline.
func TestClosedSessionsLeaveNoTimers(t *testing.T) {
	tb := New(Config{Limits: Limits{Sessions: 1000}})
	now := t0
	seg := func(c netip.Addr, fromClient bool, flags uint8, seq, ack uint32) *decode.Packet {
		p := &decode.Packet{Proto: decode.ProtoTCP, Flags: flags, Seq: seq, Ack: ack, Window: 65535, Length: 40}
		if fromClient {
			p.Src, p.Dst, p.SrcPort, p.DstPort = c, srv, 40000, 21
		} else {
			p.Src, p.Dst, p.SrcPort, p.DstPort = srv, c, 21, 40000
		}
		return p
	}
	for r := range 10 {
		var ss []*Session
		for i := range 900 {
			c := netip.AddrFrom4([4]byte{10, byte(r), byte(i >> 8), byte(i)})
			s, err := tb.Create(seg(c, true, S, 1000, 0), now, false)
			if err != nil {
				t.Fatal(err)
			}
			tb.Track(s, Reply, seg(c, false, S|A, 5000, 1001), now)
			tb.Track(s, Original, seg(c, true, A, 1001, 5001), now)
			ss = append(ss, s)
		}
		now = now.Add(31 * time.Second) // the handshake timers fire and re-arm for the idle timeout
		tb.Expire(now, 1<<30)
		for _, s := range ss {
			c := s.Key.Src
			tb.Track(s, Original, seg(c, true, F|A, 1001, 5001), now)
			tb.Track(s, Reply, seg(c, false, F|A, 5001, 1002), now)
			tb.Track(s, Original, seg(c, true, A, 1002, 5002), now)
		}
		now = now.Add(11 * time.Second)
		tb.Expire(now, 1<<30)
	}
	if tb.Len() != 0 || len(tb.timers) != 0 {
		t.Errorf("after 9000 closed connections: %d sessions, %d timers; want none", tb.Len(), len(tb.timers))
	}
}
