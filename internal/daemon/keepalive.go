package daemon

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/internal/kconntrack"
)

// keeper reads the kernel's conntrack table and tells when each
// offloaded connection (one carrying the mark bit) last saw traffic. The
// kernel resets a connection's timeout on every packet, so a connection
// saw traffic when its expiry time moved later. Workers read the result
// (alive) on their own goroutines and touch their sessions.
type keeper struct {
	mark uint32
	t    *kconntrack.Table
	// expiry is each marked connection's kernel expiry time when it was
	// last found alive (or first seen): small moves between reads, below
	// the kernel's one-second resolution, add up until they count.
	expiry map[conntrack.Key]time.Time
	// aliveAt is when each marked connection was last found alive.
	aliveAt map[conntrack.Key]time.Time
	alive   atomic.Pointer[aliveSet]
	// polled is when the last read was made.
	polled time.Time
}

// aliveSet is one read's result: the marked connections the kernel
// holds, keyed in their original direction as the forward path sees them
// (kconntrack.Flow.Forward, which undoes destination NAT).
type aliveSet struct {
	at    time.Time // when the table was read
	conns map[conntrack.Key]kernelConn
}

// kernelConn is what one read tells of a marked connection.
type kernelConn struct {
	// aliveAt is the time of the read that last found it alive; zero for
	// a connection the kernel holds as finished (time-wait, close).
	aliveAt time.Time
	// established is set for a TCP connection the kernel tracks as
	// established or closing but not finished (its handshake is done;
	// a simultaneous open's SYN_SENT2 is not): a session offloaded at
	// its SYN is promoted on this word, never on mere traffic.
	established bool
	// finished is set for a TCP connection the kernel holds as finished
	// (time-wait, close): a new connection on its ports would have
	// replaced the entry, so its counters are the connection's that
	// ended.
	finished bool
	// flow is the kernel's entry, with its counters when flow.Counted.
	flow kconntrack.Flow
}

// get returns what the read says of k, in either direction.
func (a *aliveSet) get(k conntrack.Key) (kernelConn, bool) {
	if c, ok := a.conns[k]; ok {
		return c, true
	}
	c, ok := a.conns[k.Reverse()]
	return c, ok
}

// countsOf returns the kernel's entry for k when it has counters.
func (a *aliveSet) countsOf(k conntrack.Key) (kconntrack.Flow, bool) {
	c, ok := a.get(k)
	return c.flow, ok && c.flow.Counted
}

// isFinished reports whether the kernel holds k as a finished TCP
// connection.
func (a *aliveSet) isFinished(k conntrack.Key) bool {
	c, _ := a.get(k)
	return c.finished
}

// isEstablished reports whether the kernel holds k as an established TCP
// connection.
func (a *aliveSet) isEstablished(k conntrack.Key) bool {
	c, _ := a.get(k)
	return c.established
}

// since reports whether k was found alive after t.
func (a *aliveSet) since(k conntrack.Key, t time.Time) bool {
	c, ok := a.get(k)
	return ok && c.aliveAt.After(t)
}

// newKeeper opens a conntrack netlink socket in the caller's network
// namespace.
func newKeeper(mark uint32) (*keeper, error) {
	t, err := kconntrack.Open()
	if err != nil {
		return nil, err
	}
	return &keeper{mark: mark, t: t}, nil
}

func (k *keeper) close() { k.t.Close() }

