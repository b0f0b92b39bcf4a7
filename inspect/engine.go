package inspect

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect/ftp"
	"github.com/inspectd/inspectd/inspect/tftp"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/rules"
)

// Options configure an Engine.
type Options struct {
	// Worker and Workers number this engine among the live daemon's
	// workers (0-based), so that session IDs are unique across workers.
	Worker, Workers int
	// PickUp lets TCP sessions whose handshake was not seen be picked up
	// from any segment that a rule permits (replay of captures that start
	// mid-session). Off by default: strict.
	PickUp bool
	// GapRecovery lets a TCP direction resynchronise after that many
	// segments in a row beyond the window (captures miss packets). Zero
	// keeps strict tracking.
	GapRecovery int
	// FastPath says the packet source has a kernel fast path: verdicts may
	// then say Offload, and offloaded sessions are tracked liberally (the
	// kernel carries packets the engine never sees). Replay has none, so
	// every session there stays strictly tracked.
	FastPath bool
	// Known, when set, reports whether the kernel's conntrack held the
	// TCP connection with this original-direction key as established
	// when the daemon started. A segment of such a connection is picked
	// up (if the rules permit its original direction) instead of being
	// dropped for want of a session: a restart then cuts no transfer.
	Known func(conntrack.Key) bool
	// HashSeed seeds the table's per-host session counts
	// (conntrack.Config.HashSeed): the live daemon picks a random one;
	// the zero value, replay's, makes runs repeatable.
	HashSeed uint64
}

// Reasons for verdicts. Inspectors and limits add their own.
const (
	ReasonRule        = "rule"                // a permit rule opened a session
	ReasonDenyRule    = "deny rule"           // a deny rule matched
	ReasonDefault     = "default"             // the block's default permitted
	ReasonDenyDefault = "default deny"        // no rule matched; the block denies
	ReasonSession     = "session"             // the packet belongs to a tracked session
	ReasonRelated     = "related"             // the packet opened an expected connection
	ReasonICMPRelated = "related: icmp error" // an ICMP error quoting a tracked flow
	// ReasonICMPOffloaded: an ICMP error the kernel found related to a
	// connection the fast path carries, which no table holds any more.
	ReasonICMPOffloaded = "related: icmp error of an offloaded connection"
	ReasonNoSession     = "no session or expectation" // not a SYN, and nothing tracked
	ReasonICMPOrphan    = "icmp error quotes no tracked flow"
	ReasonNoRules       = "no rules for the interface the packet entered on"
	ReasonFragment      = "fragment: non-first fragment (not reassembled)"
	ReasonAdopted       = "offloaded before a restart"   // a marked flow the table had lost
	ReasonResumed       = "established before a restart" // a kernel-tracked flow the rules permit
)

// Engine decides the fate of each packet. It is safe for concurrent use
// (a mutex guards it), but the live daemon gives each queue worker its
// own engine so that the lock is never contended on the packet path.
type Engine struct {
	mu    sync.Mutex
	opt   Options
	table *conntrack.Table
	dec   *decode.Decoder
	pkt   decode.Packet
	cfg   *config // the rules in force, compiled for the engine

	subs     []subscriber
	siblings []*Engine
	stats    Stats
}

// config is a ruleset prepared for the packet path: locations formatted
// once, interfaces found by device or logical name.
type config struct {
	rs      *rules.Ruleset
	ifaces  map[string]*ifaceConfig
	ruleLoc []string
	ftp     ftp.Config
	tftp    tftp.Config
}

type ifaceConfig struct {
	iface  *rules.Interface
	block  *rules.Block
	defLoc string
}

func compile(rs *rules.Ruleset) *config {
	c := &config{
		rs:      rs,
		ifaces:  make(map[string]*ifaceConfig),
		ruleLoc: make([]string, len(rs.Rules)),
		ftp: ftp.Config{
			ExpectTimeout:       rs.Timeouts.FTPExpect,
			MinDataPort:         rs.FTP.MinDataPort,
			ActiveSourcePortAny: rs.FTP.ActiveSourcePortAny,
			MaxLine:             rs.Limits.FTPLine,
		},
		tftp: tftp.Config{ExpectTimeout: rs.Timeouts.TFTPExpect},
	}
	for i, r := range rs.Rules {
		c.ruleLoc[i] = r.Pos.String()
	}
	for _, ifc := range rs.Interfaces {
		ic := &ifaceConfig{iface: ifc, block: ifc.Block}
		if ifc.Block != nil {
			ic.defLoc = ifc.Block.Pos.String()
		}
		c.ifaces[ifc.Device] = ic
		if _, taken := c.ifaces[ifc.Name]; !taken {
			c.ifaces[ifc.Name] = ic
		}
	}
	return c
}

