package decode

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/internal/packettest"
)

// hotPackets are the packets the allocation test and benchmarks decode.
func hotPackets() map[string][]byte {
	data := make([]byte, 512)
	return map[string][]byte{
		"IPv4TCP":       packettest.TCP(cli4, srv4, packettest.ACK|packettest.PSH, 1, 2, data),
		"IPv4TCPSYN":    packettest.TCP(cli4, srv4, packettest.SYN, 1, 0, nil, packettest.MSS(1460), packettest.SACKPermitted(), packettest.WScale(7)),
		"IPv6TCP":       packettest.TCP(cli6, srv6, packettest.ACK, 1, 2, data),
		"IPv4UDP":       packettest.UDP(cli4, srv4, data[:64]),
		"IPv6UDP":       packettest.UDP(cli6, srv6, data[:64]),
		"ICMPv4Error":   packettest.ICMPError(rtr4, cli4.Addr(), 11, 0, packettest.Quote(packettest.UDP(cli4, srv4, nil))),
		"ICMPv6Error":   packettest.ICMPError(rtr6, cli6.Addr(), 1, 0, packettest.TCP(cli6, srv6, packettest.SYN, 1, 0, nil)),
		"ICMPv4Echo":    packettest.ICMPEcho(cli4.Addr(), srv4.Addr(), 1, 1, false),
		"IPv6Fragment":  packettest.Fragment(packettest.UDP(cli6, srv6, data), 256, 1)[1],
		"IPv6ExtHeader": withIPv6Ext(packettest.TCP(cli6, srv6, packettest.ACK, 1, 2, data), []uint8{protoHopByHop}, opt8),
	}
}

func TestZeroAllocs(t *testing.T) {
	d := NewDecoder()
	var p Packet
	for name, pkt := range hotPackets() {
		if n := testing.AllocsPerRun(100, func() {
			if err := d.IP(pkt, &p); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, n)
		}
		frame := packettest.Ethernet(pkt, 5)
		if n := testing.AllocsPerRun(100, func() {
			if err := d.Frame(layers.LinkTypeEthernet, frame, &p); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s in Ethernet: %v allocations per packet, want 0", name, n)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder()
	var p Packet
	for name, pkt := range hotPackets() {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if err := d.IP(pkt, &p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeIPv4TCP(b *testing.B) {
	d := NewDecoder()
	var p Packet
	pkt := hotPackets()["IPv4TCP"]
	b.ReportAllocs()
	for b.Loop() {
		if err := d.IP(pkt, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFrameEthernetIPv4TCP(b *testing.B) {
	d := NewDecoder()
	var p Packet
	frame := packettest.Ethernet(hotPackets()["IPv4TCP"])
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Frame(layers.LinkTypeEthernet, frame, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGopacketIPv4TCP is the yardstick behind decoding by hand: the
// same fields through gopacket's preallocated layers and
// DecodingLayerParser, as DESIGN.md first proposed.
func BenchmarkGopacketIPv4TCP(b *testing.B) {
	var (
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		payload gopacket.Payload
		decoded = make([]gopacket.LayerType, 0, 4)
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, &ip4, &ip6, &tcp, &udp, &payload)
	pkt := hotPackets()["IPv4TCP"]
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		if err := parser.DecodeLayers(pkt, &decoded); err != nil {
			b.Fatal(err)
		}
		p = Packet{
			Src: netip.AddrFrom4([4]byte(ip4.SrcIP)), Dst: netip.AddrFrom4([4]byte(ip4.DstIP)),
			Proto: uint8(ip4.Protocol), SrcPort: uint16(tcp.SrcPort), DstPort: uint16(tcp.DstPort),
			Seq: tcp.Seq, Ack: tcp.Ack, Window: tcp.Window, Payload: tcp.Payload, Length: int(ip4.Length),
		}
	}
	if p.SrcPort != cli4.Port() {
		b.Fatal("gopacket decoded the wrong port")
	}
}
