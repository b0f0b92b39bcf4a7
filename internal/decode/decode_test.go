package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/internal/packettest"
)

var (
	cli4 = netip.MustParseAddrPort("198.51.100.2:40000")
	srv4 = netip.MustParseAddrPort("192.0.2.10:21")
	rtr4 = netip.MustParseAddr("203.0.113.1")
	cli6 = netip.MustParseAddrPort("[2001:db8:1::2]:40000")
	srv6 = netip.MustParseAddrPort("[2001:db8:2::10]:21")
	rtr6 = netip.MustParseAddr("2001:db8:ffff::1")
)

// mustIP decodes a raw IP packet and fails the test on error.
func mustIP(t *testing.T, data []byte) Packet {
	t.Helper()
	var p Packet
	if err := NewDecoder().IP(data, &p); err != nil {
		t.Fatalf("IP(% x): %v", data, err)
	}
	return p
}

// withIPv6Ext inserts extension headers (each a complete header whose
// first byte is overwritten with the next header) after the 40-byte IPv6
// header of pkt; types lists each header's protocol number.
func withIPv6Ext(pkt []byte, types []uint8, hdrs ...[]byte) []byte {
	out := append([]byte(nil), pkt[:40]...)
	next := pkt[6]
	out[6] = types[0]
	for i, h := range hdrs {
		h = append([]byte(nil), h...)
		if i+1 < len(types) {
			h[0] = types[i+1]
		} else {
			h[0] = next
		}
		out = append(out, h...)
	}
	out = append(out, pkt[40:]...)
	binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-40))
	return out
}

// withIPv4Options inserts IPv4 options (a multiple of 4 bytes) into pkt.
func withIPv4Options(pkt, opts []byte) []byte {
	out := append([]byte(nil), pkt[:20]...)
	out = append(out, opts...)
	out = append(out, pkt[20:]...)
	out[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	return out
}

var opt8 = []byte{0, 0, 1, 4, 0, 0, 0, 0} // 8-byte option header: PadN

func TestTCPv4SYN(t *testing.T) {
	pkt := packettest.TCP(cli4, srv4, packettest.SYN, 1000, 0, nil,
		packettest.Window(29200), packettest.MSS(1460), packettest.SACKPermitted(), packettest.WScale(7))
	p := mustIP(t, pkt)
	want := Packet{
		Src: cli4.Addr(), Dst: srv4.Addr(), Proto: ProtoTCP, SrcPort: cli4.Port(), DstPort: srv4.Port(),
		Flags: TCPSyn, Seq: 1000, Window: 29200, WScale: 7, HasWScale: true, SACKPermitted: true,
		Length: len(pkt),
	}
	checkPacket(t, p, want, pkt[len(pkt):])
}

func TestTCPWindowScaleCapped(t *testing.T) {
	p := mustIP(t, packettest.TCP(cli6, srv6, packettest.SYN|packettest.ACK, 1, 2, nil, packettest.WScale(15)))
	if !p.HasWScale || p.WScale != 14 {
		t.Errorf("WScale = %d (has %v), want 14 (capped)", p.WScale, p.HasWScale)
	}
	if p.SACKPermitted {
		t.Error("SACKPermitted set without the option")
	}
}

func TestTCPOptionsOnlyOnSYN(t *testing.T) {
	p := mustIP(t, packettest.TCP(cli4, srv4, packettest.ACK, 1, 2, nil, packettest.WScale(3), packettest.SACKPermitted()))
	if p.HasWScale || p.WScale != 0 || p.SACKPermitted {
		t.Errorf("options read on a non-SYN segment: %+v", p)
	}
}

func TestTCPMalformedOptions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []byte
		wantWS    bool
		wantSACKP bool
	}{
		{"zero length stops", []byte{4, 2, 8, 0, 3, 3, 5, 0}, false, true},
		{"overlong stops", []byte{3, 3, 2, 4, 9, 0, 0, 0}, true, false},
		{"end of list", []byte{0, 3, 3, 2, 0, 0, 0, 0}, false, false},
		{"dangling kind", []byte{1, 1, 1, 1, 1, 1, 1, 3}, false, false},
		{"wrong wscale length", []byte{3, 4, 2, 0, 4, 2, 1, 1}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := packettest.TCP(cli4, srv4, packettest.SYN, 1, 0, []byte("x"))
			// Grow the TCP header by 8 bytes of options.
			out := append(append(append([]byte(nil), pkt[:40]...), tc.opts...), pkt[40:]...)
			out[32] = 7 << 4
			binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
			p := mustIP(t, out)
			if p.HasWScale != tc.wantWS || p.SACKPermitted != tc.wantSACKP {
				t.Errorf("HasWScale %v SACKPermitted %v, want %v %v", p.HasWScale, p.SACKPermitted, tc.wantWS, tc.wantSACKP)
			}
			if string(p.Payload) != "x" {
				t.Errorf("Payload %q, want \"x\"", p.Payload)
			}
		})
	}
}

