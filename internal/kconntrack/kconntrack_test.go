package kconntrack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
	// Through destination NAT: the client asked for 203.0.113.1:80; the
	// forward path sees the connection to 192.0.2.10:30001.
	nat := flow(key(6, "198.51.100.2", 40001, "203.0.113.1", 80))
	nat.Reverse = flow(data.Reverse()).Forward
	if !s.MatchConntrackFlow(nat) {
		t.Error("a flow through destination NAT did not match its forward-path key")
	}
	if got := (Flow{Key: key(6, "198.51.100.2", 40001, "203.0.113.1", 80), Reply: data.Reverse()}).Forward(); got != data {
		t.Errorf("Forward = %v, want %v", got, data)
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

// TestDump creates kernel conntrack entries in a private network namespace
// and reads them back whole and filtered by mark.
func TestDump(t *testing.T) {
	nstest.Enter(t)
	const bit = 0x10000000
	tcp := key(6, "198.51.100.2", 40001, "192.0.2.10", 30001)
	udp := key(17, "2001:db8:1::2", 5000, "2001:db8:2::10", 41000)
	other := key(6, "198.51.100.3", 40002, "192.0.2.10", 21)
	for _, c := range []struct {
		k    conntrack.Key
		mark uint32
	}{{tcp, bit | 0x3}, {udp, bit}, {other, 0x3}} {
		f := flow(c.k)
		f.TimeOut = 100
		f.Mark = c.mark
		if c.k.Proto == 6 {
			f.ProtoInfo = &netlink.ProtoInfoTCP{State: TCPEstablished}
		}
		if err := netlink.ConntrackCreate(netlink.ConntrackTable, netlink.InetFamily(f.FamilyType), f); err != nil {
			nstest.Unavailable(t, "cannot create conntrack entries: "+err.Error())
		}
	}
	tab, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	read := func(mark uint32) map[conntrack.Key]Flow {
		got := make(map[conntrack.Key]Flow)
		if err := tab.Dump(mark, func(f Flow) { got[f.Key] = f }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	all := read(0)
	if len(all) != 3 {
		t.Fatalf("Dump(0) = %v, want 3 entries", all)
	}
	f := all[tcp]
	if f.Mark != bit|0x3 || f.TCPState != TCPEstablished || f.Timeout == 0 || f.Timeout > 100 {
		t.Errorf("tcp entry %+v", f)
	}
	if f := all[udp]; f.Mark != bit || f.TCPState != 0 || f.Key != udp {
		t.Errorf("udp entry %+v", f)
	}
	marked := read(bit)
	if len(marked) != 2 || marked[tcp].Key != tcp || marked[udp].Key != udp {
		t.Errorf("Dump(bit) = %v, want the tcp and udp entries", marked)
	}
}

// TestParseFlowMalformed feeds cut and corrupt messages to the parser: it
// reports no flow for them and never panics.
func TestParseFlowMalformed(t *testing.T) {
	attr := func(typ uint16, v []byte) []byte {
		b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	ip := attr(ctaTupleIP|0x8000, append(attr(ctaIPv4Src, []byte{198, 51, 100, 2}), attr(ctaIPv4Dst, []byte{192, 0, 2, 10})...))
	proto := attr(ctaTupleProto|0x8000, append(append(attr(ctaProtoNum, []byte{6}), attr(ctaProtoSrcPort, []byte{0x9c, 0x41})...),
		attr(ctaProtoDstPort, []byte{0, 21})...))
	msg := append([]byte{unix.AF_INET, 0, 0, 0}, attr(1|0x8000, append(ip, proto...))...)
	msg = append(msg, attr(8, []byte{0x10, 0, 0, 0})...)
	f, ok := parseFlow(msg)
	want := key(6, "198.51.100.2", 40001, "192.0.2.10", 21)
	if !ok || f.Key != want || f.Mark != 0x10000000 {
		t.Fatalf("parseFlow = %+v, %v; want key %v", f, ok, want)
	}
	for i := range msg {
		parseFlow(msg[:i]) // must not panic
		bad := append([]byte(nil), msg...)
		bad[i] ^= 0xff
		parseFlow(bad)
	}
	if _, ok := parseFlow(msg[:20]); ok {
		t.Error("a cut tuple parsed")
	}
}

// TestGetCounters sends UDP over loopback in a private network namespace
// with the kernel's accounting on, and reads the flow's counters back by
// key in either direction.
func TestGetCounters(t *testing.T) {
	nstest.Enter(t)
	if _, err := EnableAccounting(t.TempDir()); err != nil {
		nstest.Unavailable(t, "conntrack accounting: "+err.Error())
	}
	// A conntrack rule makes the kernel track this namespace's traffic.
	nstest.Run(t, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialUDP("udp4", nil, ln.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		if _, err := c.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	la, ra := c.LocalAddr().(*net.UDPAddr), ln.LocalAddr().(*net.UDPAddr)
	k := key(17, la.IP.String(), uint16(la.Port), ra.IP.String(), uint16(ra.Port))
	tab, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	for _, q := range []conntrack.Key{k, k.Reverse()} {
		f, ok, err := tab.Get(q)
		if err != nil || !ok {
			t.Fatalf("Get(%v) = %v, %v", q, ok, err)
		}
		if f.Key != k || !f.Counted || f.Packets != [2]uint64{3, 0} || f.Bytes != [2]uint64{3 * 128, 0} {
			t.Errorf("Get(%v) = %+v; want 3 packets of 128 bytes (IPv4, UDP, 100 bytes) original", q, f)
		}
	}
	if _, ok, err := tab.Get(key(17, "127.0.0.1", 1, "127.0.0.1", 2)); ok || err != nil {
		t.Errorf("Get of an unknown flow = %v, %v", ok, err)
	}
}

// TestAccountingRestore checks that the accounting setting is restored
// as found, also by the run after one that crashed with it turned on.
func TestAccountingRestore(t *testing.T) {
	nstest.Enter(t)
	// Tracking anything loads conntrack, which makes the sysctl appear.
	nstest.Run(t, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
	dir := t.TempDir()
	setting := func() string {
		b, err := os.ReadFile(accountingPath)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := setting(); got != "0" {
		t.Fatalf("accounting %s in a new namespace", got)
	}
	if _, err := EnableAccounting(dir); err != nil { // a run that crashes: no restore
		t.Fatal(err)
	}
	if got := setting(); got != "1" {
		t.Fatalf("accounting %s after EnableAccounting", got)
	}
	restore, err := EnableAccounting(dir) // the next run finds the note
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if got := setting(); got != "0" {
		t.Errorf("accounting %s after the second run's restore; want 0, as the first run found it", got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	// Turned on by the operator: left on.
	if err := os.WriteFile(accountingPath, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restore, err = EnableAccounting(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if got := setting(); got != "1" {
		t.Errorf("accounting %s after restore; want 1, as the operator set it", got)
	}
}

// TestLiberalTCP reads the namespace's nf_conntrack_tcp_be_liberal.
func TestLiberalTCP(t *testing.T) {
	nstest.Enter(t)
	// A conntrack rule loads the kernel's conntrack, and its sysctls.
	nstest.Run(t, "iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
	for _, v := range []string{"1", "0"} {
		if err := os.WriteFile(liberalPath, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := LiberalTCP(); err != nil || got != (v == "1") {
			t.Errorf("be_liberal %s: LiberalTCP() = %v, %v", v, got, err)
		}
	}
}
