package daemon

import (
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// keeper reads the kernel's conntrack table and tells when each
// offloaded connection (one carrying the mark bit) last saw traffic. The
// kernel resets a connection's timeout on every packet, so a connection
// saw traffic when its expiry time moved later. Workers read the result
// (alive) on their own goroutines and touch their sessions.
type keeper struct {
	mark uint32
	h    *netlink.Handle
	// expiry is each marked connection's kernel expiry time when it was
	// last found alive (or first seen): small moves between reads, below
	// the kernel's one-second resolution, add up until they count.
	expiry map[conntrack.Key]time.Time
	// aliveAt is when each marked connection was last found alive.
	aliveAt map[conntrack.Key]time.Time
	alive   atomic.Pointer[aliveSet]
}

// aliveSet is one read's result: for each marked connection the kernel
// still has (keyed in the kernel's original direction), the time of the
// read that last found it alive.
type aliveSet struct {
	at   time.Time // when the table was read
	keys map[conntrack.Key]time.Time
	// established holds the marked TCP connections the kernel tracks as
	// established or later (its handshake finished): a session offloaded
	// at its SYN-ACK is promoted on this word, never on mere traffic.
	established map[conntrack.Key]bool
}

// isEstablished reports whether the kernel holds k (in either direction)
// as an established TCP connection.
func (a *aliveSet) isEstablished(k conntrack.Key) bool {
	return a.established[k] || a.established[k.Reverse()]
}

// since reports whether k, in either direction, was found alive after t.
func (a *aliveSet) since(k conntrack.Key, t time.Time) bool {
	if at, ok := a.keys[k]; ok && at.After(t) {
		return true
	}
	at, ok := a.keys[k.Reverse()]
	return ok && at.After(t)
}

// newKeeper opens a conntrack netlink socket in the caller's network
// namespace.
func newKeeper(mark uint32) (*keeper, error) {
	h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("conntrack netlink socket: %w", err)
	}
	return &keeper{mark: mark, h: h}, nil
}

func (k *keeper) close() { k.h.Close() }

// poll reads the kernel's table at time now and publishes the marked
// connections whose expiry moved later by more than a second (the kernel
// reports whole seconds) since they were last found alive, or that are
// new to the keeper.
func (k *keeper) poll(now time.Time) error {
	var flows []*netlink.ConntrackFlow
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		f, err := k.h.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return fmt.Errorf("list kernel conntrack: %w", err)
		}
		flows = append(flows, f...)
	}
	next := make(map[conntrack.Key]time.Time)
	nextAlive := make(map[conntrack.Key]time.Time)
	est := make(map[conntrack.Key]bool)
	for _, f := range flows {
		if f.Mark&k.mark == 0 {
			continue
		}
		key, ok := kconntrack.FlowKey(f)
		if !ok {
			continue
		}
		if tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP); ok && tcp.State >= kernelTCPEstablished {
			est[key] = true
		}
		exp := now.Add(time.Duration(f.TimeOut) * time.Second)
		base, seen := k.expiry[key]
		last := k.aliveAt[key]
		if !seen || exp.Sub(base) > time.Second {
			base, last = exp, now
		}
		next[key] = base
		nextAlive[key] = last
	}
	k.expiry, k.aliveAt = next, nextAlive
	k.alive.Store(&aliveSet{at: now, keys: maps.Clone(nextAlive), established: est})
	return nil
}

// Kernel TCP conntrack states from established to last-ack
// (include/uapi/linux/netfilter/nf_conntrack_tcp.h); the states after
// established are the teardown's.
const (
	kernelTCPEstablished = 3
	kernelTCPLastAck     = 6
)

// established lists the TCP connections the kernel's conntrack holds as
// established (or closing) now, by original-direction key: the daemon
// resumes them after a restart instead of cutting them.
func (k *keeper) established() (map[conntrack.Key]struct{}, error) {
	set := make(map[conntrack.Key]struct{})
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := k.h.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			return nil, fmt.Errorf("list kernel conntrack: %w", err)
		}
		for _, f := range flows {
			tcp, ok := f.ProtoInfo.(*netlink.ProtoInfoTCP)
			if !ok || tcp.State < kernelTCPEstablished || tcp.State > kernelTCPLastAck {
				continue
			}
			if key, ok := kconntrack.FlowKey(f); ok {
				set[key] = struct{}{}
			}
		}
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
