// Package decode turns raw packet bytes into a Packet: the addresses, ports,
// TCP header fields and payload that the engine needs, without allocating.
//
// The live daemon hands over raw IPv4 or IPv6 packets (what NFQUEUE
// delivers); replay hands over link-layer frames (Ethernet, Linux cooked
// SLL and SLL2, or raw IP). Decoding uses gopacket's layer decoders into
// preallocated layers held by a Decoder, so a Decoder is not safe for
// concurrent use: keep one per worker.
package decode

import "net/netip"

// IP protocol numbers the engine tracks.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits as they appear in byte 13 of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// Packet is one decoded packet. All slices alias the buffer passed to the
// decoder and are valid only until that buffer is reused.
type Packet struct {
	// Src and Dst are the network-layer addresses (IPv4 addresses are
	// plain 4-byte netip.Addr values, never IPv4-mapped IPv6).
	Src, Dst netip.Addr
	// Proto is the transport protocol (ProtoTCP, ProtoUDP, ProtoICMP,
	// ProtoICMPv6, or another number for protocols the engine does not
	// track).
	Proto uint8
	// SrcPort and DstPort are the TCP or UDP ports. For an ICMP query or
	// its reply (ICMPQuery) both hold the query's identifier, so an echo
	// exchange has a flow key like a UDP exchange.
	SrcPort, DstPort uint16

	// TCP fields, valid when Proto == ProtoTCP.
	Flags  uint8  // TCP flag bits (TCPSyn, TCPAck, ...)
	Seq    uint32 // sequence number
	Ack    uint32 // acknowledgement number
	Window uint16 // raw window field (not scaled)
	Urgent uint16 // urgent pointer (meaningful when Flags has TCPUrg)
	// WScale is the window scale option (capped at 14) and HasWScale
	// tells whether the segment carried it. Options are read on SYN
	// segments only (the only ones where they count); on other segments
	// these fields are zero.
	WScale    uint8
	HasWScale bool
	// SACKPermitted tells whether the SYN carried the SACK-permitted option.
	SACKPermitted bool

	// ICMP fields, valid when Proto is ProtoICMP or ProtoICMPv6.
	ICMPType, ICMPCode uint8
	// ICMPQuery and ICMPAnswer classify the type (ICMPQuery): the type of
	// the query the message belongs to, 0 for a message that is neither a
	// query nor a query's reply, and whether it is the reply.
	ICMPQuery  uint8
	ICMPAnswer bool
	// ICMPError is true for ICMP errors (destination unreachable, time
	// exceeded, parameter problem, packet too big) that quote an earlier
	// packet; Inner then describes the quoted packet's flow.
	ICMPError bool
	// Inner holds the addresses, protocol and ports of the packet quoted
	// by an ICMP error, in the direction the quoted packet travelled.
	Inner Quoted

	// Payload is the transport payload (TCP data, UDP data up to the UDP
	// length, or the ICMP body after the 8-byte header), never reaching
	// past the IP total length (link-layer padding is cut off). For a
	// non-first fragment, and for protocols the decoder does not parse,
	// it is the whole IP payload.
	Payload []byte
	// Length is the length of the whole IP packet in bytes (the IPv4
	// total length, or 40 plus the IPv6 payload length).
	Length int
	// Fragment is true for a non-first IP fragment: it carries no
	// transport header, so ports and flags are zero.
	Fragment bool
	// MoreFragments is true for a first fragment whose datagram continues
	// in later fragments.
	MoreFragments bool
}

// Quoted is the flow of the packet quoted inside an ICMP error.
type Quoted struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	// ICMPQuery and ICMPAnswer classify the quoted packet's ICMP type,
	// as Packet's fields of the same names do.
	ICMPQuery  uint8
	ICMPAnswer bool
}

// IsIPv6 reports whether the packet is IPv6.
func (p *Packet) IsIPv6() bool { return p.Src.Is6() }
