package rules

import (
	"net/netip"
	"testing"

	"github.com/inspectd/inspectd/internal/decode"
)

const matchSrc = `
interface wan wan0
set servers { 192.0.2.10 2001:db8:2::10 }
set bad-hosts { 203.0.113.0/24 2001:db8:bad::/48 }
set many { 192.0.2.100 192.0.2.102 192.0.2.104 192.0.2.106 192.0.2.108 192.0.2.110 192.0.2.112 192.0.2.114 192.0.2.116 192.0.2.118 2001:db8:5::/64 2001:db8:7::/64 2001:db8:9::/64 2001:db8:b::/64 2001:db8:d::/64 2001:db8:f::/64 2001:db8:11::/64 2001:db8:13::/64 2001:db8:15::/64 }
ports web { 80 443 8000-8080 }
ports spread { 10 20 30 40 50 60 70 80 90 100 110 }
in on wan default deny log {
    deny any from @bad-hosts to any log                          # 0
    permit tcp from any to @servers port { 21 2121 } inspect ftp  # 1
    permit udp from any to @servers port 69 inspect tftp          # 2
    permit icmp from any to any type echo-request                 # 3
    permit icmpv6 from any to any type { echo-request 1 }         # 4
    permit tcp from 198.51.100.0/24 port 1024-65535 to any port @web  # 5
    deny tcp from any to 192.0.2.0/24 port 22                     # 6
    permit tcp from any to 192.0.2.0/24 port 22                   # 7 (shadowed)
    permit udp from !198.51.100.0/24 to 192.0.2.53 port !{ 0-52 54-65535 }  # 8
    permit tcp from any to @many port @spread                     # 9
    permit any from 2001:db8:1::/64 to 2001:db8:2::/64            # 10
    permit tcp from any to ::/0 port 9000                          # 11
}
`

func flow(proto uint8, src string, sport uint16, dst string, dport uint16) *Flow {
	return &Flow{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport}
}

func icmpFlow(proto uint8, src, dst string, typ uint8) *Flow {
	f := flow(proto, src, 0, dst, 0)
	f.ICMPType = typ
	return f
}

func TestMatch(t *testing.T) {
	rs := mustParse(t, matchSrc)
	b := rs.Blocks[0]
	const (
		tcp    = decode.ProtoTCP
		udp    = decode.ProtoUDP
		icmp   = decode.ProtoICMP
		icmpv6 = decode.ProtoICMPv6
	)
	tests := []struct {
		name string
		f    *Flow
		want int // rule index, -1 for no match (default)
	}{
		{"ftp v4", flow(tcp, "198.51.100.7", 40000, "192.0.2.10", 21), 1},
		{"ftp alt port v6", flow(tcp, "2001:db8:1::7", 40000, "2001:db8:2::10", 2121), 1},
		{"ftp to other host", flow(tcp, "198.51.100.7", 40000, "192.0.2.11", 21), -1},
		{"ftp port over udp", flow(udp, "198.51.100.7", 40000, "192.0.2.10", 21), -1},
		{"tftp", flow(udp, "198.51.100.7", 40000, "192.0.2.10", 69), 2},
		{"tftp v6", flow(udp, "2001:db8:1::7", 40000, "2001:db8:2::10", 69), 2},
		{"bad host first match", flow(tcp, "203.0.113.9", 40000, "192.0.2.10", 21), 0},
		{"bad host v6 any proto", flow(47, "2001:db8:bad:1::1", 0, "2001:db8:2::10", 0), 0},
		{"echo request", icmpFlow(icmp, "198.51.100.7", "192.0.2.10", 8), 3},
		{"echo reply not a new flow", icmpFlow(icmp, "198.51.100.7", "192.0.2.10", 0), -1},
		{"icmpv6 echo", icmpFlow(icmpv6, "2001:db8:1::7", "2001:db8:2::10", 128), 4},
		{"icmpv6 unreachable", icmpFlow(icmpv6, "2001:db8:1::7", "2001:db8:2::10", 1), 4},
		{"icmpv6 type 8 is not echo", icmpFlow(icmpv6, "2001:db8:1::7", "2001:db8:2::10", 8), 10},
		{"icmp type 128 is not v6 echo", icmpFlow(icmp, "198.51.100.7", "192.0.2.10", 128), -1},
		{"web from range", flow(tcp, "198.51.100.7", 1024, "192.0.2.80", 8080), 5},
		{"web low source port", flow(tcp, "198.51.100.7", 1023, "192.0.2.80", 443), -1},
		{"web 8081", flow(tcp, "198.51.100.7", 2000, "192.0.2.80", 8081), -1},
		{"web source v6 never in v4 prefix", flow(tcp, "2001:db8:3::1", 2000, "2001:db8:4::1", 80), -1},
		{"ssh deny first", flow(tcp, "198.51.100.7", 2000, "192.0.2.22", 22), 6},
		{"negated source and ports", flow(udp, "192.0.2.99", 5353, "192.0.2.53", 53), 8},
		{"negated source excluded", flow(udp, "198.51.100.99", 5353, "192.0.2.53", 53), -1},
		{"negated port excluded", flow(udp, "192.0.2.99", 5353, "192.0.2.53", 54), -1},
		{"negated v4 source, v6 flow", flow(udp, "2001:db8:3::1", 5353, "2001:db8:4::53", 53), -1},
		{"big set v4 binary search", flow(tcp, "198.51.100.1", 5000, "192.0.2.118", 110), 9},
		{"big set v4 gap", flow(tcp, "198.51.100.1", 5000, "192.0.2.117", 110), -1},
		{"big set v6", flow(tcp, "2001:db8:1::1", 5000, "2001:db8:15::99", 10), 9},
		{"big set v6 gap", flow(tcp, "2001:db8:3::1", 5000, "2001:db8:14::99", 10), -1},
		{"big port set gap", flow(tcp, "198.51.100.1", 5000, "192.0.2.118", 55), -1},
		{"any proto v6 pair", flow(udp, "2001:db8:1::5", 1, "2001:db8:2::5", 2), 10},
		{"v6 only rule", flow(tcp, "2001:db8:3::1", 1, "2001:db8:4::1", 9000), 11},
		{"v6 only rule, v4 flow", flow(tcp, "198.51.100.1", 1, "192.0.2.1", 9000), -1},
		{"mapped addresses are v4", flow(tcp, "::ffff:198.51.100.7", 40000, "::ffff:192.0.2.10", 21), 1},
		{"unknown protocol", flow(47, "198.51.100.7", 0, "192.0.2.10", 0), -1},
	}
	for _, tc := range tests {
		got := b.Match(tc.f)
		gotIdx := -1
		if got != nil {
			gotIdx = got.Index
		}
		if gotIdx != tc.want {
			t.Errorf("%s: matched rule %d, want %d", tc.name, gotIdx, tc.want)
		}
	}
}