func TestTCPv6Data(t *testing.T) {
	data := []byte("RETR image.bin\r\n")
	pkt := packettest.TCP(cli6, srv6, packettest.PSH|packettest.ACK|packettest.URG, 7, 9, data,
		packettest.Urgent(3), packettest.Window(512))
	p := mustIP(t, pkt)
	want := Packet{
		Src: cli6.Addr(), Dst: srv6.Addr(), Proto: ProtoTCP, SrcPort: cli6.Port(), DstPort: srv6.Port(),
		Flags: TCPPsh | TCPAck | TCPUrg, Seq: 7, Ack: 9, Window: 512, Urgent: 3, Length: len(pkt),
	}
	checkPacket(t, p, want, data)
	if !p.IsIPv6() {
		t.Error("IsIPv6 false for an IPv6 packet")
	}
}

func TestUDP(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.AddrPort }{{cli4, srv4}, {cli6, srv6}} {
		data := []byte("\x00\x01file1\x00octet\x00")
		pkt := packettest.UDP(tc.src, tc.dst, data)
		p := mustIP(t, pkt)
		want := Packet{Src: tc.src.Addr(), Dst: tc.dst.Addr(), Proto: ProtoUDP,
			SrcPort: tc.src.Port(), DstPort: tc.dst.Port(), Length: len(pkt)}
		checkPacket(t, p, want, data)
	}
}

func TestUDPLengthTrimsPayload(t *testing.T) {
	pkt := packettest.UDP(cli4, srv4, []byte("abcdef"))
	binary.BigEndian.PutUint16(pkt[24:26], 8+3)
	if p := mustIP(t, pkt); string(p.Payload) != "abc" {
		t.Errorf("Payload %q, want \"abc\"", p.Payload)
	}
}

func TestICMPEcho(t *testing.T) {
	for _, tc := range []struct {
		src, dst netip.Addr
		reply    bool
		proto    uint8
		typ      uint8
		query    uint8
	}{
		{cli4.Addr(), srv4.Addr(), false, ProtoICMP, 8, 8},
		{srv4.Addr(), cli4.Addr(), true, ProtoICMP, 0, 8},
		{cli6.Addr(), srv6.Addr(), false, ProtoICMPv6, 128, 128},
		{srv6.Addr(), cli6.Addr(), true, ProtoICMPv6, 129, 128},
	} {
		pkt := packettest.ICMPEcho(tc.src, tc.dst, 0x1234, 5, tc.reply)
		p := mustIP(t, pkt)
		want := Packet{Src: tc.src, Dst: tc.dst, Proto: tc.proto, SrcPort: 0x1234, DstPort: 0x1234,
			ICMPType: tc.typ, ICMPQuery: tc.query, ICMPAnswer: tc.reply, Length: len(pkt)}
		checkPacket(t, p, want, nil)
	}
}

// TestICMPQuery: the query types carry an identifier like echo does; the
// others (errors, router and neighbor discovery) are not queries.
func TestICMPQuery(t *testing.T) {
	for _, tc := range []struct {
		proto, typ, query uint8
		answer            bool
	}{
		{ProtoICMP, 8, 8, false}, {ProtoICMP, 0, 8, true},
		{ProtoICMP, 13, 13, false}, {ProtoICMP, 14, 13, true},
		{ProtoICMP, 15, 15, false}, {ProtoICMP, 16, 15, true},
		{ProtoICMP, 17, 17, false}, {ProtoICMP, 18, 17, true},
		{ProtoICMP, 3, 0, false}, {ProtoICMP, 9, 0, false}, {ProtoICMP, 10, 0, false}, {ProtoICMP, 19, 0, false},
		{ProtoICMPv6, 128, 128, false}, {ProtoICMPv6, 129, 128, true},
		{ProtoICMPv6, 1, 0, false}, {ProtoICMPv6, 13, 0, false}, {ProtoICMPv6, 133, 0, false}, {ProtoICMPv6, 136, 0, false},
	} {
		if q, a := ICMPQuery(tc.proto, tc.typ); q != tc.query || a != tc.answer {
			t.Errorf("ICMPQuery(%d, %d) = %d, %v; want %d, %v", tc.proto, tc.typ, q, a, tc.query, tc.answer)
		}
	}
	stamp := packettest.ICMPv4Query(cli4.Addr(), srv4.Addr(), 14, 0x4321, 1, make([]byte, 12))
	p := mustIP(t, stamp)
	if p.SrcPort != 0x4321 || p.DstPort != 0x4321 || p.ICMPQuery != 13 || !p.ICMPAnswer {
		t.Errorf("timestamp reply decoded as ports %d/%d, query %d answer %v", p.SrcPort, p.DstPort, p.ICMPQuery, p.ICMPAnswer)
	}
}

