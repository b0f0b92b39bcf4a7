// Package daemon is `inspectd run`: it loads the rules, installs the
// kernel hooks, serves the netfilter queues with one inspect engine per
// worker, logs what the engines do, reloads the rules on SIGHUP, keeps
// offloaded sessions alive while the kernel still carries their traffic,
// and removes its hooks on SIGINT or SIGTERM.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/hooks"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"github.com/inspectd/inspectd/internal/links"
	"github.com/inspectd/inspectd/internal/metrics"
	"github.com/inspectd/inspectd/internal/nfq"
	"github.com/inspectd/inspectd/rules"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// Options are what `inspectd run` flags set.
type Options struct {
	// RulesFile is the rule file (--rules).
	RulesFile string
	// Queues is the number of queues and workers (--queues); 0 means 1.
	Queues int
	// FirstQueue is the first queue number (--queue); the daemon uses
	// FirstQueue .. FirstQueue+Queues-1.
	FirstQueue uint16
	// NoHooks leaves the kernel ruleset alone and prints the hooks the
	// daemon would have installed to Stdout (--no-hooks).
	NoHooks bool
	// FailOpen lets packets pass while no daemon reads the queues, and
	// when a queue is full (--fail-open). The default fails closed.
	FailOpen bool
	// LogLevel is debug, info, warn or error (--log-level); "" is info.
	LogLevel string
	// LogFormat is console, json or auto (--log-format): auto, or "",
	// means console on a terminal and JSON otherwise.
	LogFormat string
	// Mark is the packet and connection mark bit of offloaded flows
	// (--mark); 0 means nfq.DefaultMark.
	Mark uint32
	// KeepAlive is how often the kernel's conntrack table is read to keep
	// offloaded sessions alive and the queue counters are checked; 0
	// means 5s.
	KeepAlive time.Duration
	// Stdout receives the --no-hooks plan; nil means os.Stdout. Logs go
	// to standard error.
	Stdout io.Writer
	// Logger, when set, is used instead of one built from LogLevel and
	// LogFormat (for embedding and tests).
	Logger *zap.Logger
	// Socket is the control socket (--socket); SocketGroup its group.
	Socket, SocketGroup string
	// Metrics is the Prometheus listen address (--metrics); "" is off.
	Metrics string
	// Version is the daemon's version for the control API.
	Version string

	// runQueue runs a queue's worker; nil means (*nfq.Queue).Run. Tests
	// make a queue fail with it.
	runQueue func(*nfq.Queue, context.Context, nfq.Handler) error
}

