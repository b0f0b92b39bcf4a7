package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

// TestAccountingInvariants drives a table with random TCP, UDP and ICMP
// traffic, expectations, related sessions, offloading, promotion and
// removal, and checks after every step that the bookkeeping adds up: the
// per-host counts of sessions, half-open sessions and expectations match
// what the table holds and never go negative, the global half-open count
// matches the sessions flagged half-open, no limit is exceeded, every
// timer belongs to a live session or pending expectation, every pending
// expectation to a live owner, every parents entry to a live child. When
// time runs out everything is gone: no per-host entry, expectation,
// parent link or timer is left behind.
//
// With reloads, SetLimits moves every limit up and down, below current
// use too, at random: the books must still add up (the sketch recounted
// when it grows), nothing is admitted past a lowered limit, and the
// checks that use stays within the limits are left out.
func TestAccountingInvariants(t *testing.T) {
	t.Run("steady", func(t *testing.T) { driveTable(t, 40, 3000, false) })
	t.Run("sketch", func(t *testing.T) {
		defer func(l Limits) { midLimits = l }(midLimits)
		midLimits.SessionsPerHost = sketchFrom // counted in the sketch
		driveTable(t, 20, 3000, false)
	})
	t.Run("reloads", func(t *testing.T) { driveTable(t, 30, 2000, true) })
}

// The limits the random drives use and reload between.
var (
	smallLimits = Limits{Sessions: 12, SessionsPerHost: 4, HalfOpen: 5, HalfOpenPerHost: 2, Expectations: 3, ExpectationsPerHost: 1}
	midLimits   = Limits{Sessions: 64, SessionsPerHost: 20, HalfOpen: 24, HalfOpenPerHost: 9, Expectations: 12, ExpectationsPerHost: 5}
	bigLimits   = Limits{Sessions: 5000, SessionsPerHost: 3000, HalfOpen: 2000, HalfOpenPerHost: 900, Expectations: 500, ExpectationsPerHost: 200}
)

// driveTable runs the random drive of TestAccountingInvariants over
// seeds tables of steps steps each, with or without reloads.
func driveTable(t *testing.T, seeds uint64, steps int, reloads bool) {
	for seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 7))
		tb := New(Config{
			Limits:      midLimits,
			Timeouts:    Timeouts{TCPIdle: 20 * time.Second, TCPSynWait: 5 * time.Second, TCPFinWait: 2 * time.Second, UDPIdle: 4 * time.Second, ICMPIdle: 3 * time.Second},
			GapRecovery: int(seed % 2 * 3),
			HashSeed:    seed,
		})
		within := !reloads
		hosts := []netip.Addr{cli, srv, netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("203.0.113.9"),
			netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2")} // one IPv6 host: a /64
		now := t0
		var live []*Session
		for step := range steps {
			if reloads && r.IntN(100) == 0 {
				tb.SetLimits([]Limits{smallLimits, midLimits, bigLimits}[r.IntN(3)])
				checkBooks(t, tb, seed, step, within)
			}
			now = now.Add(time.Duration(r.IntN(300)) * time.Millisecond)
			a, b := hosts[r.IntN(len(hosts))], hosts[r.IntN(len(hosts))]
			if a.Is4() != b.Is4() {
				b = a
			}
			p := &decode.Packet{Src: a, Dst: b, SrcPort: uint16(1000 + r.IntN(6)), DstPort: uint16(20 + r.IntN(3)), Length: 40}
			if r.IntN(2) == 0 {
				p.SrcPort, p.DstPort = p.DstPort, p.SrcPort // a reply direction
			}
			switch r.IntN(10) {
			case 0:
				p.Proto = decode.ProtoUDP
			case 1:
				p.Proto, p.ICMPQuery = decode.ProtoICMP, 8
				p.ICMPAnswer = r.IntN(2) == 0
				p.DstPort = p.SrcPort
			default:
				p.Proto = decode.ProtoTCP
				p.Flags = []uint8{S, S | A, A, A | F, R, R | A, A | P, S}[r.IntN(8)]
				p.Seq, p.Ack = uint32(r.IntN(4)*1000+r.IntN(3)), uint32(r.IntN(4)*1000+r.IntN(3))
				p.Window = 65535
				if r.IntN(3) == 0 {
					p.Payload = make([]byte, r.IntN(3))
				}
			}
			if cur, d := tb.Peek(KeyOf(p)); cur != nil && p.Proto == decode.ProtoTCP && r.IntN(3) != 0 {
				// Mostly in step, so handshakes and teardowns complete.
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
					// Nothing is admitted past a limit, lowered or not.
					if lim := tb.Limits(); tb.Len() > lim.Sessions || (ns.halfOpen && tb.HalfOpen() > lim.HalfOpen) {
						t.Fatalf("seed %d step %d: admitted past a limit: %d sessions, %d half-open; limits %+v",
							seed, step, tb.Len(), tb.HalfOpen(), lim)
					}
				}
			}
			if len(live) > 0 && r.IntN(3) == 0 {
				par := live[r.IntN(len(live))]
				// As the engine does: only a session just looked up (so
				// not expired) asks for an expectation.
				if got, _ := tb.Lookup(par.Key, now); got == par {
					q, d := hosts[r.IntN(len(hosts))], hosts[r.IntN(len(hosts))]
					if q.Is4() != d.Is4() {
						d = q
					}
					tb.Expect(par, Expect{Proto: []uint8{decode.ProtoTCP, decode.ProtoUDP}[r.IntN(2)], Src: q, SrcPort: uint16(r.IntN(2) * (1000 + r.IntN(6))),
						Dst: d, DstPort: uint16(20 + r.IntN(3)), Timeout: time.Duration(1+r.IntN(5)) * time.Second,
						Replace: r.IntN(2) == 0}, now)
				}
			}
			if r.IntN(20) == 0 && len(live) > 0 {
				tb.Promote(live[r.IntN(len(live))].Key)
			}
			if r.IntN(50) == 0 && len(live) > 0 {
				tb.CancelExpectations(live[r.IntN(len(live))].ID)
			}
			checkBooks(t, tb, seed, step, within)
		}
		for tb.Expire(now.Add(time.Hour), 1000) {
		}
		checkBooks(t, tb, seed, -1, within)
		if tb.Len() != 0 || tb.halfOpen != 0 || len(tb.hosts.halfOpen) != 0 || len(tb.hosts.expects) != 0 || len(tb.expects) != 0 ||
			len(tb.byParent) != 0 || len(tb.parents) != 0 || len(tb.timers) != 0 {
			t.Fatalf("seed %d: left behind: %d sessions, half-open %d, per-host %v %v, %d expectations, %d byParent, %d parents, %d timers",
				seed, tb.Len(), tb.halfOpen, tb.hosts.halfOpen, tb.hosts.expects, len(tb.expects), len(tb.byParent), len(tb.parents), len(tb.timers))
		}
		for _, row := range tb.hosts.rows {
			for i, c := range row {
				if c != 0 {
					t.Fatalf("seed %d: session counter %d left at %d", seed, i, c)
				}
			}
		}
		if len(tb.hosts.exact) != 0 {
			t.Fatalf("seed %d: exact session counts left: %v", seed, tb.hosts.exact)
		}
	}
}