func TestICMPErrors(t *testing.T) {
	udp4 := packettest.UDP(cli4, srv4, []byte("hello, world"))
	tcp6 := packettest.TCP(cli6, srv6, packettest.SYN, 1, 0, nil)
	echo4 := packettest.ICMPEcho(cli4.Addr(), srv4.Addr(), 77, 1, false)
	echo6 := packettest.ICMPEcho(cli6.Addr(), srv6.Addr(), 78, 1, false)
	frag4 := packettest.Fragment(packettest.UDP(cli4, srv4, make([]byte, 64)), 32, 9)[1]
	opt4 := withIPv4Options(udp4, []byte{1, 1, 1, 0})
	ext6 := withIPv6Ext(tcp6, []uint8{protoDstOpts}, opt8)
	for _, tc := range []struct {
		name   string
		from   netip.Addr
		to     netip.Addr
		typ    uint8
		code   uint8
		quoted []byte
		want   Quoted
	}{
		{"v4 port unreachable, whole packet", srv4.Addr(), cli4.Addr(), 3, 3, udp4,
			Quoted{cli4.Addr(), srv4.Addr(), ProtoUDP, cli4.Port(), srv4.Port(), 0, false}},
		{"v4 time exceeded, RFC 792 quote", rtr4, cli4.Addr(), 11, 0, packettest.Quote(udp4),
			Quoted{cli4.Addr(), srv4.Addr(), ProtoUDP, cli4.Port(), srv4.Port(), 0, false}},
		{"v4 quote with IP options", rtr4, cli4.Addr(), 12, 0, packettest.Quote(opt4),
			Quoted{cli4.Addr(), srv4.Addr(), ProtoUDP, cli4.Port(), srv4.Port(), 0, false}},
		{"v4 quoted echo", rtr4, cli4.Addr(), 3, 1, packettest.Quote(echo4),
			Quoted{cli4.Addr(), srv4.Addr(), ProtoICMP, 77, 77, 8, false}},
		{"v4 quoted fragment", rtr4, cli4.Addr(), 4, 0, packettest.Quote(frag4),
			Quoted{cli4.Addr(), srv4.Addr(), ProtoUDP, 0, 0, 0, false}},
		{"v4 redirect", rtr4, cli4.Addr(), 5, 1, packettest.Quote(udp4),
			Quoted{cli4.Addr(), srv4.Addr(), ProtoUDP, cli4.Port(), srv4.Port(), 0, false}},
		{"v6 packet too big", rtr6, cli6.Addr(), 2, 0, tcp6,
			Quoted{cli6.Addr(), srv6.Addr(), ProtoTCP, cli6.Port(), srv6.Port(), 0, false}},
		{"v6 unreachable, RFC quote", rtr6, cli6.Addr(), 1, 4, packettest.Quote(tcp6),
			Quoted{cli6.Addr(), srv6.Addr(), ProtoTCP, cli6.Port(), srv6.Port(), 0, false}},
		{"v6 quote with extension header", rtr6, cli6.Addr(), 3, 0, ext6,
			Quoted{cli6.Addr(), srv6.Addr(), ProtoTCP, cli6.Port(), srv6.Port(), 0, false}},
		{"v6 parameter problem, quoted echo", rtr6, cli6.Addr(), 4, 0, echo6,
			Quoted{cli6.Addr(), srv6.Addr(), ProtoICMPv6, 78, 78, 128, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := packettest.ICMPError(tc.from, tc.to, tc.typ, tc.code, tc.quoted)
			p := mustIP(t, pkt)
			proto := ProtoICMP
			if tc.from.Is6() {
				proto = ProtoICMPv6
			}
			want := Packet{Src: tc.from, Dst: tc.to, Proto: proto, ICMPType: tc.typ, ICMPCode: tc.code,
				ICMPError: true, Inner: tc.want, Length: len(pkt)}
			checkPacket(t, p, want, append(make([]byte, 4), tc.quoted...)[4:])
		})
	}
}

