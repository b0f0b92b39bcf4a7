// Package packettest builds raw IPv4 and IPv6 packets for tests: TCP, UDP,
// ICMP echo and ICMP errors with correct lengths and checksums, fragments,
// and Ethernet frames around them. It serializes with gopacket.
//
// It is for tests only. The builders panic on inputs no test should pass
// (mixed address families, an invalid address), the way regexp.MustCompile
// does, so that a test reads as one line per packet.
package packettest

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TCP flag bits, as in byte 13 of the TCP header (the same values as
// decode.TCPSyn and friends).
const (
	FIN uint8 = 0x01
	SYN uint8 = 0x02
	RST uint8 = 0x04
	PSH uint8 = 0x08
	ACK uint8 = 0x10
	URG uint8 = 0x20
	ECE uint8 = 0x40
	CWR uint8 = 0x80
)

// TTL is the IPv4 TTL and IPv6 hop limit of every built packet.
const TTL = 64

// DefaultWindow is the TCP window of a segment built without Window.
const DefaultWindow = 65535

// Opt changes a TCP segment built by TCP.
type Opt func(*layers.TCP)

// Window sets the raw TCP window field.
func Window(w uint16) Opt { return func(t *layers.TCP) { t.Window = w } }

// WScale adds a window scale option with shift s (not capped: tests may
// send out-of-range shifts).
func WScale(s uint8) Opt {
	return func(t *layers.TCP) {
		t.Options = append(t.Options, layers.TCPOption{
			OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{s}})
	}
}

// SACKPermitted adds the SACK-permitted option.
func SACKPermitted() Opt {
	return func(t *layers.TCP) {
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted})
	}
}

// MSS adds a maximum segment size option.
func MSS(mss uint16) Opt {
	return func(t *layers.TCP) {
		t.Options = append(t.Options, layers.TCPOption{
			OptionType: layers.TCPOptionKindMSS, OptionData: []byte{byte(mss >> 8), byte(mss)}})
	}
}

// Urgent sets the urgent pointer (add URG to the flags for it to count).
func Urgent(ptr uint16) Opt { return func(t *layers.TCP) { t.Urgent = ptr } }

// TCP returns a raw IP packet holding one TCP segment from src to dst. The
// family follows the addresses. flags is a combination of SYN, ACK, ...
func TCP(src, dst netip.AddrPort, flags uint8, seq, ack uint32, payload []byte, opts ...Opt) []byte {
	t := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: ack, Window: DefaultWindow,
		FIN: flags&FIN != 0, SYN: flags&SYN != 0, RST: flags&RST != 0, PSH: flags&PSH != 0,
		ACK: flags&ACK != 0, URG: flags&URG != 0, ECE: flags&ECE != 0, CWR: flags&CWR != 0,
	}
	for _, o := range opts {
		o(t)
	}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolTCP, t, gopacket.Payload(payload))
}

// UDP returns a raw IP packet holding one UDP datagram from src to dst.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	return build(src.Addr(), dst.Addr(), layers.IPProtocolUDP, u, gopacket.Payload(payload))
}

// ICMPEcho returns an ICMP (IPv4) or ICMPv6 (IPv6) echo request, or echo
// reply when reply is set, with identifier id and sequence number seq.
func ICMPEcho(src, dst netip.Addr, id, seq uint16, reply bool) []byte {
	if src.Is4() {
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
		return build(src, dst, layers.IPProtocolICMPv4, ic)
	}
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	return build(src, dst, layers.IPProtocolICMPv6, ic, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq})
}

// ICMPv4Query returns an ICMPv4 message of type typ with identifier id and
// sequence number seq, and body after them: a timestamp, information or
// address mask query or reply (RFC 792, RFC 950).
func ICMPv4Query(src, dst netip.Addr, typ uint8, id, seq uint16, body []byte) []byte {
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return build(src, dst, layers.IPProtocolICMPv4, ic, gopacket.Payload(body))
}

// ICMPError returns an ICMP (IPv4) or ICMPv6 (IPv6) error of type typ and
// code code sent by from (the router or host that met the problem) to to,
// quoting quoted: usually a packet built by this package, or its first
// bytes (Quote). The 4 bytes after the checksum are zero.
func ICMPError(from, to netip.Addr, typ, code uint8, quoted []byte) []byte {
	if from.Is4() {
		// layers.ICMPv4 writes the 4 bytes after the checksum (Id, Seq).
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
		return build(from, to, layers.IPProtocolICMPv4, ic, gopacket.Payload(quoted))
	}
	// layers.ICMPv6 writes only type, code and checksum.
	body := append(make([]byte, 4, 4+len(quoted)), quoted...)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	return build(from, to, layers.IPProtocolICMPv6, ic, gopacket.Payload(body))
}

