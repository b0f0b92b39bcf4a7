package inspect

import (
	"sort"
	"time"

	"github.com/inspectd/inspectd/conntrack"
)

// Stats counts what the engine decided.
type Stats struct {
	Packets     uint64 `json:"packets"`
	Accepted    uint64 `json:"accepted"`
	Dropped     uint64 `json:"dropped"`
	New         uint64 `json:"new_sessions"`
	Established uint64 `json:"session_packets"`
	// Reasons counts dropped packets by reason.
	Reasons map[string]uint64 `json:"drop_reasons"`
	// Sessions, HalfOpen and Expectations are the table's current sizes;
	// Limits its limits.
	Sessions     int              `json:"sessions"`
	HalfOpen     int              `json:"half_open"`
	Expectations int              `json:"expectations"`
	Limits       conntrack.Limits `json:"limits"`
}

// Stats returns a copy of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stats
	st.Reasons = make(map[string]uint64, len(e.stats.Reasons))
	for k, v := range e.stats.Reasons {
		st.Reasons[k] = v
	}
	st.Sessions = e.table.Len()
	st.HalfOpen = e.table.HalfOpen()
	st.Expectations = e.table.ExpectationCount()
	st.Limits = e.table.Limits()
	return st
}

// Sessions returns a snapshot of the live sessions, by ID. The engine's
// lock is held only to copy the sessions; describing them (formatting
// addresses) happens after, so the packet path waits for a memory copy.
func (e *Engine) Sessions() []SessionInfo {
	e.mu.Lock()
	n := e.table.Len()
	e.mu.Unlock()
	raw := make([]conntrack.Session, 0, n+n/8+16) // allocated without the lock
	parents := make([]uint64, 0, cap(raw))
	e.mu.Lock()
	cfg := e.cfg
	e.table.Sessions(func(s *conntrack.Session) {
		raw = append(raw, *s)
		parents = append(parents, e.table.ParentID(s))
	})
	e.mu.Unlock()
	out := make([]SessionInfo, len(raw))
	for i := range raw {
		out[i] = cfg.sessionInfo(&raw[i], parents[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Kind names a class of sessions for counting: their inspector ("" for
// none) and state.
type Kind struct{ ALG, State string }

// SessionCounts counts the live sessions by inspector and state. It
// copies and formats nothing, so it holds the engine's lock for a short
// walk of the table only (the control API's stats and the metrics use it).
func (e *Engine) SessionCounts() map[Kind]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := make(map[Kind]int)
	e.table.Sessions(func(s *conntrack.Session) {
		k := Kind{State: s.State.String()}
		if s.Inspector != nil {
			k.ALG = s.Inspector.Name()
		}
		counts[k]++
	})
	return counts
}

// Expectations returns a snapshot of the pending expectations, by ID.
func (e *Engine) Expectations() []ExpectInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ExpectInfo
	e.table.Expectations(func(x *conntrack.Expectation) { out = append(out, *expectInfo(x)) })
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Clear removes the session with the given ID and its pending
// expectations, returning its key so the caller can also remove it from
// the kernel's conntrack. It reports false when there is no such session.
func (e *Engine) Clear(id uint64) ([]conntrack.Key, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.table.Get(id)
	if s == nil {
		return nil, false
	}
	keys := []conntrack.Key{s.Key}
	e.table.Remove(s, "cleared by the operator")
	return keys, true
}

// ClearAll removes every session and expectation, returning the keys
// removed.
func (e *Engine) ClearAll() []conntrack.Key {
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []*conntrack.Session
	e.table.Sessions(func(s *conntrack.Session) { all = append(all, s) })
	keys := make([]conntrack.Key, 0, len(all))
	for _, s := range all {
		keys = append(keys, s.Key)
		e.table.Remove(s, "cleared by the operator")
	}
	return keys
}

// Offloaded returns the sessions the kernel fast path carries that were
// created before t, for the daemon's keep-alive check against
// a read of the kernel's conntrack made at t: what a read made before a
// session began tells of an earlier connection on the same addresses and
// ports, not of it.
func (e *Engine) Offloaded(t time.Time) []OffloadedSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []OffloadedSession
	before := t.UnixNano()
	e.table.Sessions(func(s *conntrack.Session) {
		if s.Offloaded && s.Created < before {
			out = append(out, OffloadedSession{Key: s.Key, Created: time.Unix(0, s.Created)})
		}
	})
	return out
}

// OffloadedSession is a session the kernel fast path carries: its key
// and when it began.
type OffloadedSession struct {
	Key     conntrack.Key
	Created time.Time
}

// Promote tells the engine that the kernel's conntrack holds the
// offloaded TCP session with key k as established: a session handed to
// the fast path at its SYN-ACK leaves the half-open state on this word.
func (e *Engine) Promote(k conntrack.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.Promote(k)
}

// Account raises an offloaded session's traffic counters to the kernel's
// (packets and bytes in k's direction, original then reply). It reports
// whether the session exists.
func (e *Engine) Account(k conntrack.Key, packets, bytes [2]uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.Account(k, packets, bytes)
}

// Touch keeps an offloaded session alive because the kernel's conntrack
// still sees its traffic. It reports whether the session exists.
func (e *Engine) Touch(k conntrack.Key, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.table.Touch(k, now)
}
