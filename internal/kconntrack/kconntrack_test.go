package kconntrack

import (
	"net"
	"net/netip"
	"testing"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func key(proto uint8, src string, sport uint16, dst string, dport uint16) conntrack.Key {
	return conntrack.Key{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport, Proto: proto}
}

func flow(k conntrack.Key) *netlink.ConntrackFlow {
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET}
	if k.Src.Is6() {
		f.FamilyType = unix.AF_INET6
	}
	f.Forward = netlink.IPTuple{SrcIP: net.IP(k.Src.AsSlice()), DstIP: net.IP(k.Dst.AsSlice()),
		SrcPort: k.SrcPort, DstPort: k.DstPort, Protocol: k.Proto}
	f.Reverse = netlink.IPTuple{SrcIP: net.IP(k.Dst.AsSlice()), DstIP: net.IP(k.Src.AsSlice()),
		SrcPort: k.DstPort, DstPort: k.SrcPort, Protocol: k.Proto}
	return f
}

func TestKeySet(t *testing.T) {
	data := key(6, "198.51.100.2", 40001, "192.0.2.10", 30001)
	ping := key(1, "2001:db8:1::2", 7, "2001:db8:2::10", 7)
	var s keySet
	s.add(data)
	s.add(ping)
	for _, tc := range []struct {
		k    conntrack.Key
		want bool
	}{
		{data, true},
		{data.Reverse(), true}, // the kernel saw the other side first
		{key(6, "198.51.100.2", 40002, "192.0.2.10", 30001), false},
		{key(17, "198.51.100.2", 40001, "192.0.2.10", 30001), false},
		{key(1, "2001:db8:1::2", 0, "2001:db8:2::10", 0), true},
		{key(1, "2001:db8:1::3", 0, "2001:db8:2::10", 0), false},
	} {
		if got := s.MatchConntrackFlow(flow(tc.k)); got != tc.want {
			t.Errorf("%v: match %v, want %v", tc.k, got, tc.want)
		}
	}
	if s.MatchConntrackFlow(&netlink.ConntrackFlow{}) {
		t.Error("a flow without addresses matched")
	}
	if n, err := Delete(nil); n != 0 || err != nil {
		t.Errorf("Delete(nil) = %d, %v", n, err)
	}
}

// TestDeleteKernel creates kernel conntrack entries in a private network
// namespace and deletes some of them by key.
func TestDeleteKernel(t *testing.T) {
	nstest.Enter(t)
	keys := []conntrack.Key{
		key(6, "198.51.100.2", 40001, "192.0.2.10", 30001),
		key(6, "198.51.100.2", 40002, "192.0.2.10", 30002),
		key(17, "2001:db8:1::2", 5000, "2001:db8:2::10", 41000),
	}
	for _, k := range keys {
		f := flow(k)
		f.TimeOut = 100
		if k.Proto == 6 {
			f.ProtoInfo = &netlink.ProtoInfoTCP{State: 3} // established
		}
		if err := netlink.ConntrackCreate(netlink.ConntrackTable, netlink.InetFamily(f.FamilyType), f); err != nil {
			nstest.Unavailable(t, "cannot create conntrack entries: "+err.Error())
		}
	}
	// The first by its key, the IPv6 one by its reverse key.
	n, err := Delete([]conntrack.Key{keys[0], keys[2].Reverse()})
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2", n, err)
	}
	var left []*netlink.ConntrackFlow
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		fl, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, fl...)
	}
	if len(left) != 1 || left[0].Forward.SrcPort != 40002 {
		t.Errorf("left in the kernel: %v", left)
	}
}
