package packettest_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/internal/packettest"
)

var (
	a4 = netip.MustParseAddrPort("198.51.100.7:1024")
	b4 = netip.MustParseAddrPort("192.0.2.10:69")
	a6 = netip.MustParseAddrPort("[2001:db8::7]:1024")
	b6 = netip.MustParseAddrPort("[2001:db8:2::10]:69")
)

// checksumsOK recomputes the IPv4 header checksum and the transport
// checksum (with the pseudo-header for TCP, UDP and ICMPv6) of pkt, an
// IPv4 packet or an IPv6 packet without extension headers.
func checksumsOK(t *testing.T, pkt []byte) {
	t.Helper()
	var pseudo []byte
	var proto byte
	var seg []byte
	if pkt[0]>>4 == 4 {
		ihl := int(pkt[0]&0x0f) * 4
		if sum(pkt[:ihl]) != 0xffff {
			t.Errorf("bad IPv4 header checksum")
		}
		proto, seg = pkt[9], pkt[ihl:]
		pseudo = append(pseudo, pkt[12:20]...)
	} else {
		proto, seg = pkt[6], pkt[40:]
		pseudo = append(pseudo, pkt[8:40]...)
	}
	pseudo = append(pseudo, 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, proto)
	if proto == 1 { // ICMPv4 has no pseudo-header
		pseudo = nil
	}
	if sum(append(pseudo, seg...)) != 0xffff {
		t.Errorf("bad checksum for protocol %d", proto)
	}
}

// sum is the ones' complement sum of b, folded to 16 bits.
func sum(b []byte) uint32 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		s += uint32(b[i]) << 8
		if i+1 < len(b) {
			s += uint32(b[i+1])
		}
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

func decodeOK(t *testing.T, pkt []byte) decode.Packet {
	t.Helper()
	checksumsOK(t, pkt)
	var p decode.Packet
	if err := decode.NewDecoder().IP(pkt, &p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return p
}

func TestTCP(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{a4, b4}, {a6, b6}} {
		pkt := packettest.TCP(ends[0], ends[1], packettest.SYN|packettest.ECE|packettest.CWR, 100, 0, nil,
			packettest.MSS(1400), packettest.WScale(9), packettest.SACKPermitted())
		p := decodeOK(t, pkt)
		if p.Src != ends[0].Addr() || p.Dst != ends[1].Addr() || p.SrcPort != ends[0].Port() || p.DstPort != ends[1].Port() ||
			p.Proto != decode.ProtoTCP || p.Flags != decode.TCPSyn|decode.TCPEce|decode.TCPCwr || p.Seq != 100 ||
			p.Window != packettest.DefaultWindow || !p.HasWScale || p.WScale != 9 || !p.SACKPermitted {
			t.Errorf("SYN decoded as %+v", p)
		}
		pkt = packettest.TCP(ends[1], ends[0], packettest.ACK|packettest.URG|packettest.PSH|packettest.FIN|packettest.RST, 5, 6,
			[]byte("\xff\xf4\xff\xf2ABOR\r\n"), packettest.Urgent(3), packettest.Window(100))
		p = decodeOK(t, pkt)
		if p.Flags != decode.TCPAck|decode.TCPUrg|decode.TCPPsh|decode.TCPFin|decode.TCPRst || p.Urgent != 3 ||
			p.Window != 100 || p.Ack != 6 || string(p.Payload) != "\xff\xf4\xff\xf2ABOR\r\n" {
			t.Errorf("data segment decoded as %+v", p)
		}
	}
}

func TestUDP(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{a4, b4}, {a6, b6}} {
		p := decodeOK(t, packettest.UDP(ends[0], ends[1], []byte("\x00\x01f\x00octet\x00")))
		if p.Proto != decode.ProtoUDP || p.SrcPort != 1024 || p.DstPort != 69 || string(p.Payload) != "\x00\x01f\x00octet\x00" {
			t.Errorf("decoded as %+v", p)
		}
	}
}

