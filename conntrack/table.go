// Package conntrack tracks sessions for inspectd: flow keys, the session
// table, TCP state with window tracking, UDP and ICMP sessions,
// expectations (predicted connections opened by inspectors), timeouts and
// limits.
//
// A Table is owned by one worker and is not safe for concurrent use. All
// time comes from the packets: the table never reads the wall clock, so
// replay is deterministic and timeouts are testable.
package conntrack

import (
	"container/heap"
	"errors"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

// Timeouts are the idle and state timeouts of sessions.
type Timeouts struct {
	TCPIdle    time.Duration // established TCP without traffic
	TCPSynWait time.Duration // TCP handshake not finished
	TCPFinWait time.Duration // TCP after FIN or RST
	UDPIdle    time.Duration // UDP without traffic
	ICMPIdle   time.Duration // ICMP echo without traffic
}

// Limits bound the table. Zero means the default.
//
// The per-host limits count by host: an IPv4 address, or an IPv6 /64
// (one site's hosts share a /64, and any of them may use all of it). A
// session counts under its initiator's host; a connection an expectation
// predicted, and the expectation itself, count under the host of the
// client of the session that negotiated them (an active-mode FTP data
// connection, which the server opens, is the client's doing).
type Limits struct {
	Sessions            int // sessions in the table
	SessionsPerHost     int // sessions counted under one host
	HalfOpen            int // TCP sessions whose handshake is not finished
	HalfOpenPerHost     int // half-open TCP sessions counted under one host
	Expectations        int // pending expectations
	ExpectationsPerHost int // pending expectations counted under one host
}

// Config configures a Table.
type Config struct {
	Timeouts Timeouts
	Limits   Limits
	// IDBase and IDStride number sessions and expectations: IDs are
	// IDBase + n*IDStride, so that several tables (one per worker) hand
	// out distinct IDs. IDStride 0 means 1; IDBase 0 means 1.
	IDBase, IDStride uint64
	// GapRecovery, when positive, lets that many TCP segments in a row
	// beyond the window resynchronise a direction instead of being dropped
	// for ever: captures miss packets. Zero (live, where the kernel hands
	// over every packet) keeps strict tracking.
	GapRecovery int
	// HashSeed seeds the hash that spreads hosts over the per-host
	// session counters: a random one keeps peers from aiming at another
	// host's counters; a fixed one (0 is fine) makes runs repeatable.
	HashSeed uint64
	// OnClose, when set, is called for each session that leaves the
	// table, with the reason ("idle timeout", "reset", "closed", ...).
	OnClose func(s *Session, why string)
	// OnExpectExpired, when set, is called for each expectation that
	// expires unused.
	OnExpectExpired func(e *Expectation)
}

// Defaults used for zero fields of Config.
var (
	DefaultTimeouts = Timeouts{
		TCPIdle:    time.Hour,
		TCPSynWait: 30 * time.Second,
		TCPFinWait: 10 * time.Second,
		UDPIdle:    30 * time.Second,
		ICMPIdle:   10 * time.Second,
	}
	DefaultLimits = Limits{
		Sessions:            262144,
		SessionsPerHost:     32768,
		HalfOpen:            8192,
		HalfOpenPerHost:     512,
		Expectations:        4096,
		ExpectationsPerHost: 256,
	}
)

// Errors returned when a limit refuses a new session or expectation. Their
// texts are verdict reasons.
var (
	ErrTableFull       = errors.New("limit: session table full")
	ErrHalfOpen        = errors.New("limit: too many half-open sessions")
	ErrHalfOpenPerHost = errors.New("limit: too many half-open sessions from this host")
	ErrSessionsPerHost = errors.New("limit: too many sessions from this host")
	ErrExpectFull      = errors.New("limit: expectation table full")
	ErrExpectPerHost   = errors.New("limit: too many expectations for this host")
	ErrExists          = errors.New("session exists")
)

// maxExpectPerParent bounds the expectations one session may own.
const maxExpectPerParent = 8

// Table is the session table of one worker.
type Table struct {
	cfg      Config
	sessions index
	nextID   uint64

	halfOpen int
	// hosts counts what each host uses (Limits).
	hosts hostCounts

	expects  map[expectKey]*Expectation
	byParent map[uint64][]*Expectation
	// parents links each child session to its parent (CreateRelated).
	parents map[*Session]*Session

	timers timerHeap
	now    int64 // latest packet time seen (Unix ns); time never runs back
}

// New returns an empty table.
func New(cfg Config) *Table {
	fillTimeouts(&cfg.Timeouts)
	fillLimits(&cfg.Limits)
	if cfg.IDStride == 0 {
		cfg.IDStride = 1
	}
	if cfg.IDBase == 0 {
		cfg.IDBase = 1
	}
	return &Table{
		cfg:      cfg,
		sessions: newIndex(cfg.Limits.Sessions),
		nextID:   cfg.IDBase,
		hosts:    newHostCounts(cfg.Limits, cfg.HashSeed),
		expects:  make(map[expectKey]*Expectation),
		byParent: make(map[uint64][]*Expectation),
		parents:  make(map[*Session]*Session),
	}
}

func fillTimeouts(t *Timeouts) {
	d := DefaultTimeouts
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.TCPIdle, &d.TCPIdle}, {&t.TCPSynWait, &d.TCPSynWait}, {&t.TCPFinWait, &d.TCPFinWait},
		{&t.UDPIdle, &d.UDPIdle}, {&t.ICMPIdle, &d.ICMPIdle},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
}