func tableTimeouts(rs *rules.Ruleset) conntrack.Timeouts {
	t := rs.Timeouts
	return conntrack.Timeouts{TCPIdle: t.TCPIdle, TCPSynWait: t.TCPSynWait, TCPFinWait: t.TCPFinWait, UDPIdle: t.UDPIdle, ICMPIdle: t.ICMPIdle}
}

func tableLimits(rs *rules.Ruleset) conntrack.Limits {
	l := rs.Limits
	return conntrack.Limits{Sessions: l.Sessions, SessionsPerHost: l.SessionsPerHost, HalfOpen: l.HalfOpen,
		HalfOpenPerHost: l.HalfOpenPerHost, Expectations: l.Expectations, ExpectationsPerHost: l.ExpectationsPerHost}
}

// New returns an engine enforcing rs.
func New(rs *rules.Ruleset, opt Options) *Engine {
	if opt.Workers < 1 {
		opt.Workers = 1
	}
	e := &Engine{opt: opt, dec: decode.NewDecoder(), cfg: compile(rs)}
	e.stats.Reasons = make(map[string]uint64)
	e.table = conntrack.New(conntrack.Config{
		Timeouts:        tableTimeouts(rs),
		Limits:          tableLimits(rs),
		IDBase:          uint64(opt.Worker) + 1,
		IDStride:        uint64(opt.Workers),
		GapRecovery:     opt.GapRecovery,
		HashSeed:        opt.HashSeed,
		OnClose:         e.sessionClosed,
		OnExpectExpired: e.expectExpired,
	})
	return e
}

// SetRules puts a new ruleset in force. Sessions and expectations are
// kept: return traffic and negotiated holes do not depend on rules.
func (e *Engine) SetRules(rs *rules.Ruleset) {
	c := compile(rs)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cfg
	e.cfg = c
	e.table.SetTimeouts(tableTimeouts(rs))
	e.table.SetLimits(tableLimits(rs))
	e.renumber(old, c)
}

// renumber makes the sessions' rule and interface indexes point into the
// new ruleset: a session keeps its interface (by device) and its rule when
// the new file has the same rule text in the block of that device;
// otherwise it shows no rule (and, its device gone, no interface), rather
// than a rule that did not permit it. Inspectors take the new file's
// settings. One walk of the table per reload, expired sessions not yet
// removed included (their close is still to be logged).
func (e *Engine) renumber(old, c *config) {
	type blockRule struct{ device, text string }
	ruleIndex := make(map[blockRule]int32, len(c.rs.Rules))
	for _, bl := range c.rs.Blocks {
		for _, r := range slices.Backward(bl.Rules) {
			ruleIndex[blockRule{bl.Interface.Device, r.Text}] = int32(r.Index) // the first of equal texts wins
		}
	}
	e.table.All(func(s *conntrack.Session) {
		device := ""
		if int(s.In) < len(old.rs.Interfaces) {
			device = old.rs.Interfaces[s.In].Device
		}
		if s.Rule >= 0 && int(s.Rule) < len(old.rs.Rules) {
			if i, ok := ruleIndex[blockRule{device, old.rs.Rules[s.Rule].Text}]; ok {
				s.Rule = i
			} else {
				s.Rule = -1
			}
		}
		if ic := c.ifaces[device]; ic != nil {
			s.In = uint16(ic.iface.Index)
		} else {
			s.In = noInterface
		}
		switch in := s.Inspector.(type) {
		case *ftp.Inspector:
			in.Reconfigure(c.ftp)
		case *tftp.Inspector:
			in.Reconfigure(c.tftp)
		}
	})
}

// noInterface is the interface index of a session whose device the rules
// no longer name.
const noInterface = math.MaxUint16

