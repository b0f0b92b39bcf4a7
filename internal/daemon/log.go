package daemon

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// newLogger builds the daemon's logger: level debug, info, warn or error
// ("" is info); format console, json, or auto ("" too): console when w is
// a terminal, JSON otherwise.
func newLogger(level, format string, w *os.File) (*zap.Logger, error) {
	lvl, err := checkLog(level, format)
	if err != nil {
		return nil, err
	}
	if format == "" || format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "console"
		}
	}
	return buildLogger(lvl, format, zapcore.Lock(w))
}

// checkLog checks a log level and format as newLogger takes them and
// returns the level.
func checkLog(level, format string) (zapcore.Level, error) {
	lvl := zapcore.InfoLevel
	switch level {
	case "", "info":
	case "debug":
		lvl = zapcore.DebugLevel
	case "warn":
		lvl = zapcore.WarnLevel
	case "error":
		lvl = zapcore.ErrorLevel
	default:
		return lvl, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "", "auto", "json", "console":
		return lvl, nil
	}
	return lvl, fmt.Errorf("log format %q: want console, json or auto", format)
}

// buildLogger builds a logger of the given level and format on w.
func buildLogger(lvl zapcore.Level, format string, w zapcore.WriteSyncer) (*zap.Logger, error) {
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: want console, json or auto", format)
	}
	return zap.New(zapcore.NewCore(enc, w, lvl)), nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// limiter is a token bucket shared by all workers' log lines. It counts
// what it refused, so the next line it allows can say so.
type limiter struct {
	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	tokens     float64
	last       time.Time
	suppressed uint64
	now        func() time.Time
}

func newLimiter(rate, burst float64) *limiter {
	return &limiter{rate: rate, burst: burst, tokens: burst, now: time.Now}
}

// allow takes a token if there is one. When it does, it also returns how
// many lines were suppressed since the last allowed one.
func (l *limiter) allow() (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

// room reports whether a line would be allowed now, without taking a
// token.
func (l *limiter) room() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := l.tokens
	if !l.last.IsZero() {
		tokens = min(l.burst, tokens+l.now().Sub(l.last).Seconds()*l.rate)
	}
	return tokens >= 1
}

// warn logs a non-fatal error, rate limited.
func (l *limiter) warn(log *zap.Logger, what string, err error) {
	ok, sup := l.allow()
	if !ok {
		return
	}
	logSuppressed(log, sup)
	log.Warn(what, zap.Error(err))
}

func logSuppressed(log *zap.Logger, n uint64) {
	if n > 0 {
		log.Warn("log lines suppressed by the rate limit", zap.Uint64("lines", n))
	}
}

// auditor logs the engines' events: the session audit trail (open, close
// with traffic each way and why), expectations, and every denial, all
// rate limited. The lines are written by a goroutine of their own, so a
// slow log sink (a full pipe, journald pushing back) never blocks a queue
// worker: when its bounded backlog is full, lines are dropped and counted.
//
// The close line of an offloaded session carries the kernel's counters
// (read by the writer, off the packet path): the engine saw only the
// packets the kernel queued.
type auditor struct {
	log     *zap.Logger
	lim     *limiter
	kernel  kernelFlow
	lines   chan auditLine
	dropped atomic.Uint64
	done    chan struct{}
}

// kernelFlow looks a flow up in the kernel's conntrack table
// (kconntrack.Table.Get).
type kernelFlow func(conntrack.Key) (kconntrack.Flow, bool, error)

// auditLine is one log line on its way to the writer.
type auditLine struct {
	ce     *zapcore.CheckedEntry
	fields []zap.Field
	// counts, when set, is the closed session whose traffic counters the
	// writer appends, from the kernel when it has them.
	counts *inspect.SessionInfo
}

// auditBacklog is how many lines may wait for the writer.
const auditBacklog = 1024

// newAuditor starts the writer; kernel, when not nil, reads the kernel's
// counters of offloaded sessions.
func newAuditor(log *zap.Logger, lim *limiter, kernel kernelFlow) *auditor {
	a := &auditor{log: log, lim: lim, kernel: kernel, lines: make(chan auditLine, auditBacklog), done: make(chan struct{})}
	go a.write()
	return a
}

func (a *auditor) write() {
	defer close(a.done)
	for l := range a.lines {
		if l.counts != nil {
			l.fields = a.countFields(l.fields, l.counts)
		}
		l.ce.Write(l.fields...)
		if n := a.dropped.Swap(0); n > 0 {
			a.log.Warn("log lines dropped: the log sink is too slow", zap.Uint64("lines", n))
		}
	}
}

// close writes what is waiting and stops the writer; no event may come
// after it.
func (a *auditor) close() {
	close(a.lines)
	<-a.done
}

// levelOf is the level an event is logged at. A denial is logged at info
// when its rule or default says `log`, or when no rule decided it (an
// inspector's refusal, a limit, a TCP anomaly); plain rule denials and
// expectation events are debug.
func levelOf(k inspect.EventKind, log bool) zapcore.Level {
	switch k {
	case inspect.ExpectAdd, inspect.ExpectUse, inspect.ExpectExpire:
		return zap.DebugLevel
	case inspect.Deny:
		if !log {
			return zap.DebugLevel
		}
	}
	return zap.InfoLevel
}

