package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

// TestPickUpNonTCPKeepsSketch: a session picked up in the middle of its
// life is not counted per host, whatever its protocol (the engine adopts
// UDP and ICMP flows offloaded before a restart too): its removal must
// not take it off the host's count, which would then read low and let
// the host open more than sessions-per-host.
func TestPickUpNonTCPKeepsSketch(t *testing.T) {
	tb := New(Config{Limits: Limits{Sessions: 64, SessionsPerHost: 1}})
	s, err := tb.Create(udpPkt(cli, 5000, srv, 53), t0, true)
	if err != nil {
		t.Fatal(err)
	}
	tb.Remove(s, "cleared by the operator")
	if n := tb.hosts.sessions(hostOf(cli)); n != 0 {
		t.Errorf("host's session count %d after the picked-up UDP session left, want 0", n)
	}
	admitted := 0
	for i := range 3 {
		if _, err := tb.Create(udpPkt(cli, uint16(6000+i), srv, 53), t0, false); err == nil {
			admitted++
		}
	}
	if admitted > 1 {
		t.Errorf("host admitted %d sessions with sessions-per-host 1", admitted)
	}
}

// TestSetLimitsBooks drives a table with random traffic while
// reloads raise and lower every limit (below current use too), and
// checks that the bookkeeping stays right: index count, per-host exact
// counts, the sketch (rows add up, never low, never negative), half-open
// and expectation totals; and that while a limit is below use nothing
// new is admitted past it.
func TestSetLimitsBooks(t *testing.T) {
	small := Limits{Sessions: 12, SessionsPerHost: 4, HalfOpen: 5, HalfOpenPerHost: 2, Expectations: 3, ExpectationsPerHost: 1}
	mid := Limits{Sessions: 64, SessionsPerHost: 20, HalfOpen: 24, HalfOpenPerHost: 9, Expectations: 12, ExpectationsPerHost: 5}
	big := Limits{Sessions: 5000, SessionsPerHost: 3000, HalfOpen: 2000, HalfOpenPerHost: 900, Expectations: 500, ExpectationsPerHost: 200}
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 11))
		tb := New(Config{
			Limits:   mid,
			Timeouts: Timeouts{TCPIdle: 20 * time.Second, TCPSynWait: 5 * time.Second, TCPFinWait: 2 * time.Second, UDPIdle: 4 * time.Second, ICMPIdle: 3 * time.Second},
			HashSeed: seed,
		})
		hosts := []netip.Addr{cli, srv, netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("203.0.113.9"),
			netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2")}
		now := t0
		var live []*Session
		for step := range 2000 {
			if r.IntN(100) == 0 {
				l := []Limits{small, mid, big}[r.IntN(3)]
				tb.SetLimits(l)
				checkBooksLoose(t, tb, seed, step)
			}
			now = now.Add(time.Duration(r.IntN(300)) * time.Millisecond)
			a, b := hosts[r.IntN(len(hosts))], hosts[r.IntN(len(hosts))]
			if a.Is4() != b.Is4() {
				b = a
			}
			p := &decode.Packet{Src: a, Dst: b, SrcPort: uint16(1000 + r.IntN(20)), DstPort: uint16(20 + r.IntN(3)), Length: 40}
			if r.IntN(2) == 0 {
				p.SrcPort, p.DstPort = p.DstPort, p.SrcPort
			}
			switch r.IntN(10) {
			case 0:
				p.Proto = decode.ProtoUDP
			case 1:
				p.Proto, p.ICMPQuery = decode.ProtoICMP, 8
				p.DstPort = p.SrcPort
			default:
				p.Proto = decode.ProtoTCP
				p.Flags = []uint8{S, S | A, A, A | F, R, R | A, A | P, S}[r.IntN(8)]
				p.Seq, p.Ack = uint32(r.IntN(4)*1000+r.IntN(3)), uint32(r.IntN(4)*1000+r.IntN(3))
				p.Window = 65535
			}
			if cur, d := tb.Peek(KeyOf(p)); cur != nil && p.Proto == decode.ProtoTCP && r.IntN(3) != 0 {
				p.Seq, p.Ack = cur.tcp[d].end, cur.tcp[d^1].end
			}
			k := KeyOf(p)
			s, dir := tb.Lookup(k, now)
			switch {
			case s != nil:
				tb.Track(s, dir, p, now)
				if r.IntN(8) == 0 {
					s.Offloaded = true
				}
				if r.IntN(40) == 0 {
					tb.Remove(s, "test")
				}
			default:
				var ns *Session
				var err error
				if x := tb.MatchExpectation(k, now); x != nil {
					ns, err = tb.CreateRelated(p, now, x)
				} else {
					ns, err = tb.Create(p, now, r.IntN(10) == 0 && p.Proto == decode.ProtoTCP)
				}
				if err == nil {
					live = append(live, ns)
					lim := tb.Limits()
					if tb.Len() > lim.Sessions {
						t.Fatalf("seed %d step %d: session admitted: %d sessions, limit %d", seed, step, tb.Len(), lim.Sessions)
					}
					if ns.halfOpen && tb.HalfOpen() > lim.HalfOpen {
						t.Fatalf("seed %d step %d: half-open admitted: %d, limit %d", seed, step, tb.HalfOpen(), lim.HalfOpen)
					}
				}
			}
			if len(live) > 0 && r.IntN(3) == 0 {
				par := live[r.IntN(len(live))]
				if got, _ := tb.Lookup(par.Key, now); got == par {
					q, d := hosts[r.IntN(len(hosts))], hosts[r.IntN(len(hosts))]
					if q.Is4() != d.Is4() {
						d = q
					}
					n := tb.ExpectationCount()
					if _, err := tb.Expect(par, Expect{Proto: decode.ProtoTCP, Src: q, Dst: d, DstPort: uint16(20 + r.IntN(3)),
						Timeout: time.Duration(1+r.IntN(5)) * time.Second}, now); err == nil && tb.ExpectationCount() > max(n, tb.Limits().Expectations) {
						t.Fatalf("seed %d step %d: %d expectations, limit %d", seed, step, tb.ExpectationCount(), tb.Limits().Expectations)
					}
				}
			}
			if r.IntN(20) == 0 && len(live) > 0 {
				tb.Promote(live[r.IntN(len(live))].Key)
			}
			checkBooksLoose(t, tb, seed, step)
		}
		for tb.Expire(now.Add(time.Hour), 1000) {
		}
		checkBooksLoose(t, tb, seed, -1)
		for _, row := range tb.hosts.rows {
			for i, c := range row {
				if c != 0 {
					t.Fatalf("seed %d: session counter %d left at %d", seed, i, c)
				}
			}
		}
	}
}