func TestMatchAnyRules(t *testing.T) {
	rs := mustParse(t, "interface wan wan0\nin on wan default permit {\n deny icmp\n permit any log\n}\n")
	b := rs.Blocks[0]
	if r := b.Match(icmpFlow(decode.ProtoICMP, "198.51.100.1", "192.0.2.1", 8)); r == nil || r.Index != 0 {
		t.Errorf("icmp: %v", r)
	}
	if r := b.Match(icmpFlow(decode.ProtoICMPv6, "2001:db8::1", "2001:db8::2", 128)); r == nil || r.Index != 1 {
		t.Errorf("icmpv6: %v", r)
	}
	// A flow without valid addresses still meets rules without addresses.
	if r := b.Match(&Flow{Proto: 6}); r == nil || r.Index != 1 {
		t.Errorf("zero flow: %v", r)
	}
	if b.Default != Permit {
		t.Error("default")
	}
}

func TestHits(t *testing.T) {
	rs := mustParse(t, matchSrc)
	r := rs.Blocks[0].Match(flow(decode.ProtoTCP, "198.51.100.7", 40000, "192.0.2.10", 21))
	r.Hit()
	r.Hit()
	if r.Hits.Load() != 2 || rs.Rules[0].Hits.Load() != 0 {
		t.Errorf("hits %d", r.Hits.Load())
	}
}

func TestMatchNoAlloc(t *testing.T) {
	rs := mustParse(t, matchSrc)
	b := rs.Blocks[0]
	flows := []*Flow{
		flow(decode.ProtoTCP, "2001:db8:3::1", 5000, "2001:db8:14::99", 10),
		flow(decode.ProtoUDP, "192.0.2.99", 5353, "192.0.2.53", 53),
		icmpFlow(decode.ProtoICMPv6, "2001:db8:1::7", "2001:db8:2::10", 128),
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, f := range flows {
			b.Match(f)
		}
	}); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]PortRange{{10, 20}, {1, 5}, {21, 30}, {6, 6}, {100, 200}, {150, 160}, {65535, 65535}, {65000, 65535}})
	want := []PortRange{{1, 6}, {10, 30}, {100, 200}, {65000, 65535}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestMatchNestedPrefixes(t *testing.T) {
	rs := mustParse(t, `interface wan wan0
in on wan default deny {
    permit tcp to { 192.0.2.0/25 192.0.2.128/25 192.0.2.64/26 198.51.100.0/24 198.51.100.7 }
    permit udp to { 2001:db8::/32 2001:db8:1::/48 2001:db8:ffff:ffff::/64 2001:db9::1 }
    permit icmp to 0.0.0.0/0
}
`)
	b := rs.Blocks[0]
	for _, tc := range []struct {
		f    *Flow
		want bool
	}{
		{flow(decode.ProtoTCP, "203.0.113.1", 1, "192.0.2.0", 1), true},
		{flow(decode.ProtoTCP, "203.0.113.1", 1, "192.0.2.255", 1), true},
		{flow(decode.ProtoTCP, "203.0.113.1", 1, "192.0.3.0", 1), false},
		{flow(decode.ProtoTCP, "203.0.113.1", 1, "198.51.100.255", 1), true},
		{flow(decode.ProtoTCP, "203.0.113.1", 1, "198.51.101.0", 1), false},
		{flow(decode.ProtoUDP, "2001:db8::1", 1, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1), true},
		{flow(decode.ProtoUDP, "2001:db8::1", 1, "2001:db9::1", 1), true},
		{flow(decode.ProtoUDP, "2001:db8::1", 1, "2001:db9::2", 1), false},
		{flow(decode.ProtoUDP, "2001:db8::1", 1, "2001:db7:ffff::1", 1), false},
		{icmpFlow(decode.ProtoICMP, "203.0.113.1", "255.255.255.255", 3), true},
	} {
		if got := b.Match(tc.f) != nil; got != tc.want {
			t.Errorf("%v -> %v: matched %v", tc.f.Src, tc.f.Dst, got)
		}
	}
}
