package api

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/inspectd/inspectd/inspect"
)

// DefaultWatchBuffer is how many events a watcher may fall behind before
// events are dropped for it.
const DefaultWatchBuffer = 1024

// Hub fans engine events out to watchers. Publish is the callback to give
// every engine's Subscribe: it never blocks, and costs one atomic load
// when nobody watches. A watcher that reads too slowly loses events (they
// are counted) instead of slowing the packet path.
type Hub struct {
	mu     sync.Mutex                 // serialises changes to watchers
	subs   atomic.Pointer[[]*Watcher] // copy on write
	lost   atomic.Uint64
	buffer int
}

// NewHub returns a hub whose watchers buffer up to buffer events each
// (DefaultWatchBuffer when buffer <= 0).
func NewHub(buffer int) *Hub {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	return &Hub{buffer: buffer}
}

// Publish hands ev to every watcher that has room for it.
func (h *Hub) Publish(ev inspect.Event) {
	p := h.subs.Load()
	if p == nil {
		return
	}
	for _, w := range *p {
		select {
		case w.c <- ev:
		default:
			w.lost.Add(1)
			h.lost.Add(1)
		}
	}
}

// wants reports whether anyone watches: the engines build no event for
// the hub otherwise.
func (h *Hub) wants(inspect.EventKind, bool) bool {
	p := h.subs.Load()
	return p != nil && len(*p) > 0
}

// Lost returns the number of events dropped for all watchers so far.
func (h *Hub) Lost() uint64 { return h.lost.Load() }

// Watch registers a new watcher. Close it when done.
func (h *Hub) Watch() *Watcher {
	w := &Watcher{c: make(chan inspect.Event, h.buffer), hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	var next []*Watcher
	if p := h.subs.Load(); p != nil {
		next = slices.Clone(*p)
	}
	next = append(next, w)
	h.subs.Store(&next)
	return w
}

// Watcher receives the events published after it was registered.
type Watcher struct {
	c    chan inspect.Event
	lost atomic.Uint64
	hub  *Hub
	once sync.Once
}

// C delivers the events.
func (w *Watcher) C() <-chan inspect.Event { return w.c }

// Lost returns how many events this watcher missed because its buffer
// was full.
func (w *Watcher) Lost() uint64 { return w.lost.Load() }

// Close unregisters the watcher. C is not closed (a publisher may be
// sending at that moment); stop reading it.
func (w *Watcher) Close() {
	w.once.Do(func() {
		h := w.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		p := h.subs.Load()
		if p == nil {
			return
		}
		next := slices.DeleteFunc(slices.Clone(*p), func(x *Watcher) bool { return x == w })
		h.subs.Store(&next)
	})
}