// fill puts the defaults in the zero fields that have one.
func (o *Options) fill() {
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.Mark == 0 {
		o.Mark = nfq.DefaultMark
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 5 * time.Second
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
}

// hookConfig returns the hooks the options ask for.
func (o *Options) hookConfig() hooks.Config {
	return hooks.Config{FirstQueue: o.FirstQueue, Queues: cmp.Or(o.Queues, 1), FailOpen: o.FailOpen, Mark: cmp.Or(o.Mark, nfq.DefaultMark)}
}

// Check reports options that cannot work (queue numbers, the mark, the log
// level and format) before Run changes anything; the command line reports
// them as usage errors.
func (o Options) Check() error {
	if err := o.hookConfig().Validate(); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if o.Logger == nil {
		if _, err := checkLog(o.LogLevel, o.LogFormat); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	return nil
}

// hookTimeout bounds installing or removing the kernel hooks (a few runs
// of iptables-save and iptables-restore, well under a second usually),
// within the systemd unit's TimeoutStopSec (15 s).
const hookTimeout = 10 * time.Second

// Log rate limits: sustained events per second and burst, shared by all
// workers, so that a flood of denials cannot fill the disk.
const (
	logRate  = 100
	logBurst = 500
)

// Run does what `inspectd run` does until ctx is done or SIGINT or
// SIGTERM arrives; it then removes its hooks and returns nil (or the
// error that removing them met). It returns an error when it cannot
// start: bad options, rules with errors (each is logged), another daemon
// in the network namespace, hooks or queues that cannot be set up. When a
// queue fails, it stops and returns the error, leaving the hooks in place
// so that traffic fails closed (or open, with FailOpen) as after a crash.
func Run(ctx context.Context, o Options) (err error) {
	o.fill()
	if err := o.Check(); err != nil {
		return err
	}
	hcfg := o.hookConfig()
	log := o.Logger
	if log == nil {
		var err error
		if log, err = newLogger(o.LogLevel, o.LogFormat, os.Stderr); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		defer log.Sync()
	}

	rs, err := loadRules(log, o.RulesFile)
	if err != nil {
		return err
	}
	lock, err := lockNamespace()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer lock.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	lim := newLimiter(logRate, logBurst)
	ifaces, err := links.Watch(ctx, func(err error) { lim.warn(log, "links", err) })
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	keep, err := newKeeper(o.Mark)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer keep.close()
	stats, err := os.Open(nfq.KernelStatsPath)
	if err != nil {
		return fmt.Errorf("daemon: kernel queue counters: %w", err)
	}
	defer stats.Close()

	// Connections the kernel holds as established were admitted by an
	// earlier run: they are resumed if the rules still permit them.
	est, err := keep.established()
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	known := knownUntil(est, time.Now().Add(rs.Timeouts.TCPIdle))

	// The kernel counts the packets and bytes of offloaded connections,
	// which the engine no longer sees: the audit trail reads them there.
	// (After the read above, which loads the kernel's conntrack if
	// nothing had yet, and with it the setting.)
	var kernelCounts kernelFlow = keep.t.Get
	restoreAcct, err := kconntrack.EnableAccounting(filepath.Dir(cmp.Or(o.Socket, api.DefaultSocket)))
	if err != nil {
		log.Warn("kernel conntrack accounting unavailable: offloaded sessions are logged with the packets inspectd saw",
			zap.Error(err))
		kernelCounts = nil
	} else {
		defer func() {
			if err := restoreAcct(); err != nil {
				log.Warn("restoring kernel conntrack accounting", zap.Error(err))
			}
		}()
	}

	if liberal, err := kconntrack.LiberalTCP(); err == nil && liberal {
		log.Warn("net.netfilter.nf_conntrack_tcp_be_liberal is 1: the kernel does not check TCP segments against the window, " +
			"so injected segments of offloaded connections are not dropped; set it to 0")
	}

	// Queues first, hooks second: traffic never meets a hook with no
	// reader behind it.
	engines := make([]*inspect.Engine, o.Queues)
	queues := make([]*nfq.Queue, 0, o.Queues)
	defer func() {
		for _, q := range queues {
			q.Close()
		}
	}()
	audit := newAuditor(log, lim, kernelCounts)
	defer audit.close()
	for i := range engines {
		engines[i] = inspect.New(rs, inspect.Options{Worker: i, Workers: o.Queues, Known: known, FastPath: true,
			HashSeed: rand.Uint64()})
		engines[i].SubscribeWhen(audit.event, audit.wants)
		qn := o.FirstQueue + uint16(i)
		q, err := nfq.Open(nfq.Config{Queue: qn, FailOpen: o.FailOpen, GSO: true, Mark: o.Mark, Names: ifaces,
			OnError: func(err error) { lim.warn(log, "queue", err) }})
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		queues = append(queues, q)
	}
	for _, e := range engines {
		e.SetSiblings(engines)
	}
	lat := metrics.NewLatency(o.Queues)
	// kstats holds the kernel's latest per-queue drop counters, read by
	// the maintenance loop and shown by `inspectd stats`.
	var kstats atomic.Pointer[map[uint16]nfq.KernelStats]
	backend := api.NewEngineBackend(engines, api.EngineConfig{
		Reload: func() error { return reload(log, o.RulesFile, engines) },
		Queues: func() []api.QueueStats {
			kernel := kstats.Load()
			out := make([]api.QueueStats, len(queues))
			for i, q := range queues {
				s := q.Stats()
				n := o.FirstQueue + uint16(i)
				out[i] = api.QueueStats{Queue: n, Packets: s.Packets, Accepted: s.Accepted,
					Dropped: s.Dropped, Offloaded: s.Offloaded, VerdictErrors: s.VerdictErrors, Overflows: s.Overflows}
				if kernel != nil {
					out[i].QueueFull, out[i].SocketFull = (*kernel)[n].QueueDropped, (*kernel)[n].UserDropped
				}
			}
			return out
		},
		Latency: lat.Snapshot,
	})
	// net/http's own complaints (an accept error) go to the daemon's log,
	// in its format, not as plain text among JSON lines.
	httpLog, err := zap.NewStdLogAt(log.With(zap.String("component", "http")), zap.WarnLevel)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	srv, err := api.NewServer(backend, api.Options{Path: o.Socket, Group: o.SocketGroup, Version: o.Version, ErrorLog: httpLog})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	go srv.Serve()
	defer srv.Close()
	if o.Metrics != "" {
		ms, err := metrics.Listen(o.Metrics, backend, metrics.ErrorLog(httpLog))
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		go ms.Serve()
		defer ms.Close()
	}

	// failed is set when a queue fails: the hooks then stay, so that
	// traffic meets them with no reader, as after a crash.
	var failed bool
	hookMode := "installed"
	if o.NoHooks {
		plan, err := hooks.Plan(hcfg)
		if err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		fmt.Fprint(o.Stdout, plan)
		hookMode = "not installed (--no-hooks)"
	} else {
		// A signal during the install must not leave half of it: the
		// install (and its rollback) runs to its end, then the signal
		// is honoured with the clean stop below.
		left, ierr := installHooks(ctx, hcfg)
		if ierr != nil {
			return fmt.Errorf("daemon: %w", ierr)
		}
		if left > 0 {
			log.Warn("removed hooks left by an earlier run", zap.Int("chains", left))
		}
		defer func() {
			if failed {
				// Fail closed (or open, with --fail-open) as after a
				// crash: without the hooks, forwarded traffic would pass
				// uninspected until the daemon is back.
				log.Error("hooks left in place: no new flow passes until inspectd runs again (it removes them on start)")
				return
			}
			rctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
			defer cancel()
			if _, rerr := hooks.Remove(rctx); rerr != nil {
				log.Error("removing hooks", zap.Error(rerr))
				err = errors.Join(err, fmt.Errorf("daemon: removing hooks: %w", rerr))
			} else {
				log.Info("hooks removed")
			}
		}()
		if ctx.Err() != nil {
			return nil
		}
	}

	log.Info("inspectd started",
		zap.String("queues", queueRange(o.FirstQueue, o.Queues)),
		zap.Bool("fail_open", o.FailOpen),
		zap.String("hooks", hookMode),
		zap.String("mark", fmt.Sprintf("%#x", o.Mark)),
		zap.Int("resumable_connections", len(est)),
		zap.Strings("interfaces", ifaces.Names()),
		zap.String("rules", strings.TrimSpace(rs.Summary())))

	var wg sync.WaitGroup
	errs := make(chan error, o.Queues)
	runQueue := o.runQueue
	if runQueue == nil {
		runQueue = (*nfq.Queue).Run
	}
	for i, q := range queues {
		w := &worker{e: engines[i], keep: keep, lat: lat.Worker(i)}
		wg.Go(func() {
			if err := runQueue(q, ctx, w); err != nil {
				errs <- err
			}
		})
	}
	var check func(context.Context) error
	if !o.NoHooks {
		check = func(ctx context.Context) error { return checkHooks(ctx, log, hcfg) }
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("daemon: network namespace: %w", err)
	}
	defer ns.Close()
	wg.Go(func() {
		// The hooks check runs iptables-save, which works on the network
		// namespace of the thread that starts it: it must be the daemon's,
		// also when Run was started on a thread of its own (tests).
		check := check
		if err := enterNamespace(ns); err != nil {
			log.Error("the hooks check is off: cannot enter the daemon's network namespace", zap.Error(err))
			check = nil
		}
		maintain(ctx, log, lim, keep, check, stats, queues, o.FirstQueue, o.KeepAlive, &kstats)
	})

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			runErr = fmt.Errorf("daemon: %w", err)
			failed = true
			stop()
			break loop
		case <-hup:
			// Off the main loop: a rule file on a hung mount must not
			// keep SIGTERM waiting. Reloads still run one at a time.
			go backend.Reload()
		}
	}
	wg.Wait()
	for i, q := range queues {
		s := q.Stats()
		log.Info("queue closed", zap.Uint16("queue", o.FirstQueue+uint16(i)),
			zap.Uint64("packets", s.Packets), zap.Uint64("accepted", s.Accepted), zap.Uint64("dropped", s.Dropped),
			zap.Uint64("offloaded", s.Offloaded), zap.Uint64("verdict_errors", s.VerdictErrors))
	}
	log.Info("inspectd stopping")
	return runErr
}

