package api

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"github.com/inspectd/inspectd/rules"
)

// ErrNotFound is returned by Backend.Clear for an unknown session.
var ErrNotFound = errors.New("no such session")

// Backend is what the control server serves. The daemon gets one from
// NewEngineBackend; tests use fakes. Methods are called concurrently.
type Backend interface {
	// Sessions returns every live session, sorted by ID.
	Sessions() []inspect.SessionInfo
	// Expectations returns every pending expectation, sorted by ID.
	Expectations() []inspect.ExpectInfo
	// Stats returns the counters.
	Stats() Stats
	// Rules returns the rules in force with their hit counters.
	Rules() Rules
	// Clear removes a session (ErrNotFound when there is none), and
	// ClearAll every session, from inspectd and from the kernel.
	Clear(id uint64) (ClearResult, error)
	ClearAll() (ClearResult, error)
	// Reload re-reads the rule file; on error the old rules stay.
	Reload() (ReloadResult, error)
	// Watch registers a watcher of the engines' events.
	Watch() *Watcher
}

// EngineConfig is what EngineBackend needs besides the engines.
type EngineConfig struct {
	// Reload re-reads the rule file and puts it in force in every engine,
	// or returns the errors and keeps the old rules. Required.
	Reload func() error
	// Queues returns the queue counters; nil when there are no queues.
	Queues func() []QueueStats
	// Latency returns the engine latency histogram (see
	// metrics.Latency.Snapshot); nil when not measured.
	Latency func() Histogram
	// DeleteKernel removes flows from the kernel's conntrack; nil means
	// kconntrack.Delete.
	DeleteKernel func([]conntrack.Key) (int, error)
	// WatchBuffer is each watcher's buffer (DefaultWatchBuffer when 0).
	WatchBuffer int
	// Now is the clock for RulesLoaded; nil means time.Now.
	Now func() time.Time
}

// EngineBackend is the Backend of the live daemon, over the engines of its
// queue workers.
type EngineBackend struct {
	engines []*inspect.Engine
	cfg     EngineConfig
	hub     *Hub

	mu sync.Mutex // serialises reloads
	// loaded is when the rules in force were loaded; read without mu, so
	// that stats and rules answer while a reload waits on a slow file.
	loaded atomic.Pointer[time.Time]
}

