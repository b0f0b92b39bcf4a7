package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
)

// TestKeeper drives the keeper with connections made by hand in the
// kernel's table: a marked connection counts as alive when first seen
// with the timeout the kernel sets at a packet (an entry whose timeout
// ran down for days is not: its traffic is old), and when its timeout was
// refreshed; unmarked ones are ignored; one
// through destination NAT is found by the addresses the forward path
// sees; a simultaneous open's SYN_SENT2 is not established.
func TestKeeper(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "conntrack")
	flow := []string{"-p", "tcp", "-s", "198.51.100.2", "-d", "192.0.2.2", "--sport", "40000", "--dport", "2100"}
	// 432000 s is nf_conntrack_tcp_timeout_established: a packet just set it.
	nstest.Run(t, "conntrack", append(append([]string{"-I"}, flow...), "--state", "ESTABLISHED", "-t", "432000", "-m", "0x10000000")...)
	nstest.Run(t, "conntrack", "-I", "-p", "tcp", "-s", "198.51.100.2", "-d", "192.0.2.2", "--sport", "40004", "--dport", "2100",
		"--state", "ESTABLISHED", "-t", "500", "-m", "0x10000000") // its last packet was days ago
	nstest.Run(t, "conntrack", "-I", "-p", "udp", "-s", "198.51.100.2", "-d", "192.0.2.2", "--sport", "5", "--dport", "6", "-t", "500")
	nstest.Run(t, "conntrack", "-I", "-p", "tcp", "-s", "198.51.100.2", "-d", "192.0.2.2", "--sport", "40001", "--dport", "2100",
		"--state", "TIME_WAIT", "-t", "500", "-m", "0x10000000")
	// 198.51.100.2 asked for 203.0.113.1:80, forwarded to 192.0.2.2:2100.
	nstest.Run(t, "conntrack", "-I", "-p", "tcp", "-s", "198.51.100.2", "-d", "203.0.113.1", "--sport", "40002", "--dport", "80",
		"-r", "192.0.2.2", "-q", "198.51.100.2", "--reply-port-src", "2100", "--reply-port-dst", "40002",
		"--state", "ESTABLISHED", "-t", "432000", "-m", "0x10000000")
	nstest.Run(t, "conntrack", "-I", "-p", "tcp", "-s", "198.51.100.2", "-d", "192.0.2.2", "--sport", "40003", "--dport", "2100",
		"--state", "LISTEN", "-t", "500", "-m", "0x10000000") // LISTEN is SYN_SENT2's old name
	k, err := newKeeper(0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	key := conntrack.Key{Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("192.0.2.2"),
		SrcPort: 40000, DstPort: 2100, Proto: 6}
	udp := conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 5, DstPort: 6, Proto: 17}

	t0 := time.Now()
	if err := k.poll(t0); err != nil {
		t.Fatal(err)
	}
	a := k.alive.Load()
	if !a.since(key, t0.Add(-time.Second)) || !a.since(key.Reverse(), t0.Add(-time.Second)) {
		t.Fatalf("new marked connection not alive: %+v", a)
	}
	if a.since(udp, time.Time{}) {
		t.Fatal("unmarked connection reported")
	}
	if finished := (conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 40001, DstPort: 2100, Proto: 6}); a.since(finished, time.Time{}) || a.isEstablished(finished) {
		t.Fatal("connection in TIME_WAIT reported")
	}
	if !a.isEstablished(key) {
		t.Fatal("established connection not reported as established")
	}
	if old := (conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 40004, DstPort: 2100, Proto: 6}); a.since(old, time.Time{}) || !a.isEstablished(old) {
		t.Fatal("a connection first seen days after its last packet counted as alive (or was not reported)")
	}
	nat := conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 40002, DstPort: 2100, Proto: 6}
	if !a.since(nat, t0.Add(-time.Second)) || !a.isEstablished(nat) {
		t.Fatalf("connection through destination NAT not found by its forward-path key %v: %+v", nat, a.conns)
	}
	if synSent2 := (conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 40003, DstPort: 2100, Proto: 6}); a.isEstablished(synSent2) {
		t.Fatal("simultaneous open in SYN_SENT2 reported as established")
	}
	t1 := t0.Add(time.Second)
	if err := k.poll(t1); err != nil {
		t.Fatal(err)
	}
	if k.alive.Load().since(key, t0) {
		t.Fatal("connection with an unchanged timeout found alive again")
	}
	nstest.Run(t, "conntrack", append([]string{"-U", "-t", "600"}, flow...)...)
	t2 := t1.Add(time.Second)
	if err := k.poll(t2); err != nil {
		t.Fatal(err)
	}
	if !k.alive.Load().since(key, t1) {
		t.Fatal("refreshed connection not found alive")
	}
	nstest.Run(t, "conntrack", append([]string{"-D"}, flow...)...)
	if err := k.poll(t2.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if k.alive.Load().since(key, time.Time{}) {
		t.Fatal("connection gone from the kernel still reported")
	}
}