// checkBooks checks the table's bookkeeping against what it holds; within
// adds that use stays within the limits (a reload may lower them below
// use).
func checkBooks(t *testing.T, tb *Table, seed uint64, step int, within bool) {
	t.Helper()
	fail := func(f string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d step %d: "+f, append([]any{seed, step}, args...)...)
	}
	type hostUse struct{ sessions, halfOpen, expects int32 }
	per := map[host]hostUse{}
	n, timed, halfOpen := 0, 0, 0
	tb.sessions.each(func(s *Session) {
		n++
		if s.gone {
			fail("gone session %d still indexed", s.ID)
		}
		if tb.sessions.get(s.Key) != s {
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
		if s.timerPos >= 0 {
			timed++
			if tb.timers[s.timerPos].s != s {
				fail("session %d timerPos wrong", s.ID)
			}
		} else {
			fail("session %d has no timer", s.ID)
		}
	})
	if n != tb.sessions.n {
		fail("index count %d, walked %d", tb.sessions.n, n)
	}
	owned := 0
	for id, own := range tb.byParent {
		owned += len(own)
		for _, e := range own {
			if e.gone || e.Parent != id || e.owner.gone {
				fail("expectation %d: gone %v, parent %d/%d, owner gone %v", e.ID, e.gone, e.Parent, id, e.owner.gone)
			}
			h := hostOf(e.owner.Key.Src)
			u := per[h]
			u.expects++
			per[h] = u
		}
	}
	lim := tb.cfg.Limits
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
		if within && (int(u.expects) > lim.ExpectationsPerHost || int(u.halfOpen) > lim.HalfOpenPerHost || int(u.sessions) > lim.SessionsPerHost) {
			fail("host %v over a per-host limit: %+v", h, u)
		}
	}
	if tb.hosts.exact != nil {
		for h, c := range tb.hosts.exact {
			if c <= 0 || c != per[h].sessions {
				fail("host %v: %d sessions counted exactly, holds %d", h, c, per[h].sessions)
			}
		}
	} else {
		for i, sum := range rowSums {
			if sum != total {
				fail("session counters of row %d add up to %d, the table counts %d", i, sum, total)
			}
		}
	}
	for _, m := range []map[host]int32{tb.hosts.halfOpen, tb.hosts.expects} {
		for h, c := range m {
			if c <= 0 {
				fail("host %v: count %d kept", h, c)
			}
		}
	}
	if halfOpen != tb.halfOpen {
		fail("half-open %d, flagged %d", tb.halfOpen, halfOpen)
	}
	if owned != len(tb.expects) {
		fail("%d expectations indexed, %d owned", len(tb.expects), owned)
	}
	if within && (len(tb.expects) > tb.cfg.Limits.Expectations || tb.sessions.n > tb.cfg.Limits.Sessions || tb.halfOpen > tb.cfg.Limits.HalfOpen) {
		fail("over a limit: %d expectations, %d sessions, %d half-open", len(tb.expects), tb.sessions.n, tb.halfOpen)
	}
	for c := range tb.parents {
		if c.gone {
			fail("parents entry for gone child %d", c.ID)
		}
	}
	if len(tb.timers) != timed+len(tb.expects) {
		fail("%d timers for %d sessions and %d expectations", len(tb.timers), timed, len(tb.expects))
	}
}