// Quote returns what an ICMP error quotes of packet, as routers do
// (RFC 792): its IP header and the first 8 bytes after it (for IPv6, the
// 40-byte header and 8 bytes; extension headers are not followed).
func Quote(packet []byte) []byte {
	n := 48
	if len(packet) > 0 && packet[0]>>4 == 4 {
		n = int(packet[0]&0x0f)*4 + 8
	}
	return packet[:min(n, len(packet))]
}

// Fragment splits a raw IPv4 or IPv6 packet built by this package (an IPv6
// packet without extension headers) into fragments carrying at most size
// bytes of its IP payload each; size is rounded down to a multiple of 8
// and must be at least 8. IPv6 fragments get a fragment header with
// identification id; IPv4 fragments get id in the identification field.
func Fragment(packet []byte, size int, id uint32) [][]byte {
	size &^= 7
	if size < 8 {
		panic(fmt.Sprintf("packettest: fragment size %d below 8", size))
	}
	var frags [][]byte
	if packet[0]>>4 == 4 {
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(packet, gopacket.NilDecodeFeedback); err != nil {
			panic("packettest: Fragment: " + err.Error())
		}
		body := ip.Payload
		for off := 0; off < len(body); off += size {
			end := min(off+size, len(body))
			f := ip
			f.Options, f.Padding = nil, nil
			f.Id = uint16(id)
			f.FragOffset = uint16(off / 8)
			if end < len(body) {
				f.Flags |= layers.IPv4MoreFragments
			}
			frags = append(frags, serialize(&f, gopacket.Payload(body[off:end])))
		}
		return frags
	}
	var ip layers.IPv6
	if err := ip.DecodeFromBytes(packet, gopacket.NilDecodeFeedback); err != nil {
		panic("packettest: Fragment: " + err.Error())
	}
	body, next := ip.Payload, ip.NextHeader
	for off := 0; off < len(body); off += size {
		end := min(off+size, len(body))
		f := ip
		f.NextHeader = layers.IPProtocolIPv6Fragment
		fh := &layers.IPv6Fragment{NextHeader: next, FragmentOffset: uint16(off / 8),
			MoreFragments: end < len(body), Identification: id}
		frags = append(frags, serialize(&f, fh, gopacket.Payload(body[off:end])))
	}
	return frags
}

// Ethernet wraps a raw IPv4 or IPv6 packet in an Ethernet frame, with one
// 802.1Q tag per entry of vlans (outermost first). gopacket pads the frame
// to the 60-byte Ethernet minimum, as a NIC would.
func Ethernet(packet []byte, vlans ...uint16) []byte {
	etherType := layers.EthernetTypeIPv6
	if len(packet) > 0 && packet[0]>>4 == 4 {
		etherType = layers.EthernetTypeIPv4
	}
	ls := []gopacket.SerializableLayer{&layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		DstMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeDot1Q,
	}}
	for _, v := range vlans {
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: v, Type: layers.EthernetTypeDot1Q})
	}
	switch last := ls[len(ls)-1].(type) {
	case *layers.Ethernet:
		last.EthernetType = etherType
	case *layers.Dot1Q:
		last.Type = etherType
	}
	return serialize(append(ls, gopacket.Payload(packet))...)
}

// networkLayer is an IP layer that can also serve a TCP, UDP or ICMPv6
// layer's checksum.
type networkLayer interface {
	gopacket.SerializableLayer
	gopacket.NetworkLayer
}

// build serializes an IP header for src and dst followed by the given
// transport layers.
func build(src, dst netip.Addr, proto layers.IPProtocol, ls ...gopacket.SerializableLayer) []byte {
	if !src.IsValid() || !dst.IsValid() {
		panic(fmt.Sprintf("packettest: invalid address in %v -> %v", src, dst))
	}
	if src.Is4() != dst.Is4() {
		panic(fmt.Sprintf("packettest: mixed address families %v -> %v", src, dst))
	}
	var ip networkLayer
	if src.Is4() {
		ip = &layers.IPv4{Version: 4, TTL: TTL, Protocol: proto,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: TTL, NextHeader: proto,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	for _, l := range ls {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			if err := c.SetNetworkLayerForChecksum(ip); err != nil {
				panic("packettest: " + err.Error())
			}
		}
	}
	return serialize(append([]gopacket.SerializableLayer{ip}, ls...)...)
}

// serialize runs gopacket's serialization with lengths and checksums fixed.
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic("packettest: " + err.Error())
	}
	return buf.Bytes()
}