func TestICMPErrorBadQuote(t *testing.T) {
	udp4 := packettest.UDP(cli4, srv4, nil)
	tcp6 := packettest.TCP(cli6, srv6, packettest.SYN, 1, 0, nil)
	echo4 := packettest.ICMPEcho(cli4.Addr(), srv4.Addr(), 77, 1, false)
	for _, tc := range []struct {
		name   string
		from   netip.Addr
		quoted []byte
	}{
		{"v4 no quote", rtr4, nil},
		{"v4 header only", rtr4, udp4[:20]},
		{"v4 half the ports", rtr4, udp4[:22]},
		{"v4 quoted echo without id", rtr4, echo4[:24]},
		{"v4 bad IHL", rtr4, append([]byte{0x43}, udp4[1:]...)},
		{"v4 IHL beyond quote", rtr4, append([]byte{0x4f}, udp4[1:28]...)},
		{"v4 quotes v6", rtr4, tcp6},
		{"v6 header only", rtr6, tcp6[:40]},
		{"v6 quotes v4", rtr6, udp4},
		{"v6 truncated ext header", rtr6, withIPv6Ext(tcp6, []uint8{protoHopByHop}, opt8)[:44]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := cli4.Addr()
			if tc.from.Is6() {
				to = cli6.Addr()
			}
			pkt := packettest.ICMPError(tc.from, to, 3, 0, tc.quoted)
			var p Packet
			if err := NewDecoder().IP(pkt, &p); !errors.Is(err, ErrICMPQuote) {
				t.Errorf("err = %v, want ErrICMPQuote", err)
			}
		})
	}
}

func TestICMPv6Short(t *testing.T) {
	// A 4-byte ICMPv6 message of an informational type decodes; an echo
	// or an error that short is truncated.
	pkt := packettest.ICMPEcho(cli6.Addr(), srv6.Addr(), 1, 1, false)
	short := append([]byte(nil), pkt[:44]...)
	binary.BigEndian.PutUint16(short[4:6], 4)
	var p Packet
	if err := NewDecoder().IP(short, &p); !errors.Is(err, ErrTruncated) {
		t.Errorf("4-byte echo: err = %v, want ErrTruncated", err)
	}
	short[40] = 200 // private experimentation type
	p = mustIP(t, short)
	if p.ICMPType != 200 || len(p.Payload) != 0 || p.SrcPort != 0 {
		t.Errorf("4-byte ICMPv6: %+v", p)
	}
}

func TestOtherProtocols(t *testing.T) {
	// An IPv4 GRE packet: protocol set, the whole IP payload as Payload.
	pkt := packettest.UDP(cli4, srv4, []byte("gre"))
	pkt[9] = 47
	p := mustIP(t, pkt)
	if p.Proto != 47 || len(p.Payload) != 11 || p.SrcPort != 0 {
		t.Errorf("GRE: %+v", p)
	}
}

