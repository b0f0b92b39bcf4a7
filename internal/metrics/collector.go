package metrics

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/inspectd/inspectd/internal/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("inspectd_"+name, help, labels, nil)
}

var (
	descVerdicts    = desc("verdicts_total", "Packets decided by the engines, by verdict and reason.", "verdict", "reason")
	descSessions    = desc("sessions", "Live sessions by inspector (none when not inspected) and state.", "alg", "state")
	descExpects     = desc("expectations", "Pending expectations by inspector.", "alg")
	descTableUsed   = desc("table_used", "The fullest worker's entries in each table.", "table")
	descTableLimit  = desc("table_limit", "Each table's limit per worker.", "table")
	descQPackets    = desc("queue_packets_total", "Packets read from each netfilter queue.", "queue")
	descQOffloaded  = desc("queue_offloaded_total", "Packets accepted with the offload mark, per queue.", "queue")
	descQDrops      = desc("queue_drops_total", "Packets lost or refused around each queue, by cause.", "queue", "cause")
	descLatency     = desc("engine_latency_seconds", "Engine time per packet.")
	descRuleHits    = desc("rule_hits_total", "Flows decided by each rule since the rules were loaded.", "rule", "interface", "action")
	descWatchLost   = desc("watch_lost_total", "Events dropped because a watcher read too slowly.")
	descRulesLoaded = desc("rules_loaded_timestamp_seconds", "When the rules in force were loaded (Unix time).")
)

// Collector is a prometheus.Collector reading a Backend's snapshots.
//
// A snapshot walks every worker's session table under the worker's lock,
// so the collector takes one at most every MinInterval: scrapes that come
// faster (several Prometheus servers, a flood of requests) get the same
// figures and never hold the packet path up more than once in that time.
type Collector struct {
	b   api.Backend
	now func() time.Time

	mu    sync.Mutex // serialises reads of the backend
	at    time.Time  // when st and rules were read
	st    api.Stats
	rules api.Rules
}

// MinInterval is the shortest time between two reads of the backend by a
// Collector.
const MinInterval = time.Second

// NewCollector returns a collector over b.
func NewCollector(b api.Backend) *Collector { return &Collector{b: b, now: time.Now} }

// read returns the backend's snapshots, read again when the last read is
// MinInterval old.
func (c *Collector) read() (api.Stats, api.Rules) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.at.IsZero() || now.Sub(c.at) >= MinInterval || now.Before(c.at) {
		c.st, c.rules, c.at = c.b.Stats(), c.b.Rules(), now
	}
	return c.st, c.rules
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVerdicts, descSessions, descExpects, descTableUsed, descTableLimit,
		descQPackets, descQOffloaded, descQDrops, descLatency, descRuleHits, descWatchLost, descRulesLoaded} {
		ch <- d
	}
}

// Collect sends the metrics of the backend's last snapshot (read).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st, rules := c.read()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descVerdicts, st.NewSessions, "accept", "new session")
	counter(descVerdicts, st.SessionPackets, "accept", "session")
	if other := int64(st.Accepted) - int64(st.NewSessions) - int64(st.SessionPackets); other > 0 {
		counter(descVerdicts, uint64(other), "accept", "other")
	}
	for reason, n := range st.DropReasons {
		counter(descVerdicts, n, "drop", reason)
	}
	for _, sc := range st.SessionCounts {
		gauge(descSessions, float64(sc.Count), algLabel(sc.ALG), sc.State)
	}
	for _, ec := range st.ExpectCounts {
		gauge(descExpects, float64(ec.Count), algLabel(ec.ALG))
	}
	for _, u := range st.Limits {
		gauge(descTableUsed, float64(u.Used), u.Name)
		gauge(descTableLimit, float64(u.Limit), u.Name)
	}
	for _, q := range st.Queues {
		n := strconv.Itoa(int(q.Queue))
		counter(descQPackets, q.Packets, n)
		counter(descQOffloaded, q.Offloaded, n)
		counter(descQDrops, q.QueueFull, n, "queue_full")
		counter(descQDrops, q.SocketFull, n, "socket_full")
		counter(descQDrops, q.Overflows, n, "overflow")
		counter(descQDrops, q.VerdictErrors, n, "verdict_error")
	}
	if h := st.Latency; len(h.Counts) == len(h.Bounds)+1 {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += h.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descLatency, h.Count, h.Sum, buckets)
	}
	counter(descWatchLost, st.WatchLost)
	if !st.RulesLoaded.IsZero() {
		gauge(descRulesLoaded, float64(st.RulesLoaded.UnixNano())/1e9)
	}
	for _, r := range rules.Rules {
		counter(descRuleHits, r.Hits, r.Pos, r.Interface, r.Action)
	}
}

func algLabel(alg string) string {
	if alg == "" {
		return "none"
	}
	return alg
}

// Handler returns the /metrics handler: b's metrics plus the Go runtime's
// and the process's.
func Handler(b api.Backend) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(b), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Server serves the metrics over HTTP at /metrics.
type Server struct {
	ln net.Listener
	hs *http.Server
}

// MaxConns bounds the connections open at once to the metrics server;
// those beyond it wait in the listen backlog until one closes (see
// api.LimitListener).
const MaxConns = 64

// config is what Listen's options set.
type config struct {
	errorLog          *log.Logger
	readHeaderTimeout time.Duration // to read a request's header
	readTimeout       time.Duration // to read a whole request
	writeTimeout      time.Duration // to answer, from the end of the header
	idleTimeout       time.Duration // between requests on a kept-alive connection
	maxConns          int
}

// Option configures Listen.
type Option func(*config)

// ErrorLog makes the server log net/http's own errors (failed accepts,
// such as "too many open files", and the like) to l instead of the log
// package's standard logger.
func ErrorLog(l *log.Logger) Option { return func(c *config) { c.errorLog = l } }

// Listen listens on addr (e.g. "127.0.0.1:9163" or ":9163") for a metrics
// server over b; call Serve to serve and Close to stop. The server keeps
// at most MaxConns connections open, drops clients slow to send a request
// or to read the answer, and closes kept-alive connections idle for two
// minutes (more than the usual scrape intervals).
func Listen(addr string, b api.Backend, opts ...Option) (*Server, error) {
	cfg := config{
		readHeaderTimeout: 5 * time.Second,
		readTimeout:       10 * time.Second,
		writeTimeout:      30 * time.Second,
		idleTimeout:       2 * time.Minute,
		maxConns:          MaxConns,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(b))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "inspectd metrics: see /metrics")
	})
	return &Server{ln: api.LimitListener(ln, cfg.maxConns), hs: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ReadTimeout:       cfg.readTimeout,
		WriteTimeout:      cfg.writeTimeout,
		IdleTimeout:       cfg.idleTimeout,
		ErrorLog:          cfg.errorLog,
	}}, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it then returns nil.
func (s *Server) Serve() error {
	if err := s.hs.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Close stops the server, waiting up to two seconds for scrapes in
// progress.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.hs.Shutdown(ctx)
}