// enterNamespace locks the calling goroutine to its thread and moves the
// thread into network namespace ns, unless it is there already. In a
// daemon every thread is (the whole process was started in the
// namespace), and that is as well: switching needs CAP_SYS_ADMIN, which
// the systemd unit does not grant.
func enterNamespace(ns netns.NsHandle) error {
	runtime.LockOSThread()
	here, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer here.Close()
	if here.Equal(ns) {
		runtime.UnlockOSThread()
		return nil
	}
	return netns.Set(ns) // the thread stays locked, and ends with the goroutine
}

// installHooks installs the hooks, to the end even when ctx is cancelled
// (a signal): a half-done install, or a rollback cut short, would leave
// the forward path half hooked. hookTimeout bounds it.
func installHooks(ctx context.Context, c hooks.Config) (leftovers int, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hookTimeout)
	defer cancel()
	return hooks.Install(ctx, c)
}

// checkHooks makes sure the hooks are still installed, and installs them
// again when another tool removed them (an iptables-restore without
// --noflush, a firewall reload): forwarded traffic would otherwise pass
// uninspected while the daemon runs on.
func checkHooks(ctx context.Context, log *zap.Logger, c hooks.Config) error {
	missing, err := hooks.Missing(ctx)
	if err != nil || len(missing) == 0 {
		return err
	}
	log.Error("kernel hooks removed by someone else: installing them again", zap.Strings("missing", missing))
	if _, err := installHooks(ctx, c); err != nil {
		return fmt.Errorf("installing the hooks again: %w", err)
	}
	log.Info("hooks installed again")
	return nil
}

