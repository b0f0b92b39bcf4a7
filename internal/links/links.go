// Package links maps interface indexes to interface names for the packet
// path. NFQUEUE reports the input and output device of a packet by index;
// the engine's rules speak of device names. A Map follows link changes
// through an rtnetlink subscription (github.com/vishvananda/netlink) and
// serves lookups lock-free: readers load an immutable snapshot through an
// atomic pointer, writers publish a new copy.
package links

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/vishvananda/netlink"
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
func Watch(ctx context.Context, onErr func(error)) (*Map, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	// Subscribe before listing, so that no change falls between the two:
	// changes made meanwhile are queued and replayed in order afterwards,
	// which is idempotent.
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if onErr != nil && ctx.Err() == nil {
				onErr(fmt.Errorf("links: subscription: %w", err))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("links: subscribe to link changes: %w", err)
	}
	list, err := netlink.LinkList()
	if err != nil {
		close(done)
		return nil, fmt.Errorf("links: list links: %w", err)
	}
	m := new(Map)
	initial := make(map[uint32]string, len(list))
	for _, l := range list {
		a := l.Attrs()
		initial[uint32(a.Index)] = a.Name
	}
	m.names.Store(&initial)
	go func() {
		for {
			select {
			case <-ctx.Done():
				// Closing done closes the socket; the subscription then
				// closes updates. Drain it so its sender never blocks.
				close(done)
				for range updates {
				}
				return
			case u, ok := <-updates:
				if !ok { // the subscription failed; onErr was told
					close(done)
					return
				}
				m.apply(u)
			}
		}
	}()
	return m, nil
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