func TestIPv4Options(t *testing.T) {
	pkt := withIPv4Options(packettest.UDP(cli4, srv4, []byte("data")), []byte{0x94, 4, 0, 0, 1, 1, 1, 0})
	p := mustIP(t, pkt)
	want := Packet{Src: cli4.Addr(), Dst: srv4.Addr(), Proto: ProtoUDP,
		SrcPort: cli4.Port(), DstPort: srv4.Port(), Length: len(pkt)}
	checkPacket(t, p, want, []byte("data"))
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	tcp6 := packettest.TCP(cli6, srv6, packettest.ACK, 5, 6, []byte("payload"))
	ah := []byte{0, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12} // 24 bytes: (4+2)*4
	routing := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	frag0 := []byte{0, 0, 0, 0, 0, 0, 0, 42} // offset 0, no MF: an atomic fragment
	long := make([]byte, 24)
	long[1] = 2 // (2+1)*8 bytes
	many := func(n int) ([]uint8, [][]byte) {
		ts, hs := make([]uint8, n), make([][]byte, n)
		for i := range ts {
			ts[i], hs[i] = protoDstOpts, opt8
		}
		return ts, hs
	}
	ts8, hs8 := many(MaxIPv6ExtHeaders)
	for _, tc := range []struct {
		name  string
		types []uint8
		hdrs  [][]byte
	}{
		{"hop-by-hop", []uint8{protoHopByHop}, [][]byte{opt8}},
		{"hbh, routing, dstopts, 24-byte dstopts", []uint8{protoHopByHop, protoRouting, protoDstOpts, protoDstOpts},
			[][]byte{opt8, routing, opt8, long}},
		{"AH", []uint8{protoAH}, [][]byte{ah}},
		{"atomic fragment", []uint8{protoFragment}, [][]byte{frag0}},
		{"the most headers allowed", ts8, hs8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := withIPv6Ext(tcp6, tc.types, tc.hdrs...)
			p := mustIP(t, pkt)
			want := Packet{Src: cli6.Addr(), Dst: srv6.Addr(), Proto: ProtoTCP, SrcPort: cli6.Port(),
				DstPort: srv6.Port(), Flags: TCPAck, Seq: 5, Ack: 6, Window: 65535, Length: len(pkt)}
			checkPacket(t, p, want, []byte("payload"))
		})
	}

	ts9, hs9 := many(MaxIPv6ExtHeaders + 1)
	var p Packet
	if err := NewDecoder().IP(withIPv6Ext(tcp6, ts9, hs9...), &p); !errors.Is(err, ErrIPv6ExtHeaders) {
		t.Errorf("9 headers: err = %v, want ErrIPv6ExtHeaders", err)
	}

	for _, proto := range []uint8{protoESP, protoNoNext} {
		pkt := withIPv6Ext(tcp6, []uint8{protoHopByHop}, opt8)
		pkt[40] = proto
		p := mustIP(t, pkt)
		if p.Proto != proto || p.SrcPort != 0 || p.DstPort != 0 || p.Flags != 0 || len(p.Payload) != len(pkt)-48 {
			t.Errorf("next header %d: %+v", proto, p)
		}
	}
}

func TestFragments(t *testing.T) {
	for _, tc := range []struct{ src, dst netip.AddrPort }{{cli4, srv4}, {cli6, srv6}} {
		data := bytes.Repeat([]byte("0123456789abcdef"), 6)
		frags := packettest.Fragment(packettest.UDP(tc.src, tc.dst, data), 48, 1234)
		if len(frags) != 3 {
			t.Fatalf("%d fragments, want 3", len(frags))
		}
		first := mustIP(t, frags[0])
		want := Packet{Src: tc.src.Addr(), Dst: tc.dst.Addr(), Proto: ProtoUDP,
			SrcPort: tc.src.Port(), DstPort: tc.dst.Port(), MoreFragments: true, Length: len(frags[0])}
		checkPacket(t, first, want, data[:40])
		for i, f := range frags[1:] {
			p := mustIP(t, f)
			want := Packet{Src: tc.src.Addr(), Dst: tc.dst.Addr(), Proto: ProtoUDP, Fragment: true, Length: len(f)}
			checkPacket(t, p, want, data[40+48*i:min(88+48*i, len(data))])
		}
	}
}

func TestTCPFirstFragmentTooShort(t *testing.T) {
	// A first fragment that cuts the TCP header (a tiny-fragment attack).
	frags := packettest.Fragment(packettest.TCP(cli4, srv4, packettest.SYN, 1, 0, make([]byte, 64)), 8, 1)
	var p Packet
	if err := NewDecoder().IP(frags[0], &p); !errors.Is(err, ErrTruncated) {
		t.Errorf("err = %v, want ErrTruncated", err)
	}
}