func TestICMP(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{a4, b4}, {a6, b6}} {
		for _, reply := range []bool{false, true} {
			p := decodeOK(t, packettest.ICMPEcho(ends[0].Addr(), ends[1].Addr(), 42, 7, reply))
			if p.SrcPort != 42 || p.DstPort != 42 || p.ICMPError {
				t.Errorf("echo decoded as %+v", p)
			}
		}
		orig := packettest.UDP(ends[0], ends[1], []byte("x"))
		p := decodeOK(t, packettest.ICMPError(ends[1].Addr(), ends[0].Addr(), 3, 3, packettest.Quote(orig)))
		want := decode.Quoted{Src: ends[0].Addr(), Dst: ends[1].Addr(), Proto: decode.ProtoUDP, SrcPort: 1024, DstPort: 69}
		if !p.ICMPError || p.Inner != want || p.ICMPType != 3 || p.ICMPCode != 3 {
			t.Errorf("error decoded as %+v", p)
		}
	}
}

func TestQuote(t *testing.T) {
	long := packettest.UDP(a4, b4, make([]byte, 100))
	if n := len(packettest.Quote(long)); n != 28 {
		t.Errorf("IPv4 quote %d bytes, want 28", n)
	}
	if n := len(packettest.Quote(packettest.UDP(a6, b6, make([]byte, 100)))); n != 48 {
		t.Errorf("IPv6 quote %d bytes, want 48", n)
	}
	if short := long[:25]; !bytes.Equal(packettest.Quote(short), short) {
		t.Error("Quote of a short packet is not the whole packet")
	}
}

func TestFragment(t *testing.T) {
	for _, ends := range [][2]netip.AddrPort{{a4, b4}, {a6, b6}} {
		body := bytes.Repeat([]byte{0xab}, 100)
		frags := packettest.Fragment(packettest.UDP(ends[0], ends[1], body), 50, 77) // 48 per fragment
		if len(frags) != 3 {
			t.Fatalf("%d fragments, want 3", len(frags))
		}
		var reassembled []byte
		for i, f := range frags {
			var p decode.Packet
			if err := decode.NewDecoder().IP(f, &p); err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			if p.Fragment != (i > 0) || p.MoreFragments != (i == 0) {
				t.Errorf("fragment %d: Fragment %v MoreFragments %v", i, p.Fragment, p.MoreFragments)
			}
			if i == 0 {
				reassembled = append(reassembled, make([]byte, 8)...) // UDP header
			}
			reassembled = append(reassembled, p.Payload...)
		}
		if !bytes.Equal(reassembled[8:], body) {
			t.Errorf("fragments carry % x", reassembled)
		}
	}
}

func TestEthernet(t *testing.T) {
	pkt := packettest.UDP(a4, b4, nil)
	frame := packettest.Ethernet(pkt)
	if len(frame) != 60 {
		t.Errorf("frame of %d bytes, want 60 (padded)", len(frame))
	}
	for _, vlans := range [][]uint16{nil, {10}, {10, 20}} {
		frame := packettest.Ethernet(packettest.TCP(a6, b6, packettest.SYN, 1, 0, nil), vlans...)
		gp := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		var tags []uint16
		for _, l := range gp.Layers() {
			if q, ok := l.(*layers.Dot1Q); ok {
				tags = append(tags, q.VLANIdentifier)
			}
		}
		if len(tags) != len(vlans) || gp.Layer(layers.LayerTypeTCP) == nil {
			t.Errorf("vlans %v: gopacket sees tags %v, layers %v", vlans, tags, gp.Layers())
		}
	}
}

func TestPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"mixed families": func() { packettest.UDP(a4, b6, nil) },
		"invalid address": func() {
			packettest.ICMPEcho(netip.Addr{}, b4.Addr(), 1, 1, false)
		},
		"fragment size": func() { packettest.Fragment(packettest.UDP(a4, b4, nil), 7, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
