// Package api is inspectd's control API: HTTP and JSON on a unix socket
// (DefaultSocket, root-only unless a group is configured), with versioned
// paths under /v1/ and an Inspectd-Version header on every request and
// response. The daemon implements Backend (EngineBackend does it over the
// workers' engines) and serves it with NewServer; the CLI and the tests
// talk to it with package internal/api/client.
//
// Endpoints (errors are 4xx or 5xx with a JSON body {"error": "..."}):
//
//	GET  /v1/version       VersionInfo
//	GET  /v1/sessions      []inspect.SessionInfo, filtered by the query (SessionFilter)
//	GET  /v1/expectations  []inspect.ExpectInfo
//	GET  /v1/stats         Stats
//	GET  /v1/rules         Rules
//	GET  /v1/watch         a stream of Event, one JSON object per line (?kind=deny,expect-add)
//	POST /v1/clear         ClearRequest → ClearResult
//	POST /v1/reload        ReloadResult
package api

import (
	"math"
	"time"

	"github.com/inspectd/inspectd/inspect"
)

// DefaultSocket is where the daemon listens and the CLI connects unless
// told otherwise.
const DefaultSocket = "/run/inspectd/inspectd.sock"

// VersionHeader carries the sender's inspectd version on every request and
// response.
const VersionHeader = "Inspectd-Version"

// APIVersion is the path prefix of this version of the API.
const APIVersion = "v1"

// VersionInfo is the answer of /v1/version.
type VersionInfo struct {
	Version string    `json:"version"` // the daemon's inspectd version
	API     string    `json:"api"`     // "v1"
	Started time.Time `json:"started"` // when the control server started
}

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// Stats is the answer of /v1/stats: the engines' counters merged, table
// sizes against their limits, queue counters and engine latency.
type Stats struct {
	// Workers is the number of engines (one per queue).
	Workers int `json:"workers"`
	// Packets counts the packets the engines decided; Accepted and Dropped
	// split them by verdict.
	Packets  uint64 `json:"packets"`
	Accepted uint64 `json:"accepted"`
	Dropped  uint64 `json:"dropped"`
	// NewSessions counts accepted packets that opened a session (by a rule
	// or an expectation); SessionPackets accepted packets of tracked
	// sessions.
	NewSessions    uint64 `json:"new_sessions"`
	SessionPackets uint64 `json:"session_packets"`
	// DropReasons counts dropped packets by reason.
	DropReasons map[string]uint64 `json:"drop_reasons"`
	// Sessions, HalfOpen and Expectations are the current table sizes,
	// summed over the workers.
	Sessions     int `json:"sessions"`
	HalfOpen     int `json:"half_open"`
	Expectations int `json:"expectations"`
	// SessionCounts breaks Sessions down by inspector and state;
	// ExpectCounts breaks Expectations down by inspector.
	SessionCounts []SessionCount `json:"session_counts"`
	ExpectCounts  []ExpectCount  `json:"expect_counts"`
	// Limits says how close each table is to its limit.
	Limits []Usage `json:"limits"`
	// Queues holds the netfilter queue counters, one entry per queue.
	Queues []QueueStats `json:"queues"`
	// Latency is the histogram of engine time per packet.
	Latency Histogram `json:"latency"`
	// WatchLost counts events dropped because a watcher read too slowly.
	WatchLost uint64 `json:"watch_lost"`
	// RulesLoaded is when the rules in force were loaded.
	RulesLoaded time.Time `json:"rules_loaded"`
}

// SessionCount is the number of sessions with one inspector and state.
type SessionCount struct {
	ALG   string `json:"alg"` // "" when not inspected
	State string `json:"state"`
	Count int    `json:"count"`
}

// ExpectCount is the number of pending expectations of one inspector.
type ExpectCount struct {
	ALG   string `json:"alg"`
	Count int    `json:"count"`
}

// Usage is how full one of the engines' tables is. Limits apply per
// worker, so Used is the fullest worker's count.
type Usage struct {
	Name  string `json:"name"`  // "sessions", "half-open", "expectations"
	Used  int    `json:"used"`  // the fullest worker's count
	Limit int    `json:"limit"` // the per-worker limit
}

// Percent returns Used as a percentage of Limit (0 when there is no limit).
func (u Usage) Percent() float64 {
	if u.Limit <= 0 {
		return 0
	}
	return 100 * float64(u.Used) / float64(u.Limit)
}