// checkBooksLoose is checkBooks without the checks that use stays within
// the limits (a reload may lower them below use).
func checkBooksLoose(t *testing.T, tb *Table, seed uint64, step int) {
	t.Helper()
	fail := func(f string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d step %d: "+f, append([]any{seed, step}, args...)...)
	}
	type hostUse struct{ sessions, halfOpen, expects int32 }
	per := map[host]hostUse{}
	n, halfOpen := 0, 0
	tb.sessions.each(func(s *Session) {
		n++
		if got := tb.sessions.get(s.Key); got != s {
			fail("session %d not found by its key", s.ID)
		}
		u := per[tb.hostOfSession(s)]
		if !s.PickedUp {
			u.sessions++
		}
		if s.halfOpen {
			u.halfOpen++
			halfOpen++
		}
		per[tb.hostOfSession(s)] = u
	})
	if n != tb.sessions.n {
		fail("index count %d, walked %d", tb.sessions.n, n)
	}
	for _, own := range tb.byParent {
		for _, e := range own {
			h := hostOf(e.owner.Key.Src)
			u := per[h]
			u.expects++
			per[h] = u
		}
	}
	var rowSums [sessionRows]int32
	for i, row := range tb.hosts.rows {
		for _, c := range row {
			if c < 0 {
				fail("a session counter below 0")
			}
			rowSums[i] += c
		}
	}
	total := int32(0)
	for h, u := range per {
		total += u.sessions
		if got := tb.hosts.sessions(h); got < u.sessions {
			fail("host %v: sessions counted %d, holds %d", h, got, u.sessions)
		}
		if tb.hosts.halfOpen[h] != u.halfOpen || tb.hosts.expects[h] != u.expects {
			fail("host %v: counted %d half-open, %d expectations; holds %+v", h, tb.hosts.halfOpen[h], tb.hosts.expects[h], u)
		}
	}
	for i, sum := range rowSums {
		if sum != total {
			fail("session counters of row %d add up to %d, the table counts %d", i, sum, total)
		}
	}
	if halfOpen != tb.halfOpen {
		fail("half-open %d, flagged %d", tb.halfOpen, halfOpen)
	}
}