// Rules returns the ruleset in force.
func (e *Engine) Rules() *rules.Ruleset {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg.rs
}

// Subscribe registers fn to receive every event. fn runs on the packet
// path with the engine locked: it must be quick and must not call back
// into the engine. Subscribe before the first packet.
func (e *Engine) Subscribe(fn func(Event)) { e.SubscribeWhen(fn, nil) }

// SubscribeWhen is Subscribe for a subscriber that wants only some events
// at a given moment: want (called on the packet path, so it must be cheap)
// says whether it would use an event of kind k whose rule said log. The
// engine builds an event only when some subscriber wants it, so that, say,
// a flood of denials that a rate limit will discard costs no formatting.
// A nil want takes everything.
func (e *Engine) SubscribeWhen(fn func(Event), want func(k EventKind, log bool) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs = append(e.subs, subscriber{fn: fn, want: want})
}

// subscriber is one receiver of events.
type subscriber struct {
	fn   func(Event)
	want func(EventKind, bool) bool
}

// wanted reports whether any subscriber wants an event of kind k.
func (e *Engine) wanted(k EventKind, log bool) bool {
	for _, s := range e.subs {
		if s.want == nil || s.want(k, log) {
			return true
		}
	}
	return false
}

// SetSiblings tells the engine about the other workers' engines, so an
// ICMP error that lands on this worker can find the flow it quotes in
// another worker's table (the kernel balances queues on the address pair,
// and an ICMP error comes from a third address).
func (e *Engine) SetSiblings(all []*Engine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.siblings = e.siblings[:0]
	for _, s := range all {
		if s != e {
			e.siblings = append(e.siblings, s)
		}
	}
}

// Tick advances expiry when no packets arrive; the live daemon calls it
// about once a second with the wall clock.
func (e *Engine) Tick(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.table.Expire(now, 100000)
}

// expireBudget is how much expiry work each packet does.
const expireBudget = 8

// Process decides the fate of one raw IPv4 or IPv6 packet.
func (e *Engine) Process(data []byte, m Meta) Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Packets++
	if err := e.dec.IP(data, &e.pkt); err != nil {
		return e.drop(m, err.Error(), "", false)
	}
	return e.process(m)
}

// ProcessFrame is Process for a link-layer frame from a capture.
func (e *Engine) ProcessFrame(link layers.LinkType, data []byte, m Meta) Verdict {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Packets++
	if err := e.dec.Frame(link, data, &e.pkt); err != nil {
		return e.drop(m, err.Error(), "", false)
	}
	return e.process(m)
}

func (e *Engine) process(m Meta) Verdict {
	p := &e.pkt
	e.table.Expire(m.Time, expireBudget)
	if p.Fragment {
		return e.drop(m, ReasonFragment, "", false)
	}
	if p.ICMPError {
		return e.icmpError(m)
	}
	k := conntrack.KeyOf(p)
	s, dir := e.table.Lookup(k, m.Time)
	if s != nil && p.Proto == decode.ProtoTCP && p.Flags&(decode.TCPSyn|decode.TCPAck) == decode.TCPSyn &&
		s.State >= conntrack.StateClosing {
		// A new connection reusing the ports of one that has closed: both
		// FINs were seen (the last ACK may never reach us: the kernel
		// fast path carries it for an offloaded flow) or it was reset.
		e.table.Remove(s, "reused by a new connection")
		s = nil
	}
	if s != nil {
		return e.established(s, dir, m)
	}
	return e.newFlow(k, m)
}

// established handles a packet of a tracked session.
func (e *Engine) established(s *conntrack.Session, dir conntrack.Dir, m Meta) Verdict {
	p := &e.pkt
	why, unchanged := e.table.Track(s, dir, p, m.Time)
	if why != "" {
		return e.dropSession(m, why, why, s)
	}
	if s.Inspector != nil && !unchanged {
		if v, done := e.inspect(s, dir, m); done {
			return v
		}
	}
	e.stats.Accepted++
	e.stats.Established++
	v := Verdict{Accept: true, Reason: ReasonSession, Session: s.ID}
	e.offload(s, dir, &v)
	return v
}