// NewEngineBackend returns a Backend over engines. It subscribes to every
// engine, so call it before the first packet (engines accept subscribers
// only then).
func NewEngineBackend(engines []*inspect.Engine, cfg EngineConfig) *EngineBackend {
	if cfg.DeleteKernel == nil {
		cfg.DeleteKernel = kconntrack.Delete
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &EngineBackend{engines: engines, cfg: cfg, hub: NewHub(cfg.WatchBuffer)}
	now := cfg.Now()
	b.loaded.Store(&now)
	for _, e := range engines {
		e.SubscribeWhen(b.hub.Publish, b.hub.wants)
	}
	return b
}

// Sessions merges the engines' sessions, sorted by ID.
func (b *EngineBackend) Sessions() []inspect.SessionInfo {
	var out []inspect.SessionInfo
	for _, e := range b.engines {
		out = append(out, e.Sessions()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Expectations merges the engines' expectations, sorted by ID.
func (b *EngineBackend) Expectations() []inspect.ExpectInfo {
	var out []inspect.ExpectInfo
	for _, e := range b.engines {
		out = append(out, e.Expectations()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Stats merges the engines' counters and adds the queues' and latency.
func (b *EngineBackend) Stats() Stats {
	st := Stats{Workers: len(b.engines), DropReasons: map[string]uint64{}, WatchLost: b.hub.Lost()}
	var lim conntrack.Limits
	use := [3]int{}
	for _, e := range b.engines {
		es := e.Stats()
		st.Packets += es.Packets
		st.Accepted += es.Accepted
		st.Dropped += es.Dropped
		st.NewSessions += es.New
		st.SessionPackets += es.Established
		for r, n := range es.Reasons {
			st.DropReasons[r] += n
		}
		st.Sessions += es.Sessions
		st.HalfOpen += es.HalfOpen
		st.Expectations += es.Expectations
		lim = es.Limits
		use[0] = max(use[0], es.Sessions)
		use[1] = max(use[1], es.HalfOpen)
		use[2] = max(use[2], es.Expectations)
	}
	st.Limits = []Usage{
		{Name: "sessions", Used: use[0], Limit: lim.Sessions},
		{Name: "half-open", Used: use[1], Limit: lim.HalfOpen},
		{Name: "expectations", Used: use[2], Limit: lim.Expectations},
	}
	counts := map[inspect.Kind]int{}
	for _, e := range b.engines {
		for k, n := range e.SessionCounts() {
			counts[k] += n
		}
	}
	st.SessionCounts = sessionCounts(counts)
	st.ExpectCounts = CountExpectations(b.Expectations())
	if b.cfg.Queues != nil {
		st.Queues = b.cfg.Queues()
	}
	if b.cfg.Latency != nil {
		st.Latency = b.cfg.Latency()
	}
	st.RulesLoaded = *b.loaded.Load()
	return st
}

// sessionCounts turns counts by kind into a sorted list.
func sessionCounts(m map[inspect.Kind]int) []SessionCount {
	out := make([]SessionCount, 0, len(m))
	for key, n := range m {
		out = append(out, SessionCount{ALG: key.ALG, State: key.State, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ALG != out[j].ALG {
			return out[i].ALG < out[j].ALG
		}
		return out[i].State < out[j].State
	})
	return out
}

// CountExpectations counts expectations by inspector, sorted.
func CountExpectations(xs []inspect.ExpectInfo) []ExpectCount {
	m := map[string]int{}
	for i := range xs {
		m[xs[i].ALG]++
	}
	out := make([]ExpectCount, 0, len(m))
	for alg, n := range m {
		out = append(out, ExpectCount{ALG: alg, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ALG < out[j].ALG })
	return out
}

// Rules describes the rules in force (the engines share one ruleset).
func (b *EngineBackend) Rules() Rules {
	loaded := *b.loaded.Load()
	if len(b.engines) == 0 {
		return Rules{Loaded: loaded}
	}
	r := RulesOf(b.engines[0].Rules())
	r.Loaded = loaded
	return r
}

// RulesOf describes a ruleset and its hit counters.
func RulesOf(rs *rules.Ruleset) Rules {
	out := Rules{File: rs.File, Rules: []RuleInfo{}, Defaults: []DefaultInfo{}}
	for _, bl := range rs.Blocks {
		for _, r := range bl.Rules {
			out.Rules = append(out.Rules, RuleInfo{Index: r.Index, Pos: r.Pos.String(), Interface: bl.Interface.Name,
				Action: r.Action.String(), Inspect: r.Inspect, Log: r.Log, Text: r.Text, Hits: r.Hits.Load()})
		}
		out.Defaults = append(out.Defaults, DefaultInfo{Pos: bl.Pos.String(), Interface: bl.Interface.Name,
			Device: bl.Interface.Device, Action: bl.Default.String(), Log: bl.DefaultLog})
	}
	sort.Slice(out.Rules, func(i, j int) bool { return out.Rules[i].Index < out.Rules[j].Index })
	return out
}

// Clear removes session id from the engine that has it, then its flow
// from the kernel.
func (b *EngineBackend) Clear(id uint64) (ClearResult, error) {
	for _, e := range b.engines {
		if keys, ok := e.Clear(id); ok {
			return b.kernel(ClearResult{Sessions: 1}, keys), nil
		}
	}
	return ClearResult{}, ErrNotFound
}

// ClearAll removes every session from every engine and from the kernel.
func (b *EngineBackend) ClearAll() (ClearResult, error) {
	var keys []conntrack.Key
	for _, e := range b.engines {
		keys = append(keys, e.ClearAll()...)
	}
	return b.kernel(ClearResult{Sessions: len(keys)}, keys), nil
}

func (b *EngineBackend) kernel(r ClearResult, keys []conntrack.Key) ClearResult {
	n, err := b.cfg.DeleteKernel(keys)
	r.Kernel = n
	if err != nil {
		r.KernelError = err.Error()
	}
	return r
}

// Reload calls the daemon's reload and records the time on success. The
// daemon's SIGHUP handler should call it too, so both paths agree.
func (b *EngineBackend) Reload() (ReloadResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cfg.Reload == nil {
		return ReloadResult{}, errors.New("reload is not available")
	}
	if err := b.cfg.Reload(); err != nil {
		return ReloadResult{}, err
	}
	now := b.cfg.Now()
	b.loaded.Store(&now)
	var sum string
	if len(b.engines) > 0 {
		sum = b.engines[0].Rules().Summary()
	}
	return ReloadResult{Summary: sum}, nil
}

// Watch registers a watcher of every engine's events.
func (b *EngineBackend) Watch() *Watcher { return b.hub.Watch() }
