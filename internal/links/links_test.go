package links

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestMapSetDelete(t *testing.T) {
	var m Map
	if got := m.Name(1); got != "" {
		t.Fatalf("empty map: Name(1) = %q", got)
	}
	m.Set(1, "lo")
	m.Set(7, "wan0")
	m.Set(7, "wan1")
	if got := m.Name(7); got != "wan1" {
		t.Fatalf("Name(7) = %q, want wan1", got)
	}
	if got := m.Names(); !slices.Equal(got, []string{"lo", "wan1"}) {
		t.Fatalf("Names() = %q", got)
	}
	m.Delete(7)
	if got := m.Name(7); got != "" {
		t.Fatalf("after Delete: Name(7) = %q", got)
	}
}

func TestMapConcurrent(t *testing.T) {
	var m Map
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				m.Set(uint32(w*1000+i), "x")
				_ = m.Name(uint32(i))
			}
		})
	}
	wg.Wait()
	if n := len(m.Names()); n != 800 {
		t.Fatalf("%d names after concurrent Set, want 800", n)
	}
}

func TestNameDoesNotAllocate(t *testing.T) {
	var m Map
	m.Set(3, "lan0")
	if n := testing.AllocsPerRun(100, func() { _ = m.Name(3) }); n != 0 {
		t.Fatalf("Name allocates %v times", n)
	}
}