// offloadable tells whether the kernel fast path may carry the session
// from this packet on. Never an inspected session. A TCP session is handed
// over at its SYN (or, if the engine sees it, its SYN-ACK): the kernel's
// own tracker then checks the rest of the handshake, which stays in the
// kernel, and the hooks drop what it finds invalid. The session stays
// half-open (counted against the half-open limits, expiring after
// tcp-synwait) until a later packet or the kernel's conntrack (Promote)
// shows that the handshake finished, so a spoofed SYN flood leaves nothing
// more behind than without it. After that, handshake and teardown
// segments still come to the engine, and are never marked here.
func (e *Engine) offloadable(s *conntrack.Session, dir conntrack.Dir) bool {
	if !e.opt.FastPath || s.Inspector != nil || s.NoOffload {
		return false
	}
	switch e.pkt.Proto {
	case decode.ProtoTCP:
		f := e.pkt.Flags & (decode.TCPSyn | decode.TCPAck | decode.TCPFin | decode.TCPRst)
		switch s.State {
		case conntrack.StateSynSent:
			return dir == conntrack.Original && f == decode.TCPSyn
		case conntrack.StateSynRecv:
			return dir == conntrack.Reply && f == decode.TCPSyn|decode.TCPAck
		}
		return s.State == conntrack.StateEstablished && f&(decode.TCPSyn|decode.TCPFin|decode.TCPRst) == 0
	case decode.ProtoUDP:
		return s.State == conntrack.StateEstablished
	}
	return false
}

// offload marks v and s when the fast path may carry s from this packet on.
func (e *Engine) offload(s *conntrack.Session, dir conntrack.Dir, v *Verdict) {
	if e.offloadable(s, dir) {
		s.Offloaded = true
		v.Offload = true
	}
}

// inspect runs the session's inspector. done is true when the inspector
// dropped the packet and v is the verdict.
func (e *Engine) inspect(s *conntrack.Session, dir conntrack.Dir, m Meta) (v Verdict, done bool) {
	r := s.Inspector.Inspect(&conntrack.Context{Session: s, Dir: dir, Now: m.Time}, &e.pkt)
	if r.NoOffload {
		s.NoOffload = true
	}
	if r.Drop {
		return e.dropSession(m, r.Reason, cmp.Or(r.Class, r.Reason), s), true
	}
	if r.Reason != "" {
		e.emitSession(Event{Kind: Note, Reason: r.Reason, In: m.In}, s, m.Time)
	}
	if r.Cancel {
		e.table.CancelExpectations(s.ID)
	}
	if r.HasExpect {
		x, err := e.table.Expect(s, r.Expect, m.Time)
		if err != nil {
			e.emitSession(Event{Kind: Note, Reason: err.Error(), In: m.In}, s, m.Time)
		} else if e.wanted(ExpectAdd, false) {
			ev := Event{Kind: ExpectAdd, Reason: x.What, Expect: expectInfo(x)}
			e.emitSession(ev, s, m.Time)
		}
	}
	return Verdict{}, false
}

// newFlow handles a packet that belongs to no session: an expected
// connection, or a new session if the rules permit it.
func (e *Engine) newFlow(k conntrack.Key, m Meta) Verdict {
	p := &e.pkt
	tcp := p.Proto == decode.ProtoTCP
	pureSYN := tcp && p.Flags&(decode.TCPSyn|decode.TCPAck|decode.TCPRst|decode.TCPFin) == decode.TCPSyn
	if !tcp || pureSYN {
		if x := e.table.MatchExpectation(k, m.Time); x != nil {
			return e.related(x, m)
		}
	}
	if m.Offloaded && !pureSYN {
		return e.adopt(m)
	}
	if tcp && !pureSYN && e.opt.Known != nil && p.Flags&decode.TCPSyn == 0 {
		if v, ok := e.resume(k, m); ok {
			return v
		}
	}
	ic := e.cfg.ifaces[m.In]
	if ic == nil || ic.block == nil {
		return e.drop(m, ReasonNoRules, "", true)
	}
	pickUp := false
	if tcp && !pureSYN {
		if !e.opt.PickUp || p.Flags&(decode.TCPSyn|decode.TCPRst) != 0 {
			return e.drop(m, ReasonNoSession, "", false)
		}
		pickUp = true
	}
	if k.Answer {
		// The reply to an ICMP query nobody sent through us.
		return e.drop(m, ReasonNoSession, "", false)
	}
	f := rules.Flow{Proto: p.Proto, Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, ICMPType: p.ICMPType}
	d := e.decide(ic, &f)
	loc, reason, log := d.loc, d.reason, d.log
	if !d.permit {
		return e.drop(m, reason, loc, log)
	}
	s, err := e.table.Create(p, m.Time, pickUp)
	if err != nil {
		return e.drop(m, err.Error(), loc, true)
	}
	e.admit(s, ic, d.rule)
	e.count(s)
	e.emitSession(Event{Kind: SessionOpen, Reason: reason, Rule: loc, In: m.In, Log: log}, s, m.Time)
	if s.Inspector != nil {
		if v, done := e.inspect(s, conntrack.Original, m); done {
			e.table.Remove(s, "first packet refused by "+s.Inspector.Name())
			return v
		}
	}
	e.stats.Accepted++
	e.stats.New++
	v := Verdict{Accept: true, Reason: reason, Rule: loc, Session: s.ID}
	e.offload(s, conntrack.Original, &v)
	return v
}

