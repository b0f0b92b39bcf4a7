package metrics

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/conntest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestLatency(t *testing.T) {
	l := NewLatency(2)
	l.Worker(0).Record(300 * time.Nanosecond)
	l.Worker(0).Record(time.Microsecond) // on a bound: that bucket
	l.Worker(1).Record(3 * time.Microsecond)
	l.Worker(1).Record(time.Second)
	h := l.Snapshot()
	if h.Count != 4 || len(h.Counts) != len(Bounds)+1 || len(h.Bounds) != len(Bounds) {
		t.Fatalf("snapshot %+v", h)
	}
	if h.Counts[0] != 1 || h.Counts[1] != 1 || h.Counts[3] != 1 || h.Counts[len(Bounds)] != 1 {
		t.Errorf("counts %v", h.Counts)
	}
	// Since records the time since t0, whatever bucket it falls in on a
	// busy machine.
	since := NewLatency(1)
	since.Worker(0).Since(time.Now())
	if n := since.Snapshot().Count; n != 1 {
		t.Errorf("Since recorded %d times", n)
	}
	if h.Sum < 1 || h.Sum > 1.001 {
		t.Errorf("sum %v", h.Sum)
	}
	if h.Quantile(1) < 1e300 || h.Bounds[0] != 500e-9 {
		t.Errorf("quantile or bounds: %v %v", h.Quantile(1), h.Bounds[0])
	}
	r := l.Worker(0)
	if a := testing.AllocsPerRun(1000, func() { r.Record(42 * time.Microsecond) }); a != 0 {
		t.Errorf("Record allocates %v times", a)
	}
	if NewLatency(0).Snapshot().Count != 0 {
		t.Error("empty latency")
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewLatency(1).Worker(0)
	for i := 0; b.Loop(); i++ {
		r.Record(time.Duration(i&0xffff) * time.Nanosecond)
	}
}

type fake struct{ api.Backend }

func (fake) Stats() api.Stats {
	return api.Stats{Accepted: 10, NewSessions: 2, SessionPackets: 7, DropReasons: map[string]uint64{"default deny": 3},
		SessionCounts: []api.SessionCount{{ALG: "", State: "established", Count: 4}, {ALG: "ftp", State: "established", Count: 1}},
		ExpectCounts:  []api.ExpectCount{{ALG: "ftp", Count: 1}},
		Limits:        []api.Usage{{Name: "sessions", Used: 5, Limit: 100}},
		Queues:        []api.QueueStats{{Queue: 3, Packets: 13, Offloaded: 4, QueueFull: 2}},
		Latency:       api.Histogram{Bounds: []float64{1e-6, 1e-5}, Counts: []uint64{5, 4, 1}, Count: 10, Sum: 2e-5},
		WatchLost:     6, RulesLoaded: time.Unix(1700000000, 0)}
}

func (fake) Rules() api.Rules {
	return api.Rules{Rules: []api.RuleInfo{{Pos: "lab.rules:15", Interface: "wan", Action: "permit", Hits: 9}}}
}

func (fake) Sessions() []inspect.SessionInfo { return nil }

func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0", fake{})
	if err != nil {
		t.Fatal(err)
	}
	conntest.Serve(t, s)
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for _, want := range []string{
		`inspectd_verdicts_total{reason="new session",verdict="accept"} 2`,
		`inspectd_verdicts_total{reason="session",verdict="accept"} 7`,
		`inspectd_verdicts_total{reason="other",verdict="accept"} 1`,
		`inspectd_verdicts_total{reason="default deny",verdict="drop"} 3`,
		`inspectd_sessions{alg="none",state="established"} 4`,
		`inspectd_sessions{alg="ftp",state="established"} 1`,
		`inspectd_expectations{alg="ftp"} 1`,
		`inspectd_table_used{table="sessions"} 5`,
		`inspectd_table_limit{table="sessions"} 100`,
		`inspectd_queue_packets_total{queue="3"} 13`,
		`inspectd_queue_offloaded_total{queue="3"} 4`,
		`inspectd_queue_drops_total{cause="queue_full",queue="3"} 2`,
		`inspectd_engine_latency_seconds_bucket{le="1e-06"} 5`,
		`inspectd_engine_latency_seconds_bucket{le="1e-05"} 9`,
		`inspectd_engine_latency_seconds_bucket{le="+Inf"} 10`,
		`inspectd_engine_latency_seconds_count 10`,
		`inspectd_rule_hits_total{action="permit",interface="wan",rule="lab.rules:15"} 9`,
		`inspectd_watch_lost_total 6`,
		`inspectd_rules_loaded_timestamp_seconds 1.7e+09`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if resp, err := http.Get("http://" + s.Addr().String() + "/nothing"); err != nil || resp.StatusCode != 404 {
		t.Errorf("unknown path: %v %v", resp, err)
	}
	if _, err := Listen("256.0.0.1:1", fake{}); err == nil {
		t.Error("bad address accepted")
	}
}

// counting is a backend that counts its snapshots.
type counting struct {
	fake
	stats, rules atomic.Int64
}

func (c *counting) Stats() api.Stats { c.stats.Add(1); return c.fake.Stats() }
func (c *counting) Rules() api.Rules { c.rules.Add(1); return c.fake.Rules() }

// TestCollectorReadsAtMostOncePerInterval: a flood of concurrent scrapes
// walks the workers' tables once per MinInterval, not once per scrape.
func TestCollectorReadsAtMostOncePerInterval(t *testing.T) {
	b := &counting{}
	c := NewCollector(b)
	now := time.Unix(1700000000, 0)
	c.now = func() time.Time { return now }
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	gather := func() {
		t.Helper()
		if _, err := reg.Gather(); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(gather)
	}
	wg.Wait()
	if n, r := b.stats.Load(), b.rules.Load(); n != 1 || r != 1 {
		t.Fatalf("64 scrapes read Stats %d and Rules %d times, want 1", n, r)
	}
	now = now.Add(MinInterval - time.Millisecond)
	gather()
	if n := b.stats.Load(); n != 1 {
		t.Fatalf("a scrape within MinInterval read Stats again (%d reads)", n)
	}
	now = now.Add(time.Millisecond)
	gather()
	if n := b.stats.Load(); n != 2 {
		t.Fatalf("a scrape after MinInterval: %d reads, want 2", n)
	}
	now = now.Add(-time.Hour) // the clock stepped back
	gather()
	if n := b.stats.Load(); n != 3 {
		t.Fatalf("a scrape after the clock stepped back: %d reads, want 3", n)
	}
}