// QueueStats are one netfilter queue's counters.
type QueueStats struct {
	Queue     uint16 `json:"queue"`
	Packets   uint64 `json:"packets"`   // read by the worker
	Accepted  uint64 `json:"accepted"`  // accepted, offloaded ones included
	Dropped   uint64 `json:"dropped"`   // dropped by verdict
	Offloaded uint64 `json:"offloaded"` // accepted with the offload mark
	// VerdictErrors counts verdicts the kernel refused.
	VerdictErrors uint64 `json:"verdict_errors"`
	// Overflows counts receive buffer overruns seen by the reader.
	Overflows uint64 `json:"overflows"`
	// QueueFull and SocketFull are the kernel's drop counters: packets
	// that found the queue full, or the socket's buffer full.
	QueueFull  uint64 `json:"queue_full"`
	SocketFull uint64 `json:"socket_full"`
}

// Histogram is a fixed-bucket latency histogram.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending; a last,
	// implicit bucket holds everything above.
	Bounds []float64 `json:"bounds"`
	// Counts has len(Bounds)+1 per-bucket (not cumulative) counts.
	Counts []uint64 `json:"counts"`
	// Count and Sum (seconds) are over all observations.
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
}

// Quantile estimates the q-quantile (0 < q <= 1) as the upper bound of the
// bucket that holds it; +Inf when it falls above the last bound, 0 when
// the histogram is empty.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Counts) != len(h.Bounds)+1 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			if i == len(h.Bounds) {
				return math.Inf(1)
			}
			return h.Bounds[i]
		}
	}
	return math.Inf(1)
}

// Mean returns the average observation in seconds, 0 when empty.
func (h Histogram) Mean() float64 {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / float64(h.Count)
}

// Rules is the answer of /v1/rules: the rules in force with their hit
// counters.
type Rules struct {
	File   string     `json:"file"`
	Loaded time.Time  `json:"loaded"`
	Rules  []RuleInfo `json:"rules"`
	// Defaults are the blocks' defaults, one per interface with a block.
	Defaults []DefaultInfo `json:"defaults"`
}

// RuleInfo is one rule and its hit counter.
type RuleInfo struct {
	Index     int    `json:"index"`
	Pos       string `json:"pos"`       // "file:line"
	Interface string `json:"interface"` // logical name of the block's interface
	Action    string `json:"action"`    // "permit" or "deny"
	Inspect   string `json:"inspect,omitempty"`
	Log       bool   `json:"log,omitempty"`
	Text      string `json:"text"`
	Hits      uint64 `json:"hits"` // flows the rule decided since the rules were loaded
}

// DefaultInfo is a block's default.
type DefaultInfo struct {
	Pos       string `json:"pos"`
	Interface string `json:"interface"`
	Device    string `json:"device"`
	Action    string `json:"action"`
	Log       bool   `json:"log,omitempty"`
}

// ClearRequest is the body of POST /v1/clear: one session by ID, or all.
type ClearRequest struct {
	ID  uint64 `json:"id,omitempty"`
	All bool   `json:"all,omitempty"`
}

// ClearResult says what a clear removed.
type ClearResult struct {
	// Sessions is the number of sessions removed from inspectd's tables.
	Sessions int `json:"sessions"`
	// Kernel is the number of flows removed from the kernel's conntrack.
	Kernel int `json:"kernel"`
	// KernelError, when set, says why removing the flows from the kernel's
	// conntrack failed (inspectd's tables were cleared all the same).
	KernelError string `json:"kernel_error,omitempty"`
}

// ReloadResult is the answer of a successful POST /v1/reload.
type ReloadResult struct {
	// Summary describes the rules now in force.
	Summary string `json:"summary"`
}

// Event is one line of the /v1/watch stream: an engine event, or a notice
// (Kind "lost") that the watcher read too slowly and Lost events were
// dropped.
type Event struct {
	Kind    string               `json:"kind"`
	Time    time.Time            `json:"time"`
	Reason  string               `json:"reason,omitempty"`
	Rule    string               `json:"rule,omitempty"`
	In      string               `json:"in,omitempty"`
	Log     bool                 `json:"log,omitempty"`
	Flow    inspect.FlowInfo     `json:"flow"`
	Session *inspect.SessionInfo `json:"session,omitempty"`
	Expect  *inspect.ExpectInfo  `json:"expect,omitempty"`
	Lost    uint64               `json:"lost,omitempty"`
}

// KindLost is the Kind of the notice that events were dropped.
const KindLost = "lost"

// EventOf converts an engine event for the wire.
func EventOf(ev inspect.Event) Event {
	return Event{Kind: ev.Kind.String(), Time: ev.Time, Reason: ev.Reason, Rule: ev.Rule, In: ev.In,
		Log: ev.Log, Flow: ev.Flow, Session: ev.Session, Expect: ev.Expect}
}