// count records the first packet of a new session.
func (e *Engine) count(s *conntrack.Session) {
	s.Packets[conntrack.Original]++
	s.Bytes[conntrack.Original] += uint64(e.pkt.Length)
}

// adopt takes back a flow that an earlier run of the daemon offloaded to
// the kernel: its connection mark says so (only our verdicts set it), and
// its teardown must reach the endpoints even though this run's table
// never saw it open. It is picked up and tracked liberally.
func (e *Engine) adopt(m Meta) Verdict {
	s, err := e.table.Create(&e.pkt, m.Time, true)
	if err != nil {
		return e.drop(m, err.Error(), "", true)
	}
	s.Offloaded = true
	if ic := e.cfg.ifaces[m.In]; ic != nil {
		s.In = uint16(ic.iface.Index)
	}
	e.count(s)
	e.emitSession(Event{Kind: SessionOpen, Reason: ReasonAdopted, In: m.In}, s, m.Time)
	e.stats.Accepted++
	e.stats.New++
	return Verdict{Accept: true, Reason: ReasonAdopted, Session: s.ID}
}

// resume picks up a connection that the kernel tracked as established
// when the daemon started (Options.Known), if the rules in force permit
// its original direction: the session comes back with its rule and
// inspector, tracked liberally from here on.
func (e *Engine) resume(k conntrack.Key, m Meta) (Verdict, bool) {
	orig, dir := k, conntrack.Original
	if !e.opt.Known(k) {
		if orig, dir = k.Reverse(), conntrack.Reply; !e.opt.Known(orig) {
			return Verdict{}, false
		}
	}
	ic := e.cfg.ifaces[m.In]
	if dir == conntrack.Reply {
		// The original direction entered where its source lives.
		ic = nil
		if ifc := e.cfg.rs.InterfaceFor(orig.Src); ifc != nil {
			ic = e.cfg.ifaces[ifc.Device]
		}
	}
	if ic == nil || ic.block == nil {
		return Verdict{}, false
	}
	f := rules.Flow{Proto: orig.Proto, Src: orig.Src, Dst: orig.Dst, SrcPort: orig.SrcPort, DstPort: orig.DstPort}
	d := e.decide(ic, &f)
	if !d.permit {
		return Verdict{}, false
	}
	s, err := e.table.PickUp(orig, dir, &e.pkt, m.Time)
	if err != nil {
		return e.drop(m, err.Error(), "", true), true
	}
	e.admit(s, ic, d.rule)
	loc := d.loc
	s.Packets[dir]++
	s.Bytes[dir] += uint64(e.pkt.Length)
	e.emitSession(Event{Kind: SessionOpen, Reason: ReasonResumed, Rule: loc, In: m.In}, s, m.Time)
	if s.Inspector != nil {
		if v, done := e.inspect(s, dir, m); done {
			return v, true
		}
	}
	e.stats.Accepted++
	e.stats.New++
	return Verdict{Accept: true, Reason: ReasonResumed, Rule: loc, Session: s.ID}, true
}

