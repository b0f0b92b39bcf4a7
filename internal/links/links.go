// Package links maps interface indexes to interface names for the packet
// path. NFQUEUE reports the input and output device of a packet by index;
// the engine's rules speak of device names. A Map follows link changes
// through an rtnetlink subscription (github.com/vishvananda/netlink) and
// serves lookups lock-free: readers load an immutable snapshot through an
// atomic pointer, writers publish a new copy.
package links

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Map is an interface index → name table, safe for concurrent use. The
// zero value is an empty map; Watch fills it and keeps it current.
type Map struct {
	names atomic.Pointer[map[uint32]string]
}

// Name returns the name of the interface with the given index, or "" when
// the index is unknown. It does not allocate or lock.
func (m *Map) Name(index uint32) string {
	p := m.names.Load()
	if p == nil {
		return ""
	}
	return (*p)[index]
}

// Names returns the known interface names, sorted.
func (m *Map) Names() []string {
	p := m.names.Load()
	if p == nil {
		return nil
	}
	return slices.Sorted(maps.Values(*p))
}

// Set records that index names the interface name, replacing any earlier
// name of that index.
func (m *Map) Set(index uint32, name string) {
	m.update(func(n map[uint32]string) { n[index] = name })
}

// Delete forgets the interface with the given index.
func (m *Map) Delete(index uint32) {
	m.update(func(n map[uint32]string) { delete(n, index) })
}

// update publishes a modified copy of the current snapshot. Writers are
// serialised by the compare-and-swap loop; readers never wait.
func (m *Map) update(fn func(map[uint32]string)) {
	for {
		old := m.names.Load()
		next := make(map[uint32]string)
		if old != nil {
			maps.Copy(next, *old)
		}
		fn(next)
		if m.names.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Watch lists the links of the caller's network namespace into a new Map
// and keeps it current until ctx is done. Errors of the subscription after
// start-up are passed to onErr (which may be nil); they do not stop Watch.
//
// When the subscription fails (typically ENOBUFS: a burst of link changes
// overflowed its socket, and the changes lost with it are unknown), Watch
// resubscribes after a pause, retrying with a growing pause until ctx is
// done, and rebuilds the map from a fresh listing. Failed attempts and the
// recovery are reported through onErr too.
func Watch(ctx context.Context, onErr func(error)) (*Map, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("links: network namespace: %w", err)
	}
	// The handle's socket lives in ns, so re-listing from Watch's
	// goroutine, on whatever thread, lists the same namespace.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("links: netlink handle: %w", err)
	}
	w := &watcher{
		ctx:       ctx,
		onErr:     onErr,
		m:         new(Map),
		ns:        ns,
		h:         h,
		subscribe: subscribe,
		force:     os.Geteuid() == 0,
	}
	s, _, err := w.sync()
	if err != nil {
		w.close()
		return nil, err
	}
	go w.run(s)
	return w.m, nil
}

// Tuning of the subscription.
const (
	// receiveBufferSize is asked for on the subscription's socket, five
	// times the usual default (net.core.rmem_default, 208 KiB). Without
	// SO_RCVBUFFORCE the kernel caps it at net.core.rmem_max.
	receiveBufferSize = 1 << 20
	// retryMin and retryMax bound the pause before a resubscription,
	// which doubles after each failed attempt.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// listAttempts bounds the retries of a link dump that the kernel
	// reports as interrupted by concurrent changes.
	listAttempts = 5
)

// subscribe is netlink.LinkSubscribeWithOptions. Watch reads it once, at
// start; tests replace it to make a subscription fail.
var subscribe = netlink.LinkSubscribeWithOptions

// watcher keeps a Map current; its methods run on Watch's goroutine after
// start-up.
type watcher struct {
	ctx   context.Context
	onErr func(error)
	m     *Map
	ns    netns.NsHandle  // the watched network namespace
	h     *netlink.Handle // lists the links of ns
	// subscribe is the subscribe function, read at start.
	subscribe func(chan<- netlink.LinkUpdate, <-chan struct{}, netlink.LinkSubscribeOptions) error
	// force asks for the receive buffer with SO_RCVBUFFORCE, which
	// exceeds net.core.rmem_max but needs CAP_NET_ADMIN in the initial
	// user namespace. It is tried as root and given up on EPERM.
	force bool
}

// subscription is one rtnetlink subscription to link changes.
type subscription struct {
	updates chan netlink.LinkUpdate
	done    chan struct{}
	stopped atomic.Bool // set by stop: errors from here on are ours
	// err is the last error the library reported. It is written by the
	// library's goroutine before it closes updates; read it only after
	// updates is closed.
	err error
}