// wants tells the engine whether an event would be logged now: its level
// is enabled and the rate limit has room. The engine builds no event for
// the auditor otherwise.
func (a *auditor) wants(k inspect.EventKind, log bool) bool {
	return a.log.Core().Enabled(levelOf(k, log)) && a.lim.room()
}

// event is an engine's subscriber. It runs on the packet path, so it asks
// the limiter first and formats nothing for a line that will not be
// written.
func (a *auditor) event(ev inspect.Event) {
	lvl := levelOf(ev.Kind, ev.Log)
	if !a.log.Core().Enabled(lvl) {
		return
	}
	ok, sup := a.lim.allow()
	if !ok {
		return
	}
	if sup > 0 {
		if ce := a.log.Check(zap.WarnLevel, "log lines suppressed by the rate limit"); ce != nil {
			select {
			case a.lines <- auditLine{ce: ce, fields: []zap.Field{zap.Uint64("lines", sup)}}:
			default:
				a.dropped.Add(1)
			}
		}
	}
	fields := make([]zap.Field, 0, 17)
	var counts *inspect.SessionInfo
	fields = append(fields, zap.String("proto", ev.Flow.Proto), zap.String("src", ev.Flow.Src), zap.String("dst", ev.Flow.Dst))
	if ev.Reason != "" {
		fields = append(fields, zap.String("reason", ev.Reason))
	}
	if ev.Rule != "" {
		fields = append(fields, zap.String("rule", ev.Rule))
	}
	if ev.In != "" {
		fields = append(fields, zap.String("in", ev.In))
	}
	if s := ev.Session; s != nil {
		fields = append(fields, zap.Uint64("session", s.ID))
		if s.ALG != "" {
			fields = append(fields, zap.String("alg", s.ALG))
		}
		if s.Parent != 0 {
			fields = append(fields, zap.Uint64("parent", s.Parent))
		}
		if ev.Kind == inspect.SessionClose {
			fields = append(fields, zap.String("state", s.State), zap.Bool("offloaded", s.Offloaded),
				zap.Duration("duration", s.LastSeen.Sub(s.Created)))
			if s.Offloaded && a.kernel != nil {
				counts = s
			} else {
				fields = appendCounts(fields, s.Packets, s.Bytes)
			}
		}
	}
	if x := ev.Expect; x != nil {
		fields = append(fields, zap.Uint64("expect", x.ID), zap.String("what", x.What),
			zap.String("expect_src", x.Src), zap.String("expect_dst", x.Dst))
	}
	if ce := a.log.Check(lvl, ev.Kind.String()); ce != nil {
		select {
		case a.lines <- auditLine{ce: ce, fields: fields, counts: counts}:
		default:
			a.dropped.Add(1)
		}
	}
}

// countFields appends the traffic counters of closed session s: the
// kernel's when it tracked the connection with its accounting on (they
// include what the fast path carried), the engine's otherwise.
func (a *auditor) countFields(fields []zap.Field, s *inspect.SessionInfo) []zap.Field {
	f, ok, err := a.kernel(s.Key)
	if err != nil || !ok || !f.Counted {
		return appendCounts(fields, s.Packets, s.Bytes)
	}
	p, b, ok := kernelCounts(f, s)
	if !ok {
		return appendCounts(fields, s.Packets, s.Bytes)
	}
	return append(appendCounts(fields, p, b), zap.String("counted_by", "kernel"))
}

// kernelCounts returns the kernel entry f's counters in closed session s's
// directions, and whether f is s's connection. By the time the line is
// written, the kernel's entry for s's addresses and ports may be a newer
// connection's (a client reusing its port): one whose handshake is all it
// has while s saw its teardown, or one that counts fewer packets than the
// engine saw of s, is not s's.
func kernelCounts(f kconntrack.Flow, s *inspect.SessionInfo) (packets, bytes [2]uint64, ok bool) {
	packets, bytes, ok = f.Forward().Orient(s.Key, f.Packets, f.Bytes)
	if !ok {
		return packets, bytes, false
	}
	switch s.State {
	case conntrack.StateFinWait.String(), conntrack.StateClosing.String(), conntrack.StateTimeWait.String(),
		conntrack.StateClosed.String():
		if !kconntrack.TeardownSeen(f.TCPState) {
			return packets, bytes, false
		}
	}
	for d := range 2 {
		if packets[d] < s.Packets[d] {
			return packets, bytes, false
		}
	}
	return packets, bytes, true
}

// appendCounts appends packets and bytes each way.
func appendCounts(fields []zap.Field, packets, bytes [2]uint64) []zap.Field {
	return append(fields, zap.Uint64("packets_orig", packets[0]), zap.Uint64("bytes_orig", bytes[0]),
		zap.Uint64("packets_reply", packets[1]), zap.Uint64("bytes_reply", bytes[1]))
}