// decision is what the rules of an interface say about a new flow.
type decision struct {
	rule   *rules.Rule // the matching rule, or nil when the default decided
	permit bool
	log    bool
	loc    string // where the rule or default stands, "file:line"
	reason string // ReasonRule, ReasonDenyRule, ReasonDefault or ReasonDenyDefault
}

// decide runs the first-match rules of the block of interface ic over flow
// f, counting the hit of the rule that matched.
func (e *Engine) decide(ic *ifaceConfig, f *rules.Flow) decision {
	b := ic.block
	if r := b.Match(f); r != nil {
		r.Hit()
		d := decision{rule: r, permit: r.Action == rules.Permit, log: r.Log, loc: e.cfg.ruleLoc[r.Index], reason: ReasonRule}
		if !d.permit {
			d.reason = ReasonDenyRule
		}
		return d
	}
	d := decision{permit: b.Default == rules.Permit, log: b.DefaultLog, loc: ic.defLoc, reason: ReasonDefault}
	if !d.permit {
		d.reason = ReasonDenyDefault
	}
	return d
}

// admit records in a new session the interface it entered on and the rule
// that permitted it (nil: the default), with the rule's inspector.
func (e *Engine) admit(s *conntrack.Session, ic *ifaceConfig, r *rules.Rule) {
	s.In = uint16(ic.iface.Index)
	if r == nil {
		return
	}
	s.Rule = int32(r.Index)
	switch r.Inspect {
	case "ftp":
		s.Inspector, s.NoOffload = ftp.New(e.cfg.ftp), true
	case "tftp":
		s.Inspector = tftp.New(e.cfg.tftp)
	}
}

// related opens the child session an expectation predicted.
func (e *Engine) related(x *conntrack.Expectation, m Meta) Verdict {
	p := &e.pkt
	s, err := e.table.CreateRelated(p, m.Time, x)
	if err != nil {
		return e.drop(m, err.Error(), "", true)
	}
	if ic := e.cfg.ifaces[m.In]; ic != nil {
		s.In = uint16(ic.iface.Index)
	}
	e.count(s)
	if e.wanted(ExpectUse, false) {
		e.emitSession(Event{Kind: ExpectUse, Reason: x.What, In: m.In, Expect: expectInfo(x)}, s, m.Time)
	}
	e.emitSession(Event{Kind: SessionOpen, Reason: ReasonRelated, In: m.In}, s, m.Time)
	e.stats.Accepted++
	e.stats.New++
	v := Verdict{Accept: true, Reason: ReasonRelated, Session: s.ID}
	e.offload(s, conntrack.Original, &v)
	return v
}

// icmpError admits an ICMP error only when it quotes a tracked flow and
// travels back towards the quoted packet's sender.
func (e *Engine) icmpError(m Meta) Verdict {
	p := &e.pkt
	q := conntrack.QuotedKey(&p.Inner)
	if p.Dst != q.Src {
		return e.drop(m, ReasonICMPOrphan, "", false)
	}
	if s, _ := e.table.Peek(q); s != nil {
		e.stats.Accepted++
		return Verdict{Accept: true, Reason: ReasonICMPRelated, Session: s.ID}
	}
	if len(e.siblings) > 0 {
		// Look in the other workers' tables without holding our own lock,
		// so two workers doing this at once cannot deadlock.
		// Another caller may use the engine meanwhile: keep this
		// packet's decoding to put back.
		saved := e.pkt
		e.mu.Unlock()
		id := uint64(0)
		for _, sib := range e.siblings {
			if id = sib.peek(q); id != 0 {
				break
			}
		}
		e.mu.Lock()
		e.pkt = saved
		if id != 0 {
			e.stats.Accepted++
			return Verdict{Accept: true, Reason: ReasonICMPRelated, Session: id}
		}
	}
	if m.Offloaded {
		// No table holds the flow, but the kernel found the error
		// related to a connection an offload verdict marked: one the
		// fast path still carries after the engine let its session go
		// (a restart, an idle timeout shorter than the kernel's). A
		// packet-too-big must reach its sender, or path MTU discovery
		// black-holes the connection.
		e.stats.Accepted++
		return Verdict{Accept: true, Reason: ReasonICMPOffloaded}
	}
	// Quoting nothing tracked, an error is judged by the rules of the
	// interface it entered on, as a new flow's first packet is, but opens
	// no session: a rule that names an error type (permit icmpv6 type
	// packet-too-big) lets such errors through.
	if ic := e.cfg.ifaces[m.In]; ic != nil && ic.block != nil {
		f := rules.Flow{Proto: p.Proto, Src: p.Src, Dst: p.Dst, ICMPType: p.ICMPType}
		if d := e.decide(ic, &f); d.permit {
			e.stats.Accepted++
			return Verdict{Accept: true, Reason: d.reason, Rule: d.loc}
		}
	}
	return e.drop(m, ReasonICMPOrphan, "", false)
}