// loadRules parses the rule file, logging every error it has. It must be
// a regular file: reading a FIFO (or a device) could block the daemon's
// main loop, and with it SIGTERM, until someone writes to it.
func loadRules(log *zap.Logger, path string) (*rules.Ruleset, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		err := fmt.Errorf("daemon: %s is not a regular file", path)
		log.Error("rules", zap.Error(err))
		return nil, err
	}
	rs, err := rules.ParseFile(path)
	if err == nil {
		if len(rs.Blocks) == 0 {
			log.Warn("the rules have no 'in on INTERFACE' block: all forwarded traffic is dropped", zap.String("file", path))
		}
		return rs, nil
	}
	var list rules.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			log.Error("rule error", zap.String("error", e.Error()))
		}
		return nil, fmt.Errorf("daemon: %s: %d errors in the rules", path, len(list))
	}
	log.Error("rules", zap.Error(err))
	return nil, fmt.Errorf("daemon: %w", err)
}

// reload re-reads the rules and puts them in force in every engine, or
// keeps the old ones when the file has errors.
func reload(log *zap.Logger, path string, engines []*inspect.Engine) error {
	rs, err := loadRules(log, path)
	if err != nil {
		log.Error("reload refused, the old rules stay in force", zap.Error(err))
		return err
	}
	for _, e := range engines {
		e.SetRules(rs)
	}
	log.Info("rules reloaded", zap.String("rules", strings.TrimSpace(rs.Summary())))
	return nil
}

func queueRange(first uint16, n int) string {
	if n == 1 {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, int(first)+n-1)
}

