package links

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/vishvananda/netlink"
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
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "wan0p"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName("wan0")
	if err != nil {
		t.Fatal(err)
	}
	idx := uint32(l.Attrs().Index)
	waitName(t, m, idx, "wan0")
	if err := netlink.LinkSetName(l, "uplink"); err != nil {
		t.Fatal(err)
	}
	waitName(t, m, idx, "uplink")
	if err := netlink.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	waitName(t, m, idx, "")
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