// stop closes the subscription's socket and drains its updates, so that
// the library's goroutine, which closes updates when the socket is gone,
// never blocks.
func (s *subscription) stop() {
	s.stopped.Store(true)
	close(s.done)
	for range s.updates {
	}
}

// report passes err to onErr unless ctx is done.
func (w *watcher) report(err error) {
	if w.onErr != nil && w.ctx.Err() == nil {
		w.onErr(err)
	}
}

// close releases the watcher's handles.
func (w *watcher) close() {
	w.h.Close()
	w.ns.Close()
}

// sync subscribes to link changes and then replaces the map's contents with
// a fresh listing, returning the subscription and the number of links.
// Subscribing first means no change falls between the two: changes made
// meanwhile are queued and replayed in order afterwards, which is
// idempotent.
func (w *watcher) sync() (*subscription, int, error) {
	s, err := w.subscribeLinks()
	if err != nil {
		return nil, 0, fmt.Errorf("links: subscribe to link changes: %w", err)
	}
	names, err := w.list()
	if err != nil {
		s.stop()
		return nil, 0, fmt.Errorf("links: list links: %w", err)
	}
	w.m.names.Store(&names)
	return s, len(names), nil
}

// subscribeLinks opens a subscription in the watched namespace.
func (w *watcher) subscribeLinks() (*subscription, error) {
	s := &subscription{updates: make(chan netlink.LinkUpdate, 64), done: make(chan struct{})}
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			s.err = err
			if !s.stopped.Load() {
				w.report(fmt.Errorf("links: subscription: %w", err))
			}
		},
		ReceiveBufferSize:      receiveBufferSize,
		ReceiveBufferForceSize: w.force,
	}
	// The socket is opened in the namespace of the calling thread. Only
	// when that is not the watched one (the caller of Watch had its thread
	// in a namespace of its own) does the library switch namespaces, which
	// needs CAP_SYS_ADMIN.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cur, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	if !cur.Equal(w.ns) {
		opts.Namespace = &w.ns
	}
	cur.Close()
	err = w.subscribe(s.updates, s.done, opts)
	if errors.Is(err, unix.EPERM) && w.force {
		// Root without CAP_NET_ADMIN in the initial user namespace (a
		// container): settle for net.core.rmem_max. The library does not
		// close the refused socket; the garbage collector does.
		w.force, opts.ReceiveBufferForceSize = false, false
		err = w.subscribe(s.updates, s.done, opts)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// list returns the names of the links of the watched namespace by index.
func (w *watcher) list() (map[uint32]string, error) {
	for attempt := 1; ; attempt++ {
		list, err := w.h.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) && attempt < listAttempts {
			continue // links changed during the dump, which may miss some
		}
		if err != nil {
			return nil, err
		}
		names := make(map[uint32]string, len(list))
		for _, l := range list {
			a := l.Attrs()
			names[uint32(a.Index)] = a.Name
		}
		return names, nil
	}
}

// run applies the updates of s to the map until ctx is done, replacing s
// by a new subscription whenever it fails.
func (w *watcher) run(s *subscription) {
	defer w.close()
	for {
		select {
		case <-w.ctx.Done():
			s.stop()
			return
		case u, ok := <-s.updates:
			if ok {
				w.m.apply(u)
				continue
			}
			// The subscription failed; the library reported why through
			// the error callback, and changes may have been lost.
			s.stop()
			if s = w.resubscribe(s.err); s == nil {
				return
			}
		}
	}
}

// resubscribe replaces a subscription that failed with cause: it pauses,
// then syncs, retrying with a doubling pause until it succeeds or ctx is
// done (then it returns nil).
func (w *watcher) resubscribe(cause error) *subscription {
	pause := retryMin
	for attempt := 1; ; attempt++ {
		select {
		case <-w.ctx.Done():
			return nil
		case <-time.After(pause):
		}
		s, n, err := w.sync()
		if err == nil {
			w.report(fmt.Errorf("links: subscription lost (%v); resubscribed and re-listed %d links", cause, n))
			return s
		}
		w.report(fmt.Errorf("links: subscription lost (%v); attempt %d to resubscribe: %w", cause, attempt, err))
		pause = min(2*pause, retryMax)
	}
}

// apply folds one rtnetlink link message into the map.
func (m *Map) apply(u netlink.LinkUpdate) {
	a := u.Attrs()
	if a == nil {
		return
	}
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		if m.Name(uint32(a.Index)) != a.Name {
			m.Set(uint32(a.Index), a.Name)
		}
	case unix.RTM_DELLINK:
		m.Delete(uint32(a.Index))
	}
}