// worker is a queue's Handler: its engine, plus the keep-alive of
// offloaded sessions on the worker goroutine (the engine's tables belong
// to it).
type worker struct {
	lat  *metrics.Recorder
	e    *inspect.Engine
	keep *keeper
	seen time.Time // time of the last kernel table read acted on
}

// Process hands the packet to the engine.
func (w *worker) Process(data []byte, m inspect.Meta) inspect.Verdict {
	t0 := time.Now()
	v := w.e.Process(data, m)
	w.lat.Since(t0)
	return v
}

// Tick advances the engine's expiry and, when the keeper has read the
// kernel's table since the last tick, touches the offloaded sessions the
// kernel saw traffic on since the previous read this worker acted on.
func (w *worker) Tick(now time.Time) {
	w.e.Tick(now)
	a := w.keep.alive.Load()
	if a == nil || !a.at.After(w.seen) {
		return
	}
	for _, o := range w.e.Offloaded(a.at) {
		k := o.Key
		// The kernel's entry speaks for the session only if it saw
		// traffic after the session began: an entry an earlier connection
		// on these ports left established ignores a new SYN, and its
		// state and counters are not this session's. A finished entry's
		// counters are (a new SYN would have replaced it), though the
		// connection may have begun and ended between two reads.
		ours := a.since(k, o.Created)
		if ours && a.isEstablished(k) {
			w.e.Promote(k)
		}
		if a.since(k, w.seen) {
			w.e.Touch(k, now)
		}
		if f, ok := a.countsOf(k); ok && (ours || a.isFinished(k)) {
			w.e.Account(f.Forward(), f.Packets, f.Bytes)
		}
	}
	w.seen = a.at
}

// maintain runs every interval: the conntrack keep-alive read, the
// kernel's queue overflow counters and, when check is set, the check that
// the hooks are still installed.
func maintain(ctx context.Context, log *zap.Logger, lim *limiter, keep *keeper, check func(context.Context) error,
	stats *os.File, queues []*nfq.Queue, first uint16, interval time.Duration, kstats *atomic.Pointer[map[uint16]nfq.KernelStats]) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last map[uint16]nfq.KernelStats
	lastOverflows := make([]uint64, len(queues))
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := keep.poll(now); err != nil {
				lim.warn(log, "conntrack keep-alive", err)
			}
			if check != nil {
				if err := check(ctx); err != nil {
					lim.warn(log, "kernel hooks", err)
				}
			}
			last = checkOverflow(log, stats, first, len(queues), last)
			published := last // a new variable each tick: readers keep theirs
			kstats.Store(&published)
			for i, q := range queues {
				if n := q.Stats().Overflows; n != lastOverflows[i] {
					log.Warn("queue socket overrun (ENOBUFS)", zap.Uint16("queue", first+uint16(i)),
						zap.Uint64("new", n-lastOverflows[i]), zap.Uint64("total", n))
					lastOverflows[i] = n
				}
			}
		}
	}
}

// checkOverflow reads the kernel's queue counters and logs any growth of
// the drop counters of our queues. It returns the counters read.
func checkOverflow(log *zap.Logger, f *os.File, first uint16, n int, last map[uint16]nfq.KernelStats) map[uint16]nfq.KernelStats {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		log.Warn("reading kernel queue counters", zap.Error(err))
		return last
	}
	st, err := nfq.ParseKernelStats(f)
	if err != nil {
		log.Warn("reading kernel queue counters", zap.Error(err))
		return last
	}
	cur := make(map[uint16]nfq.KernelStats, len(st))
	for _, s := range st {
		if s.Queue < first || int(s.Queue) >= int(first)+n {
			continue
		}
		cur[s.Queue] = s
		p := last[s.Queue]
		if s.QueueDropped > p.QueueDropped || s.UserDropped > p.UserDropped {
			log.Warn("queue overflow", zap.Uint16("queue", s.Queue),
				zap.Uint64("queue_full", s.QueueDropped-p.QueueDropped),
				zap.Uint64("socket_full", s.UserDropped-p.UserDropped),
				zap.Uint64("queue_full_total", s.QueueDropped), zap.Uint64("socket_full_total", s.UserDropped))
		}
	}
	return cur
}
