package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
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
	if finished := (conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 40001, DstPort: 2100, Proto: 6}); a.since(finished, time.Time{}) || a.isEstablished(finished) || !a.isFinished(finished) {
		t.Fatal("connection in TIME_WAIT reported alive or established, or not as finished")
	}
	if a.isFinished(key) {
		t.Fatal("established connection reported as finished")
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

// TestWorkerAccountsFinishedTransfer: a transfer offloaded at its SYN that
// began and ended between two kernel reads is never found alive, but the
// kernel's finished entry holds its counters, and the session shows them
// (a new connection on its ports would have replaced the entry). An
// established entry never found alive since the session began (an earlier
// connection's) gives it nothing.
func TestWorkerAccountsFinishedTransfer(t *testing.T) {
	rs, err := rules.Parse("test.rules", []byte(staleRules))
	if err != nil {
		t.Fatal(err)
	}
	e := inspect.New(rs, inspect.Options{FastPath: true})
	c, s := netip.MustParseAddrPort("198.51.100.2:40000"), netip.MustParseAddrPort("192.0.2.10:9000")
	c2 := netip.MustParseAddrPort("198.51.100.2:40001")
	t0 := time.Now()
	for _, src := range []netip.AddrPort{c, c2} {
		if v := e.Process(packettest.TCP(src, s, packettest.SYN, 1000, 0, nil), inspect.Meta{Time: t0, In: "wan0"}); !v.Offload {
			t.Fatalf("SYN not offloaded: %+v", v)
		}
	}
	flow := func(src netip.AddrPort, state uint8) kconntrack.Flow {
		k := conntrack.Key{Src: src.Addr(), Dst: s.Addr(), SrcPort: src.Port(), DstPort: s.Port(), Proto: 6}
		return kconntrack.Flow{Key: k, Reply: k.Reverse(), Mark: 0x10000000, TCPState: state,
			Packets: [2]uint64{200, 400}, Bytes: [2]uint64{10 << 10, 20 << 20}, Counted: true}
	}
	now := t0.Add(5 * time.Second)
	k := &keeper{}
	k.alive.Store(&aliveSet{at: now, conns: map[conntrack.Key]kernelConn{
		flow(c, kconntrack.TCPTimeWait).Forward():     {finished: true, flow: flow(c, kconntrack.TCPTimeWait)},
		flow(c2, kconntrack.TCPEstablished).Forward(): {established: true, flow: flow(c2, kconntrack.TCPEstablished)},
	}})
	(&worker{e: e, keep: k}).Tick(now)
	for _, si := range e.Sessions() {
		switch si.Key.SrcPort {
		case c.Port():
			if si.Bytes != [2]uint64{10 << 10, 20 << 20} {
				t.Errorf("finished transfer shows %v bytes, want the kernel's", si.Bytes)
			}
		case c2.Port():
			if si.Bytes[1] != 0 || si.State == conntrack.StateEstablished.String() {
				t.Errorf("session given an earlier connection's entry: %v bytes, state %s", si.Bytes, si.State)
			}
		}
	}
}