// TestWatch follows a veth link through creation, renaming and deletion
// in a private network namespace.
func TestWatch(t *testing.T) {
	nstest.Enter(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Watch(ctx, func(err error) { t.Errorf("watch: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Name(1); got != "lo" {
		t.Fatalf("Name(1) = %q, want lo", got)
	}
	followVeth(t, m)
}

// followVeth creates a veth pair wan0/wan0p, renames wan0 to uplink and
// deletes it, waiting for m to follow each step.
func followVeth(t *testing.T, m *Map) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "wan0p"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	idx := linkIndex(t, "wan0")
	waitName(t, m, idx, "wan0")
	if !slices.Contains(m.Names(), "wan0p") {
		t.Errorf("Names() = %q, want wan0p among them", m.Names())
	}
	if err := netlink.LinkSetName(v, "uplink"); err != nil {
		t.Fatal(err)
	}
	waitName(t, m, idx, "uplink")
	if err := netlink.LinkDel(v); err != nil {
		t.Fatal(err)
	}
	waitName(t, m, idx, "")
}

// TestWatchResubscribes makes the subscription fail for real: its socket,
// given the smallest receive buffer, overflows (ENOBUFS) while its
// messages are held back. Link changes lost with it (a deletion, a
// rename, a burst of new links) must be in the map after Watch has
// resubscribed and re-listed, and later changes must be followed again.
func TestWatchResubscribes(t *testing.T) {
	nstest.Enter(t)
	for _, name := range []string{"gone0", "keep0"} {
		addVeth(t, name)
	}
	gone, keep := linkIndex(t, "gone0"), linkIndex(t, "keep0")

	// release lets the first subscription's messages through; it is
	// called at the latest when the test ends, so that Watch can stop.
	released := make(chan struct{})
	release := sync.OnceFunc(func() { close(released) })
	defer release()
	var opts []netlink.LinkSubscribeOptions // of the subscriptions asked for
	var optsMu sync.Mutex
	subscribe = func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, o netlink.LinkSubscribeOptions) error {
		optsMu.Lock()
		opts = append(opts, o)
		first := len(opts) == 1
		optsMu.Unlock()
		if !first {
			return netlink.LinkSubscribeWithOptions(ch, done, o)
		}
		// The first subscription: the smallest socket buffer, and its
		// messages wait for release (the library's goroutine blocks on
		// the first one and stops reading the socket).
		o.ReceiveBufferSize, o.ReceiveBufferForceSize = 1, false
		held := make(chan netlink.LinkUpdate)
		if err := netlink.LinkSubscribeWithOptions(held, done, o); err != nil {
			return err
		}
		go func() {
			defer close(ch)
			<-released
			for u := range held {
				ch <- u
			}
		}()
		return nil
	}
	errs := make(chan error, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Watch(ctx, func(err error) {
		select {
		case errs <- err:
		default:
			t.Errorf("watch: too many errors; dropped %v", err)
		}
	})
	subscribe = netlink.LinkSubscribeWithOptions // Watch has read it
	if err != nil {
		t.Fatal(err)
	}
	if m.Name(gone) != "gone0" || m.Name(keep) != "keep0" {
		t.Fatalf("before the failure: Names() = %q", m.Names())
	}

	// Overflow the held subscription, then change links it will miss.
	const pairs = 100
	for i := range pairs {
		addVeth(t, fmt.Sprintf("burst%d", i))
	}
	if err := netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: int(gone)}}); err != nil {
		t.Fatal(err) // gone0p goes with it
	}
	if err := netlink.LinkSetName(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: int(keep)}}, "kept0"); err != nil {
		t.Fatal(err)
	}
	release()

	wantErrs := []string{
		"links: subscription: Receive failed: no buffer space available",
		fmt.Sprintf("links: subscription lost (Receive failed: no buffer space available); resubscribed and re-listed %d links", 2*pairs+3),
	}
	for _, want := range wantErrs {
		select {
		case err := <-errs:
			if err.Error() != want {
				t.Fatalf("onErr(%q), want %q", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no onErr(%q) within 10s", want)
		}
	}
	if got := m.Name(gone); got != "" {
		t.Errorf("deleted while lost: Name(%d) = %q, want \"\"", gone, got)
	}
	if got := m.Name(keep); got != "kept0" {
		t.Errorf("renamed while lost: Name(%d) = %q, want kept0", keep, got)
	}
	if got := len(m.Names()); got != 2*pairs+3 {
		t.Errorf("%d names after re-listing, want %d (lo, kept0, keep0p and the burst)", got, 2*pairs+3)
	}
	for i := range pairs {
		for _, name := range []string{fmt.Sprintf("burst%d", i), fmt.Sprintf("burst%dp", i)} {
			if got := m.Name(linkIndex(t, name)); got != name {
				t.Fatalf("created while lost: Name = %q, want %q", got, name)
			}
		}
	}
	// The new subscription follows changes again.
	followVeth(t, m)

	optsMu.Lock()
	defer optsMu.Unlock()
	if len(opts) != 2 {
		t.Fatalf("%d subscriptions, want 2", len(opts))
	}
	for i, o := range opts {
		if o.ReceiveBufferSize != 1<<20 || o.ReceiveBufferForceSize != (os.Geteuid() == 0) {
			t.Errorf("subscription %d: receive buffer %d, forced %v", i, o.ReceiveBufferSize, o.ReceiveBufferForceSize)
		}
	}
	select {
	case err := <-errs:
		t.Errorf("watch: %v", err)
	default:
	}
}

// TestWatchUnforcedBuffer checks that Watch settles for an ordinary
// receive buffer where SO_RCVBUFFORCE is refused (root in a container).
func TestWatchUnforcedBuffer(t *testing.T) {
	nstest.Enter(t)
	var forced []bool
	subscribe = func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, o netlink.LinkSubscribeOptions) error {
		forced = append(forced, o.ReceiveBufferForceSize)
		if o.ReceiveBufferForceSize {
			return unix.EPERM
		}
		return netlink.LinkSubscribeWithOptions(ch, done, o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Watch(ctx, func(err error) { t.Errorf("watch: %v", err) })
	subscribe = netlink.LinkSubscribeWithOptions
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(forced, []bool{true, false}) {
		t.Fatalf("subscriptions forced: %v, want [true false]", forced)
	}
	followVeth(t, m)
}

// addVeth creates a veth pair: name and its peer name+"p".
func addVeth(t *testing.T, name string) {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
		t.Fatal(err)
	}
}

func linkIndex(t *testing.T, name string) uint32 {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(l.Attrs().Index)
}

func waitName(t *testing.T, m *Map, idx uint32, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.Name(idx) != want {
		if time.Now().After(deadline) {
			t.Fatalf("Name(%d) = %q, want %q", idx, m.Name(idx), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
