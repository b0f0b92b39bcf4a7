package rules

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/inspectd/inspectd/internal/decode"
)

// TestExamples parses the example rule files and checks a few verdicts.
func TestExamples(t *testing.T) {
	image, err := ParseFile(filepath.Join("..", "examples", "image-server.rules"))
	if err != nil {
		t.Fatal(err)
	}
	lab, err := ParseFile(filepath.Join("..", "examples", "lab.rules"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rs      *Ruleset
		iface   string
		f       *Flow
		action  Action
		inspect string
	}{
		{image, "wan", flow(decode.ProtoTCP, "198.51.100.7", 40000, "192.0.2.10", 21), Permit, "ftp"},
		{image, "wan", flow(decode.ProtoUDP, "2001:db8:1::7", 40000, "2001:db8:2::10", 69), Permit, "tftp"},
		{image, "wan", flow(decode.ProtoTCP, "198.51.100.7", 40000, "192.0.2.11", 21), Deny, ""},
		{image, "wan", flow(decode.ProtoTCP, "198.51.100.7", 40000, "192.0.2.10", 22), Deny, ""},
		{image, "wan", icmpFlow(decode.ProtoICMP, "198.51.100.7", "192.0.2.10", 8), Permit, ""},
		{image, "lan", flow(decode.ProtoTCP, "192.0.2.10", 40000, "203.0.113.80", 443), Permit, ""},
		{image, "lan", flow(decode.ProtoUDP, "2001:db8:2::10", 40000, "2001:db8:99::53", 53), Permit, ""},
		{image, "lan", flow(decode.ProtoUDP, "192.0.2.10", 123, "203.0.113.123", 123), Permit, ""},
		{image, "lan", flow(decode.ProtoTCP, "203.0.113.5", 40000, "203.0.113.80", 443), Deny, ""},
		{image, "lan", flow(decode.ProtoTCP, "192.0.2.10", 40000, "203.0.113.80", 25), Deny, ""},
		{lab, "wan", flow(decode.ProtoTCP, "198.51.100.2", 40000, "192.0.2.10", 2121), Permit, "ftp"},
		{lab, "wan", flow(decode.ProtoTCP, "2001:db8:1::2", 40000, "2001:db8:2::10", 9000), Permit, ""},
		{lab, "wan", flow(decode.ProtoUDP, "198.51.100.2", 40000, "192.0.2.10", 69), Permit, "tftp"},
		{lab, "wan", icmpFlow(decode.ProtoICMPv6, "2001:db8:1::2", "2001:db8:2::10", 128), Permit, ""},
		{lab, "wan", flow(decode.ProtoTCP, "198.51.100.2", 40000, "192.0.2.10", 40001), Deny, ""},
		{lab, "lan", flow(decode.ProtoTCP, "192.0.2.10", 20, "198.51.100.2", 40001), Deny, ""},
	}
	for i, tc := range tests {
		b := tc.rs.InterfaceByName(tc.iface).Block
		action, inspect := b.Default, ""
		if r := b.Match(tc.f); r != nil {
			action, inspect = r.Action, r.Inspect
		}
		if action != tc.action || inspect != tc.inspect {
			t.Errorf("%d: %s %v -> %v: %v %q, want %v %q", i, tc.iface, tc.f.Src, tc.f.Dst, action, inspect, tc.action, tc.inspect)
		}
	}
	if lab.InterfaceByDevice("wan0").Name != "wan" || lab.InterfaceFor(netip.MustParseAddr("2001:db8:2::10")).Device != "lan0" {
		t.Error("lab interfaces")
	}
	if !lab.InterfaceByName("lan").Block.DefaultLog || len(lab.InterfaceByName("lan").Block.Rules) != 0 {
		t.Error("lab lan block")
	}
	if image.InterfaceFor(netip.MustParseAddr("198.51.100.7")).Name != "wan" {
		t.Error("image-server: outside addresses belong to wan")
	}
}
