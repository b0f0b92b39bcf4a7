// Package metrics serves inspectd's Prometheus metrics and measures the
// engine's latency per packet. The collector is pull-based: each scrape
// reads snapshots from the control API's Backend, so metrics cost nothing
// on the packet path; the only packet-path part is Recorder.Record, a few
// atomic adds on counters owned by one worker.
package metrics

import (
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/internal/api"
)

// Bounds are the latency buckets' upper bounds.
var Bounds = [...]time.Duration{
	500 * time.Nanosecond, time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond,
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	200 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 50 * time.Millisecond,
}

// Recorder counts one worker's observations. Its methods do not allocate
// and are safe for concurrent use, though one worker per Recorder keeps
// its cache lines unshared.
type Recorder struct {
	counts [len(Bounds) + 1]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	_      [64]byte      // keep neighbours' counters off our cache line
}

// Record counts one observation of d.
func (r *Recorder) Record(d time.Duration) {
	i := 0
	for i < len(Bounds) && d > Bounds[i] {
		i++
	}
	r.counts[i].Add(1)
	if d > 0 {
		r.sum.Add(uint64(d))
	}
}

// Since records the time elapsed since t0.
func (r *Recorder) Since(t0 time.Time) { r.Record(time.Since(t0)) }

// Latency is the engine latency histogram of all workers.
type Latency struct {
	workers []Recorder
}

// NewLatency returns a histogram with a Recorder for each of n workers
// (at least one).
func NewLatency(n int) *Latency {
	return &Latency{workers: make([]Recorder, max(n, 1))}
}

// Worker returns worker i's Recorder.
func (l *Latency) Worker(i int) *Recorder { return &l.workers[i] }

// Snapshot sums the workers' counters.
func (l *Latency) Snapshot() api.Histogram {
	h := api.Histogram{Bounds: make([]float64, len(Bounds)), Counts: make([]uint64, len(Bounds)+1)}
	for i, b := range Bounds {
		h.Bounds[i] = b.Seconds()
	}
	var sum uint64
	for w := range l.workers {
		r := &l.workers[w]
		for i := range r.counts {
			n := r.counts[i].Load()
			h.Counts[i] += n
			h.Count += n
		}
		sum += r.sum.Load()
	}
	h.Sum = time.Duration(sum).Seconds()
	return h
}