func TestBadHeaders(t *testing.T) {
	udp4 := packettest.UDP(cli4, srv4, []byte("abcd"))
	tcp4 := packettest.TCP(cli4, srv4, packettest.ACK, 1, 2, []byte("abcd"))
	tcp6 := packettest.TCP(cli6, srv6, packettest.ACK, 1, 2, []byte("abcd"))
	mod := func(pkt []byte, f func([]byte)) []byte {
		pkt = append([]byte(nil), pkt...)
		f(pkt)
		return pkt
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 5", mod(udp4, func(b []byte) { b[0] = 0x55 }), ErrNotIP},
		{"IHL 4", mod(udp4, func(b []byte) { b[0] = 0x44 }), ErrBadIPHeader},
		{"total below IHL", mod(udp4, func(b []byte) { b[3] = 19 }), ErrBadIPHeader},
		{"total beyond data", mod(udp4, func(b []byte) { b[3]++ }), ErrTruncated},
		{"short v4 header", udp4[:19], ErrTruncated},
		{"short v6 header", tcp6[:39], ErrTruncated},
		{"v6 payload length beyond data", mod(tcp6, func(b []byte) { b[5]++ }), ErrTruncated},
		{"TCP data offset 4", mod(tcp4, func(b []byte) { b[32] = 4 << 4 }), ErrBadTCPHeader},
		{"TCP data offset beyond packet", mod(tcp4, func(b []byte) { b[32] = 7 << 4 }), ErrBadTCPHeader},
		{"TCP header cut", mod(tcp4[:39], func(b []byte) { b[3] = 39 }), ErrTruncated},
		{"UDP length 7", mod(udp4, func(b []byte) { b[25] = 7 }), ErrBadUDPHeader},
		{"UDP length beyond packet", mod(udp4, func(b []byte) { b[25] = 13 }), ErrBadUDPHeader},
		{"UDP header cut", mod(udp4[:27], func(b []byte) { b[3] = 27 }), ErrTruncated},
		{"v6 ext header cut", withIPv6Ext(tcp6, []uint8{protoHopByHop}, []byte{0, 1, 0, 0, 0, 0, 0, 0})[:48+20], ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := NewDecoder().IP(tc.pkt, &p); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEveryPrefixFailsCleanly(t *testing.T) {
	// Every strict prefix of a valid packet is refused (the IP length
	// no longer fits), and none panics.
	d := NewDecoder()
	for _, pkt := range [][]byte{
		packettest.TCP(cli4, srv4, packettest.SYN, 1, 0, nil, packettest.WScale(2)),
		packettest.TCP(cli6, srv6, packettest.SYN, 1, 0, []byte("x"), packettest.SACKPermitted()),
		packettest.ICMPError(rtr6, cli6.Addr(), 1, 0, packettest.UDP(cli6, srv6, nil)),
	} {
		for n := range len(pkt) {
			var p Packet
			if err := d.IP(pkt[:n], &p); err == nil {
				t.Errorf("prefix %d of %d bytes decoded without error", n, len(pkt))
			}
		}
	}
}

func TestNoStaleFields(t *testing.T) {
	d := NewDecoder()
	var p Packet
	for _, prev := range [][]byte{
		packettest.TCP(cli4, srv4, packettest.SYN|packettest.URG, 1, 2, []byte("x"), packettest.WScale(3), packettest.SACKPermitted(), packettest.Urgent(1)),
		packettest.ICMPError(rtr4, cli4.Addr(), 3, 3, packettest.UDP(cli4, srv4, nil)),
		packettest.Fragment(packettest.UDP(cli6, srv6, make([]byte, 32)), 16, 1)[0],
	} {
		for _, next := range [][]byte{
			packettest.UDP(cli6, srv6, nil),
			packettest.ICMPEcho(cli4.Addr(), srv4.Addr(), 1, 1, false),
		} {
			if err := d.IP(prev, &p); err != nil {
				t.Fatal(err)
			}
			if err := d.IP(next, &p); err != nil {
				t.Fatal(err)
			}
			var fresh Packet
			if err := NewDecoder().IP(next, &fresh); err != nil {
				t.Fatal(err)
			}
			checkPacket(t, p, fresh, fresh.Payload)
		}
		// A failed decode leaves no trace of the previous packet either
		// beyond what it decoded itself.
		if err := d.IP(prev, &p); err != nil {
			t.Fatal(err)
		}
		if err := d.Frame(layers.LinkTypeEthernet, []byte{1, 2, 3}, &p); err == nil || p.Proto != 0 || p.Src.IsValid() {
			t.Errorf("failed Frame kept %+v (err %v)", p, err)
		}
	}
}

// checkPacket compares p with want, Payload by content.
func checkPacket(t *testing.T, p, want Packet, payload []byte) {
	t.Helper()
	if !bytes.Equal(p.Payload, payload) {
		t.Errorf("Payload = %q, want %q", p.Payload, payload)
	}
	p.Payload, want.Payload = nil, nil
	if !reflect.DeepEqual(p, want) {
		t.Errorf("decoded\n %+v\nwant\n %+v", p, want)
	}
}

// TestLinkTypesMatchFrame checks that LinkTypes lists exactly the link
// types Frame reads.
func TestLinkTypesMatchFrame(t *testing.T) {
	d := NewDecoder()
	var p Packet
	for l := range layers.LinkType(1024) {
		reads := !errors.Is(d.Frame(l, nil, &p), ErrUnsupportedLink)
		if reads != ReadsLink(l) {
			t.Errorf("link type %d: Frame reads it: %v, LinkTypes lists it: %v", l, reads, ReadsLink(l))
		}
	}
}