// poll reads the kernel's table at time now and publishes the marked
// connections whose expiry moved by more than a second (the kernel
// reports whole seconds) since they were last found alive, or that are
// new to the keeper. Without traffic the expiry stays where it is; a
// packet moves it, later as a rule, but earlier too: while data is in
// flight the kernel sets the shorter nf_conntrack_tcp_timeout_unacknowledged
// (300 s) instead of the established timeout (5 days), so a bulk transfer
// read first while idle moves its expiry days earlier. The kernel sends only the marked entries; TCP
// connections it already holds as finished (time-wait, close) count as
// neither alive nor established (their sessions have seen their
// teardown), but their traffic counters are kept: the engine's closing
// session lingers a few seconds and should show the whole transfer.
//
// A connection seen for the first time (the daemon restarted, or its
// mark came back) counts as alive only if the kernel set its timeout
// since the previous read, as far as its remaining timeout tells (recent):
// an entry an earlier connection left established says nothing of a new
// session on its ports.
func (k *keeper) poll(now time.Time) error {
	window := firstPollWindow
	if !k.polled.IsZero() {
		window = now.Sub(k.polled)
	}
	window += 2 * time.Second // the kernel's whole seconds, and the read's own time
	full := readTimeouts()
	next := make(map[conntrack.Key]time.Time, len(k.expiry))
	nextAlive := make(map[conntrack.Key]time.Time, len(k.aliveAt))
	conns := make(map[conntrack.Key]kernelConn, len(k.aliveAt))
	err := k.t.Dump(k.mark, func(f kconntrack.Flow) {
		if f.Mark&k.mark == 0 {
			return
		}
		c := kernelConn{flow: f}
		key := f.Forward()
		c.finished = f.Key.Proto == decode.ProtoTCP && (f.TCPState == kconntrack.TCPTimeWait || f.TCPState == kconntrack.TCPClose)
		if !c.finished {
			c.established = f.Key.Proto == decode.ProtoTCP && kconntrack.HandshakeDone(f.TCPState)
			exp := now.Add(time.Duration(f.Timeout) * time.Second)
			base, seen := k.expiry[key]
			last := k.aliveAt[key]
			switch {
			case !seen:
				base = exp
				if full.recent(f, window) {
					last = now
				}
			case exp.Sub(base) > time.Second || base.Sub(exp) > time.Second:
				base, last = exp, now
			}
			next[key], nextAlive[key] = base, last
			c.aliveAt = last
		}
		conns[key] = c
	})
	if err != nil {
		return fmt.Errorf("list kernel conntrack: %w", err)
	}
	k.expiry, k.aliveAt, k.polled = next, nextAlive, now
	k.alive.Store(&aliveSet{at: now, conns: conns})
	return nil
}

// firstPollWindow is how far back the first read looks for traffic.
const firstPollWindow = 10 * time.Second

// kernelTimeouts are the timeouts the kernel gives a connection at each
// packet, by state: an established TCP connection gets the established
// one, or the unacknowledged one while data is in flight; a UDP flow the
// one for a single exchange, or the stream one once both sides spoke.
// Zero when the sysctl could not be read.
type kernelTimeouts struct {
	established, unacknowledged, udp, udpStream time.Duration
}

// readTimeouts reads the kernel's conntrack timeouts in the calling
// thread's network namespace.
func readTimeouts() kernelTimeouts {
	read := func(name string) time.Duration {
		b, err := os.ReadFile("/proc/sys/net/netfilter/" + name)
		if err != nil {
			return 0
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	return kernelTimeouts{
		established:    read("nf_conntrack_tcp_timeout_established"),
		unacknowledged: read("nf_conntrack_tcp_timeout_unacknowledged"),
		udp:            read("nf_conntrack_udp_timeout"),
		udpStream:      read("nf_conntrack_udp_timeout_stream"),
	}
}

// recent estimates whether entry f saw a packet within the last window:
// the kernel set its timeout, one of those its state may have, at its
// last packet, so the time since is that timeout less what is left. For
// states with other timeouts (handshake, teardown: short-lived), and when
// the timeouts are unknown, it says yes.
func (to kernelTimeouts) recent(f kconntrack.Flow, window time.Duration) bool {
	var full []time.Duration
	switch {
	case f.Key.Proto == decode.ProtoTCP && f.TCPState == kconntrack.TCPEstablished:
		full = []time.Duration{to.established, to.unacknowledged}
	case f.Key.Proto == decode.ProtoUDP:
		full = []time.Duration{to.udp, to.udpStream}
	default:
		return true
	}
	left := time.Duration(f.Timeout) * time.Second
	known := false
	for _, t := range full {
		if t == 0 {
			continue
		}
		known = true
		if t >= left && t-left <= window {
			return true
		}
	}
	return !known
}

// established lists the TCP connections the kernel's conntrack holds as
// established (or closing) now, by their original direction as the
// forward path sees them: the daemon resumes them after a restart
// instead of cutting them.
func (k *keeper) established() (map[conntrack.Key]struct{}, error) {
	set := make(map[conntrack.Key]struct{})
	err := k.t.Dump(0, func(f kconntrack.Flow) {
		if f.Key.Proto == decode.ProtoTCP && kconntrack.HandshakeDone(f.TCPState) {
			set[f.Forward()] = struct{}{}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list kernel conntrack: %w", err)
	}
	return set, nil
}

// knownUntil returns an Options.Known for the engines: the connections in
// set, for as long as the rules' TCP idle timeout after start (a
// connection silent for longer would have expired anyway).
func knownUntil(set map[conntrack.Key]struct{}, until time.Time) func(conntrack.Key) bool {
	if len(set) == 0 {
		return nil
	}
	return func(k conntrack.Key) bool {
		if time.Now().After(until) {
			return false
		}
		_, ok := set[k]
		return ok
	}
}
