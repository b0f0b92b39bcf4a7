package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
)

// TestBulkTransferIsAlive: an offloaded connection is first read by the
// keeper while idle (kernel timeout: established, 5 days). A bulk
// transfer then starts; while data is unacknowledged the kernel refreshes
// the timeout to nf_conntrack_tcp_timeout_unacknowledged (300 s) on the
// data's packets, so the expiry moves days earlier. The keeper must take
// that move for traffic: taken for idleness, the busiest connection would
// never be touched, and its engine session (and its FTP control parent,
// kept by keepParent) would expire after tcp-idle in the middle of the
// transfer. The kernel's entry is made and moved with conntrack(8), as
// its tracker would.
func TestBulkTransferIsAlive(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "conntrack", "iptables")
	// A conntrack rule loads the kernel's conntrack in the namespace.
	nstest.Run(t, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
	entry := []string{"-p", "tcp", "-s", "198.51.100.2", "-d", "192.0.2.10", "--sport", "40000", "--dport", "9000"}
	nstest.Run(t, "conntrack", append([]string{"-I"}, append(entry, "--state", "ESTABLISHED", "--status", "SEEN_REPLY,ASSURED",
		"-t", "432000", "-m", "0x10000000")...)...)
	key := conntrack.Key{Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("192.0.2.10"),
		SrcPort: 40000, DstPort: 9000, Proto: 6}
	k, err := newKeeper(0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	poll := func() time.Time {
		t.Helper()
		now := time.Now()
		if err := k.poll(now); err != nil {
			t.Fatal(err)
		}
		return now
	}
	t0 := poll()
	time.Sleep(1200 * time.Millisecond)
	t1 := poll() // idle: the expiry stays where it was
	if k.alive.Load().since(key, t0) {
		t.Fatal("an idle connection was found alive")
	}
	// Data in flight: the kernel's timeout drops to 300 s.
	nstest.Run(t, "conntrack", append([]string{"-U"}, append(entry, "-t", "300")...)...)
	t2 := poll()
	if !k.alive.Load().since(key, t1) {
		t.Error("a connection whose expiry moved days earlier (data in flight) was not found alive")
	}
	// More data, still in flight: the expiry moves later again (by more
	// than the second the kernel rounds to).
	time.Sleep(2200 * time.Millisecond)
	nstest.Run(t, "conntrack", append([]string{"-U"}, append(entry, "-t", "300")...)...)
	poll()
	if !k.alive.Load().since(key, t2) {
		t.Error("a connection whose expiry moved later was not found alive")
	}
}