func (e *Engine) peek(k conntrack.Key) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s, _ := e.table.Peek(k); s != nil {
		return s.ID
	}
	return 0
}

// drop returns a drop verdict for a packet that belongs to no session.
func (e *Engine) drop(m Meta, reason, loc string, log bool) Verdict {
	e.stats.Dropped++
	e.stats.Reasons[reason]++
	if e.wanted(Deny, log) {
		e.emit(Event{Kind: Deny, Time: m.Time, Reason: reason, Rule: loc, In: m.In, Log: log, Flow: flowInfo(conntrack.KeyOf(&e.pkt))})
	}
	return Verdict{Reason: reason, Rule: loc}
}

// dropSession drops a packet of session s for reason, counted under class
// (conntrack.Result.Class).
func (e *Engine) dropSession(m Meta, reason, class string, s *conntrack.Session) Verdict {
	e.stats.Dropped++
	e.stats.Reasons[class]++
	if e.wanted(Deny, true) {
		ev := Event{Kind: Deny, Reason: reason, In: m.In, Log: true, Flow: flowInfo(conntrack.KeyOf(&e.pkt))}
		e.emitSession(ev, s, m.Time)
	}
	return Verdict{Reason: reason, Session: s.ID}
}

// emit hands ev to the subscribers that want it.
func (e *Engine) emit(ev Event) {
	for _, s := range e.subs {
		if s.want == nil || s.want(ev.Kind, ev.Log) {
			s.fn(ev)
		}
	}
}

// emitSession completes ev with a snapshot of session s, if anyone wants
// it, and emits it.
func (e *Engine) emitSession(ev Event, s *conntrack.Session, now time.Time) {
	if !e.wanted(ev.Kind, ev.Log) {
		return
	}
	ev.Time = now
	info := e.cfg.sessionInfo(s, e.table.ParentID(s))
	ev.Session = &info
	if ev.Flow.Proto == "" {
		ev.Flow = FlowInfo{Proto: info.Proto, Src: info.Src, Dst: info.Dst}
	}
	e.emit(ev)
}

func (e *Engine) sessionClosed(s *conntrack.Session, why string) {
	e.emitSession(Event{Kind: SessionClose, Reason: why}, s, time.Unix(0, s.LastSeen))
}

func (e *Engine) expectExpired(x *conntrack.Expectation) {
	if e.wanted(ExpectExpire, false) {
		e.emit(Event{Kind: ExpectExpire, Time: x.Expires, Reason: x.What, Expect: expectInfo(x),
			Flow: FlowInfo{Proto: conntrack.ProtoName(x.Proto)}})
	}
}

// sessionInfo describes session s, the child of session parent (0: none),
// with the names of configuration c.
func (c *config) sessionInfo(s *conntrack.Session, parent uint64) SessionInfo {
	fi := flowInfo(s.Key)
	info := SessionInfo{
		ID: s.ID, Proto: fi.Proto, Src: fi.Src, Dst: fi.Dst, State: s.State.String(),
		Parent: parent, Offloaded: s.Offloaded, PickedUp: s.PickedUp,
		Created: time.Unix(0, s.Created), LastSeen: time.Unix(0, s.LastSeen),
		Packets: s.Packets, Bytes: s.Bytes, Key: s.Key,
	}
	if s.Inspector != nil {
		info.ALG = s.Inspector.Name()
	}
	if s.Rule >= 0 && int(s.Rule) < len(c.ruleLoc) {
		info.Rule = c.ruleLoc[s.Rule]
	}
	if int(s.In) < len(c.rs.Interfaces) {
		info.In = c.rs.Interfaces[s.In].Device
	}
	return info
}