func fillLimits(l *Limits) {
	d := DefaultLimits
	for _, f := range []struct{ v, def *int }{
		{&l.Sessions, &d.Sessions}, {&l.SessionsPerHost, &d.SessionsPerHost},
		{&l.HalfOpen, &d.HalfOpen}, {&l.HalfOpenPerHost, &d.HalfOpenPerHost},
		{&l.Expectations, &d.Expectations}, {&l.ExpectationsPerHost, &d.ExpectationsPerHost},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
}

// SetTimeouts and SetLimits change the table's configuration (on a rules
// reload). Existing sessions keep their current deadlines until their next
// packet.
func (t *Table) SetTimeouts(to Timeouts) { fillTimeouts(&to); t.cfg.Timeouts = to }

// SetLimits changes the table's limits; see SetTimeouts.
func (t *Table) SetLimits(l Limits) {
	fillLimits(&l)
	t.cfg.Limits = l
	t.sessions.resize(l.Sessions)
	if t.hosts.fit(l) {
		t.sessions.each(func(s *Session) {
			if !s.PickedUp {
				t.hosts.addSession(t.hostOfSession(s), 1)
			}
		})
	}
}

// Len returns the number of sessions in the table.
func (t *Table) Len() int { return t.sessions.n }

// HalfOpen returns the number of half-open TCP sessions.
func (t *Table) HalfOpen() int { return t.halfOpen }

// Limits returns the limits in force.
func (t *Table) Limits() Limits { return t.cfg.Limits }

// ExpectationCount returns the number of pending expectations.
func (t *Table) ExpectationCount() int { return len(t.expects) }

// advance moves the table clock to now (it never runs back) and returns it.
func (t *Table) advance(now time.Time) int64 {
	n := now.UnixNano()
	if n > t.now {
		t.now = n
	}
	return t.now
}

// Lookup finds the session of a packet with flow key k at time now and
// the packet's direction in it. An expired session is removed and not
// returned.
func (t *Table) Lookup(k Key, now time.Time) (*Session, Dir) {
	n := t.advance(now)
	s := t.sessions.get(k)
	if s == nil {
		return nil, Original
	}
	if s.expires <= n {
		t.remove(s, "idle timeout")
		return nil, Original
	}
	return s, s.dirOf(k)
}

// Peek finds a session by key without changing anything, for ICMP errors
// and for lookups from other workers.
func (t *Table) Peek(k Key) (*Session, Dir) {
	s := t.sessions.get(k)
	if s == nil || s.gone || s.expires <= t.now {
		return nil, Original
	}
	return s, s.dirOf(k)
}

// Create adds a new session for the first packet p (whose flow key is the
// session's original direction) at time now. For TCP, p must be a SYN
// unless pickUp is set, in which case the session is picked up in the
// middle of its life from whatever segment p is (such a session is not
// refused by the per-host limits: the connection exists already).
func (t *Table) Create(p *decode.Packet, now time.Time, pickUp bool) (*Session, error) {
	return t.create(KeyOf(p), Original, p, now, pickUp, nil)
}

// CreateRelated adds the session of the connection that expectation x
// (from MatchExpectation) predicted, whose first packet is p, and uses x
// up. When a limit refuses the session, x stays for the connection's next
// attempt (a retransmitted SYN). The new session is the child of the
// session that owns x: its traffic keeps its parent alive, as a control
// connection lies silent while its transfer runs (Touch, Track), and it
// counts under the host of its parent's client (Limits). Only children pay
// for the link (a map entry, not a field of every session).
func (t *Table) CreateRelated(p *decode.Packet, now time.Time, x *Expectation) (*Session, error) {
	s, err := t.create(KeyOf(p), Original, p, now, false, x.owner)
	if err == nil {
		t.dropExpectation(x)
	}
	return s, err
}

// PickUp adds a TCP session picked up in the middle of its life whose
// original direction is orig, from packet p travelling in direction dir
// (the engine adopts connections that the kernel tracked as established
// before the daemon started: their first packet seen may be a reply).
func (t *Table) PickUp(orig Key, dir Dir, p *decode.Packet, now time.Time) (*Session, error) {
	return t.create(orig, dir, p, now, true, nil)
}

// create adds a session; parent, when not nil, owns the expectation that
// predicted it.
func (t *Table) create(k Key, dir Dir, p *decode.Packet, now time.Time, pickUp bool, parent *Session) (*Session, error) {
	n := t.advance(now)
	if old := t.sessions.get(k); old != nil {
		if old.expires > n {
			return nil, ErrExists
		}
		t.remove(old, "idle timeout")
	}
	if t.sessions.n >= t.cfg.Limits.Sessions {
		t.expireSome(n, 64)
		if t.sessions.n >= t.cfg.Limits.Sessions {
			return nil, ErrTableFull
		}
	}
	// A session picked up in the middle of its life is not counted per
	// host: the connection exists already, and the side its first packet
	// comes from need not be the side that opened it.
	h := hostOf(k.Src)
	if parent != nil {
		h = hostOf(parent.Key.Src)
	}
	if !pickUp && int(t.hosts.sessions(h)) >= t.cfg.Limits.SessionsPerHost {
		return nil, ErrSessionsPerHost
	}
	halfOpen := p.Proto == decode.ProtoTCP && !pickUp
	if halfOpen {
		if t.halfOpen >= t.cfg.Limits.HalfOpen {
			return nil, ErrHalfOpen
		}
		if int(t.hosts.halfOpen[h]) >= t.cfg.Limits.HalfOpenPerHost {
			return nil, ErrHalfOpenPerHost
		}
	}
	s := &Session{ID: t.nextID, Key: k, Rule: -1, Created: n, LastSeen: n, timerPos: -1, PickedUp: pickUp}
	if parent != nil {
		t.parents[s] = parent
	}
	if !pickUp {
		t.hosts.addSession(h, 1)
	}
	t.nextID += t.cfg.IDStride
	switch p.Proto {
	case decode.ProtoTCP:
		if pickUp {
			s.State = StateEstablished
			s.tcp[dir].pickUp(p)
		} else {
			s.State = StateSynSent
			s.tcp[Original].init(p)
			t.halfOpen++
			t.hosts.halfOpen[h]++
			s.halfOpen = true
		}
	default:
		s.State = StateNew
	}
	t.sessions.insert(s)
	s.expires = n + int64(t.timeout(s))
	t.arm(s)
	return s, nil
}

// Track updates session s with packet p travelling in direction dir: TCP
// state and window, counters and the idle deadline. It returns "" when the
// packet is valid for the session, else the reason to drop it. A packet
// that is dropped changes nothing but the drop itself. Some valid TCP
// segments pass and change nothing either, not even the idle deadline
// (unchanged is then set): a reset in the window but not where the
// receiver expects one, which it answers with a challenge ACK, and a
// client's SYN on an established session. An inspector must not read
// them: the connection did not move.
func (t *Table) Track(s *Session, dir Dir, p *decode.Packet, now time.Time) (why string, unchanged bool) {
	n := t.advance(now)
	if p.Proto == decode.ProtoTCP {
		if why, unchanged := t.trackTCP(s, dir, p); why != "" || unchanged {
			return why, unchanged
		}
	} else if dir == Reply && s.State == StateNew {
		s.State = StateEstablished
	}
	s.Packets[dir]++
	s.Bytes[dir] += uint64(p.Length)
	s.LastSeen = n
	if s.gone || (s.State == StateSynSent && dir == Reply) {
		// Nothing the responder sends before its SYN-ACK (an ACK for an
		// older connection) keeps a half-open session alive.
		return "", false
	}
	s.expires = n + int64(t.timeout(s))
	t.arm(s)
	t.keepParent(s, n)
	return "", false
}

// ParentID returns the ID of the session whose inspector expected s, or 0
// if none.
func (t *Table) ParentID(s *Session) uint64 {
	if p := t.parents[s]; p != nil {
		return p.ID
	}
	return 0
}

// keepParent keeps the parent of s alive for its idle timeout from n,
// while it is established: a download that outlasts the control
// connection's idle timeout must not cost the server's final reply.
func (t *Table) keepParent(s *Session, n int64) {
	p := t.parents[s]
	if p == nil || p.gone || p.State != StateEstablished {
		return
	}
	if d := n + int64(t.timeout(p)); d > p.expires {
		p.expires = d
		t.arm(p)
	}
}

// Promote marks a TCP session that was offloaded during its handshake as
// established, on the kernel conntrack's word that the handshake finished
// (its last packets stayed in the kernel). It reports whether it changed
// anything.
func (t *Table) Promote(k Key) bool {
	s := t.sessions.get(k)
	if s == nil || s.gone || !s.Offloaded || (s.State != StateSynSent && s.State != StateSynRecv) {
		return false
	}
	s.State = StateEstablished
	t.leaveHalfOpen(s)
	s.expires = s.LastSeen + int64(t.timeout(s))
	t.arm(s)
	return true
}

// Touch keeps an offloaded session alive: the kernel's conntrack says the
// flow still carries traffic that did not pass through the engine.
func (t *Table) Touch(k Key, now time.Time) bool {
	n := t.advance(now)
	s := t.sessions.get(k)
	if s == nil || s.gone || s.expires <= n {
		return false
	}
	s.LastSeen = n
	s.expires = n + int64(t.timeout(s))
	t.arm(s)
	t.keepParent(s, n)
	return true
}

// Account raises the traffic counters of the session of flow k to the
// kernel's, which count every packet of an offloaded connection (the
// engine sees only the few the kernel queues); packets and bytes are in
// k's direction (original, reply). It reports whether the session exists.
func (t *Table) Account(k Key, packets, bytes [2]uint64) bool {
	s := t.sessions.get(k)
	if s == nil || s.gone {
		return false
	}
	packets, bytes, _ = k.Orient(s.Key, packets, bytes)
	for d := range 2 {
		s.Packets[d] = max(s.Packets[d], packets[d])
		s.Bytes[d] = max(s.Bytes[d], bytes[d])
	}
	return true
}

// Remove takes session s out of the table, for the reason why.
func (t *Table) Remove(s *Session, why string) {
	if !s.gone {
		t.remove(s, why)
	}
}

// Sessions calls fn for each live session; fn must not change the table.
func (t *Table) Sessions(fn func(*Session)) {
	t.sessions.each(func(s *Session) {
		if !s.gone && s.expires > t.now {
			fn(s)
		}
	})
}

// All calls fn for every session in the table, also those whose time is
// up but which expiry has not removed yet; fn must not change the table.
func (t *Table) All(fn func(*Session)) { t.sessions.each(fn) }

// Get returns the live session with the given ID, or nil.
func (t *Table) Get(id uint64) *Session {
	var found *Session
	t.sessions.each(func(s *Session) {
		if s.ID == id && !s.gone {
			found = s
		}
	})
	return found
}

func (t *Table) timeout(s *Session) time.Duration {
	to := &t.cfg.Timeouts
	switch s.Key.Proto {
	case decode.ProtoTCP:
		switch s.State {
		case StateSynSent, StateSynRecv:
			return to.TCPSynWait
		case StateEstablished:
			return to.TCPIdle
		default:
			return to.TCPFinWait
		}
	case decode.ProtoUDP:
		return to.UDPIdle
	default:
		return to.ICMPIdle
	}
}

// leaveHalfOpen ends s's half-open state, if it is in it.
func (t *Table) leaveHalfOpen(s *Session) {
	if !s.halfOpen {
		return
	}
	s.halfOpen = false
	t.halfOpen--
	t.hosts.decHalfOpen(t.hostOfSession(s))
}

// hostOfSession returns the host session s counts under: its parent's
// client's for a connection an expectation predicted, else its
// initiator's.
func (t *Table) hostOfSession(s *Session) host {
	if len(t.parents) > 0 {
		if p := t.parents[s]; p != nil {
			return hostOf(p.Key.Src)
		}
	}
	return hostOf(s.Key.Src)
}

func (t *Table) remove(s *Session, why string) {
	s.gone = true
	if s.timerPos >= 0 {
		heap.Remove(&t.timers, int(s.timerPos)) // nothing else holds s
	}
	if s.halfOpen || !s.PickedUp {
		h := t.hostOfSession(s)
		if s.halfOpen {
			s.halfOpen = false
			t.halfOpen--
			t.hosts.decHalfOpen(h)
		}
		if !s.PickedUp {
			t.hosts.addSession(h, -1)
		}
	}
	t.sessions.remove(s)
	t.dropExpectations(s.ID)
	if t.cfg.OnClose != nil {
		t.cfg.OnClose(s, why)
	}
	delete(t.parents, s)
}

// Expire removes sessions and expectations whose time has come, doing at
// most budget units of work (so no call stops the world); it returns
// whether work remains. The engine calls it a little on every packet and
// more from a periodic tick.
func (t *Table) Expire(now time.Time, budget int) bool {
	return t.expireSome(t.advance(now), budget)
}

func (t *Table) expireSome(n int64, budget int) bool {
	for ; budget > 0 && len(t.timers) > 0 && t.timers[0].at <= n; budget-- {
		e := heap.Pop(&t.timers).(timer)
		switch {
		case e.s != nil:
			s := e.s
			if s.expires <= n {
				t.remove(s, "idle timeout")
				continue
			}
			t.arm(s)
		case e.e != nil:
			x := e.e
			if x.gone {
				continue
			}
			t.dropExpectation(x)
			if t.cfg.OnExpectExpired != nil {
				t.cfg.OnExpectExpired(x)
			}
		}
	}
	return len(t.timers) > 0 && t.timers[0].at <= n
}

// arm makes sure a timer will look at s by its deadline. A session has at
// most one timer, which a removed session takes with it: when its
// deadline moves later (the common case, traffic), the timer stays and
// re-arms itself when it fires; when the deadline moves earlier (a FIN
// after a long idle timeout, a handshake completing with an idle timeout
// shorter than the handshake's), the timer is moved earlier.
func (t *Table) arm(s *Session) {
	switch {
	case s.timerPos < 0:
		t.schedule(s.expires, s, nil)
	case timerSecond(t.timers[s.timerPos].at) <= timerSecond(s.expires):
		// Fires in time; it re-arms itself for the later deadline.
	default:
		t.timers[s.timerPos].at = s.expires
		heap.Fix(&t.timers, int(s.timerPos))
	}
}

// timerSecond is the Unix second (rounded up) of a deadline: sessions are
// expired at a second's precision, so a deadline that moves within its
// second moves no timer.
func timerSecond(at int64) uint32 {
	return uint32((at + 999_999_999) / 1_000_000_000)
}

func (t *Table) schedule(at int64, s *Session, e *Expectation) {
	heap.Push(&t.timers, timer{at: at, s: s, e: e})
}

// timer is one deadline: a session's (checked lazily against its current
// deadline when it fires) or an expectation's.
type timer struct {
	at int64
	s  *Session
	e  *Expectation
}

// timerHeap is a min-heap of timers. A timer's position is kept in its
// session (timerPos) or expectation (heapIndex), so a removed session or
// expectation takes its timer with it: closed sessions and replaced
// requests must not pile up dead timers (nor keep their memory) until
// their old deadlines.
type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h.placed(i)
	h.placed(j)
}

func (h timerHeap) placed(i int) {
	if s := h[i].s; s != nil {
		s.timerPos = int32(i)
	}
	if e := h[i].e; e != nil {
		e.heapIndex = i
	}
}

func (h *timerHeap) Push(x any) {
	*h = append(*h, x.(timer))
	h.placed(len(*h) - 1)
}

func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	if x.s != nil {
		x.s.timerPos = -1
	}
	if x.e != nil {
		x.e.heapIndex = -1
	}
	return x
}
