package decode

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// Decoding errors. They are constants fit to be a verdict reason: a packet
// that fails to decode is dropped with the error's text as the reason.
var (
	// ErrTruncated: the bytes end before a header does, or before the
	// length the IP header announces.
	ErrTruncated = errors.New("decode: truncated packet")
	// ErrNotIP: the frame carries something other than IPv4 or IPv6
	// (ARP, LLDP, ...), or the IP version nibble is neither 4 nor 6.
	ErrNotIP = errors.New("decode: not an IP packet")
	// ErrBadIPHeader: the IPv4 header length or total length is
	// inconsistent, or the version disagrees with the link layer.
	ErrBadIPHeader = errors.New("decode: bad IP header")
	// ErrIPv6ExtHeaders: the IPv6 extension header chain is longer than
	// MaxIPv6ExtHeaders.
	ErrIPv6ExtHeaders = errors.New("decode: too many IPv6 extension headers")
	// ErrBadTCPHeader: the TCP data offset is below 5 words or beyond the
	// end of the IP packet.
	ErrBadTCPHeader = errors.New("decode: bad TCP header")
	// ErrBadUDPHeader: the UDP length is below 8 or beyond the end of the
	// IP packet.
	ErrBadUDPHeader = errors.New("decode: bad UDP header")
	// ErrICMPQuote: an ICMP error quotes a packet too short to tell its
	// addresses, protocol and ports.
	ErrICMPQuote = errors.New("decode: ICMP error quotes a truncated or bad packet")
	// ErrUnsupportedLink: Frame was given a link type it does not decode.
	ErrUnsupportedLink = errors.New("decode: unsupported link type")
)

// MaxIPv6ExtHeaders bounds the IPv6 extension headers walked before the
// transport header; a longer chain is refused with ErrIPv6ExtHeaders.
const MaxIPv6ExtHeaders = 8

// maxVLANTags bounds the 802.1Q/802.1ad tags skipped in one frame.
const maxVLANTags = 4

// Link-layer constants.
const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherTypeVLAN   = 0x8100 // 802.1Q
	etherTypeQinQ   = 0x88a8 // 802.1ad
	etherTypeQinQv1 = 0x9100 // pre-standard QinQ

	ethernetLen = 14
	sllLen      = 16
	sll2Len     = 20
	nullLen     = 4
)

// IP protocol numbers of IPv6 extension headers and friends.
const (
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoESP      = 50
	protoAH       = 51
	protoNoNext   = 59
	protoDstOpts  = 60
)

// ICMP types the decoder distinguishes.
const (
	icmp4EchoReply   = 0
	icmp4Unreachable = 3
	icmp4SourceQnch  = 4
	icmp4Redirect    = 5
	icmp4Echo        = 8
	icmp4TimeExcd    = 11
	icmp4ParamProb   = 12
	icmp4Timestamp   = 13 // 14 its reply
	icmp4Info        = 15 // 16 its reply
	icmp4Mask        = 17 // 18 its reply

	icmp6Unreachable = 1
	icmp6TooBig      = 2
	icmp6TimeExcd    = 3
	icmp6ParamProb   = 4
	icmp6Echo        = 128
	icmp6EchoReply   = 129
)

// Decoder decodes packets into Packet values without allocating. It is
// decoded by hand rather than with gopacket's DecodingLayerParser: the
// benchmarks in this package measure gopacket's layers at several times the
// cost for the same fields (see BenchmarkGopacketIPv4TCP). A Decoder holds
// no per-packet state today, but callers keep one per worker so that it may
// grow reusable buffers without changing the API; it is not safe for
// concurrent use.
type Decoder struct{}

// NewDecoder returns a Decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// IP decodes a raw IPv4 or IPv6 packet (what NFQUEUE delivers), choosing
// the version from the first nibble. *p is overwritten entirely; its
// slices alias data.
func (d *Decoder) IP(data []byte, p *Packet) error {
	*p = Packet{}
	if len(data) == 0 {
		return ErrTruncated
	}
	switch data[0] >> 4 {
	case 4:
		return decodeIPv4(data, p)
	case 6:
		return decodeIPv6(data, p)
	}
	return ErrNotIP
}

// LinkTypes are the link types Frame reads, with their names for
// messages.
var LinkTypes = []struct {
	Type layers.LinkType
	Name string
}{
	{layers.LinkTypeNull, "BSD loopback"},
	{layers.LinkTypeEthernet, "Ethernet"},
	{layers.LinkTypeRaw, "raw IP"},
	{layers.LinkTypeLoop, "OpenBSD loopback"},
	{layers.LinkTypeLinuxSLL, "Linux cooked"},
	{layers.LinkTypeIPv4, "raw IPv4"},
	{layers.LinkTypeIPv6, "raw IPv6"},
	{layers.LinkTypeLinuxSLL2, "Linux cooked v2"},
}

// ReadsLink reports whether Frame reads link type t (one of LinkTypes).
func ReadsLink(t layers.LinkType) bool {
	for _, l := range LinkTypes {
		if l.Type == t {
			return true
		}
	}
	return false
}

// Frame decodes a link-layer frame as read from a capture: Ethernet (with
// 802.1Q/802.1ad tags), Linux cooked capture v1 and v2, raw IP
// (LinkTypeRaw, LinkTypeIPv4, LinkTypeIPv6) and BSD loopback (LinkTypeNull,
// LinkTypeLoop). Frames that carry no IP packet give ErrNotIP. *p is
// overwritten entirely; its slices alias data.
func (d *Decoder) Frame(link layers.LinkType, data []byte, p *Packet) error {
	*p = Packet{}
	switch link {
	case layers.LinkTypeEthernet:
		if len(data) < ethernetLen {
			return ErrTruncated
		}
		return etherPayload(binary.BigEndian.Uint16(data[12:14]), data[ethernetLen:], p)
	case layers.LinkTypeLinuxSLL:
		if len(data) < sllLen {
			return ErrTruncated
		}
		return etherPayload(binary.BigEndian.Uint16(data[14:16]), data[sllLen:], p)
	case layers.LinkTypeLinuxSLL2:
		if len(data) < sll2Len {
			return ErrTruncated
		}
		return etherPayload(binary.BigEndian.Uint16(data[0:2]), data[sll2Len:], p)
	case layers.LinkTypeRaw:
		return d.IP(data, p)
	case layers.LinkTypeIPv4:
		return ipVersion(4, data, p)
	case layers.LinkTypeIPv6:
		return ipVersion(6, data, p)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(data) < nullLen {
			return ErrTruncated
		}
		return nullPayload(data, p)
	}
	return ErrUnsupportedLink
}

// etherPayload decodes what follows an EtherType, skipping VLAN tags.
func etherPayload(etherType uint16, data []byte, p *Packet) error {
	for range maxVLANTags {
		if etherType != etherTypeVLAN && etherType != etherTypeQinQ && etherType != etherTypeQinQv1 {
			break
		}
		if len(data) < 4 {
			return ErrTruncated
		}
		etherType = binary.BigEndian.Uint16(data[2:4])
		data = data[4:]
	}
	switch etherType {
	case etherTypeIPv4:
		return ipVersion(4, data, p)
	case etherTypeIPv6:
		return ipVersion(6, data, p)
	}
	return ErrNotIP
}

// nullPayload decodes a BSD loopback frame: a 4-byte address family in the
// capturing host's byte order (LinkTypeNull) or big-endian (LinkTypeLoop),
// then the IP packet. Both byte orders are accepted for both types.
func nullPayload(data []byte, p *Packet) error {
	af := binary.LittleEndian.Uint32(data[0:4])
	if af > 0xffff {
		af = binary.BigEndian.Uint32(data[0:4])
	}
	switch af {
	case 2: // AF_INET everywhere
		return ipVersion(4, data[nullLen:], p)
	case 10, 24, 28, 30: // AF_INET6: Linux, NetBSD/OpenBSD, FreeBSD, Darwin
		return ipVersion(6, data[nullLen:], p)
	}
	return ErrNotIP
}

// ipVersion decodes an IP packet whose version the link layer announced.
func ipVersion(version byte, data []byte, p *Packet) error {
	if len(data) == 0 {
		return ErrTruncated
	}
	if data[0]>>4 != version {
		return ErrBadIPHeader
	}
	if version == 4 {
		return decodeIPv4(data, p)
	}
	return decodeIPv6(data, p)
}

// decodeIPv4 decodes an IPv4 packet whose version nibble is 4.
func decodeIPv4(data []byte, p *Packet) error {
	if len(data) < 20 {
		return ErrTruncated
	}
	ihl := int(data[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(data[2:4]))
	if ihl < 20 || total < ihl {
		return ErrBadIPHeader
	}
	if total > len(data) {
		return ErrTruncated
	}
	data = data[:total]
	p.Src = netip.AddrFrom4([4]byte(data[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(data[16:20]))
	p.Proto = data[9]
	p.Length = total
	frag := binary.BigEndian.Uint16(data[6:8])
	if frag&0x1fff != 0 {
		p.Fragment = true
		p.Payload = data[ihl:]
		return nil
	}
	p.MoreFragments = frag&0x2000 != 0
	return transport(data[ihl:], p)
}

// decodeIPv6 decodes an IPv6 packet whose version nibble is 6.
func decodeIPv6(data []byte, p *Packet) error {
	if len(data) < 40 {
		return ErrTruncated
	}
	total := 40 + int(binary.BigEndian.Uint16(data[4:6]))
	if total > len(data) {
		return ErrTruncated
	}
	data = data[:total]
	p.Src = netip.AddrFrom16([16]byte(data[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(data[24:40]))
	p.Length = total
	proto, off, frag, more, err := walkIPv6(data)
	if err != nil {
		return err
	}
	p.Proto, p.Fragment, p.MoreFragments = proto, frag, more
	if p.Fragment || proto == protoESP || proto == protoNoNext {
		p.Payload = data[off:]
		return nil
	}
	return transport(data[off:], p)
}

// walkIPv6 walks the extension headers of the IPv6 packet data (header
// included) and returns the upper-layer protocol and its offset, and
// whether a fragment header made it a non-first fragment (frag; the walk
// stops there and proto is the protocol that header names) or a first
// fragment with more to come (more).
func walkIPv6(data []byte) (proto uint8, off int, frag, more bool, err error) {
	proto, off = data[6], 40
	for range MaxIPv6ExtHeaders + 1 {
		var n int
		switch proto {
		case protoHopByHop, protoRouting, protoDstOpts:
			if len(data)-off < 8 {
				return 0, 0, false, false, ErrTruncated
			}
			n = (int(data[off+1]) + 1) * 8
		case protoAH:
			if len(data)-off < 8 {
				return 0, 0, false, false, ErrTruncated
			}
			n = (int(data[off+1]) + 2) * 4
		case protoFragment:
			if len(data)-off < 8 {
				return 0, 0, false, false, ErrTruncated
			}
			n = 8
			fo := binary.BigEndian.Uint16(data[off+2 : off+4])
			if fo&0xfff8 != 0 {
				return data[off], off + n, true, false, nil
			}
			more = fo&1 != 0
		default:
			return proto, off, false, more, nil
		}
		if len(data)-off < n {
			return 0, 0, false, false, ErrTruncated
		}
		proto = data[off]
		off += n
	}
	return 0, 0, false, false, ErrIPv6ExtHeaders
}

// transport decodes the transport header at the start of seg (the IP
// payload of a non-fragment or first fragment). p.Proto is set.
func transport(seg []byte, p *Packet) error {
	switch p.Proto {
	case ProtoTCP:
		return decodeTCP(seg, p)
	case ProtoUDP:
		return decodeUDP(seg, p)
	case ProtoICMP, ProtoICMPv6:
		return decodeICMP(seg, p)
	}
	p.Payload = seg
	return nil
}

// decodeTCP decodes a TCP header and, on SYN segments, its options.
func decodeTCP(seg []byte, p *Packet) error {
	if len(seg) < 20 {
		return ErrTruncated
	}
	off := int(seg[12]>>4) * 4
	if off < 20 || off > len(seg) {
		return ErrBadTCPHeader
	}
	p.SrcPort = binary.BigEndian.Uint16(seg[0:2])
	p.DstPort = binary.BigEndian.Uint16(seg[2:4])
	p.Seq = binary.BigEndian.Uint32(seg[4:8])
	p.Ack = binary.BigEndian.Uint32(seg[8:12])
	p.Flags = seg[13]
	p.Window = binary.BigEndian.Uint16(seg[14:16])
	p.Urgent = binary.BigEndian.Uint16(seg[18:20])
	if p.Flags&TCPSyn != 0 && off > 20 {
		tcpOptions(seg[20:off], p)
	}
	p.Payload = seg[off:]
	return nil
}

// TCP option kinds.
const (
	tcpOptEnd       = 0
	tcpOptNOP       = 1
	tcpOptWScale    = 3
	tcpOptSACKPerm  = 4
	maxWindowScale  = 14
	tcpOptWScaleLen = 3
	tcpOptSACKLen   = 2
)

// tcpOptions reads the window scale and SACK-permitted options. Like the
// Linux stack it stops at the first malformed option and keeps what it
// found before it.
func tcpOptions(opts []byte, p *Packet) {
	for len(opts) > 0 {
		kind := opts[0]
		if kind == tcpOptEnd {
			return
		}
		if kind == tcpOptNOP {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 {
			return
		}
		n := int(opts[1])
		if n < 2 || n > len(opts) {
			return
		}
		switch {
		case kind == tcpOptWScale && n == tcpOptWScaleLen:
			p.WScale = min(opts[2], maxWindowScale)
			p.HasWScale = true
		case kind == tcpOptSACKPerm && n == tcpOptSACKLen:
			p.SACKPermitted = true
		}
		opts = opts[n:]
	}
}

// decodeUDP decodes a UDP header. The payload is trimmed to the UDP
// length; a first fragment's UDP length covers later fragments too, so
// there the payload is what this fragment holds.
func decodeUDP(seg []byte, p *Packet) error {
	if len(seg) < 8 {
		return ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(seg[4:6]))
	if n < 8 || (n > len(seg) && !p.MoreFragments) {
		return ErrBadUDPHeader
	}
	p.SrcPort = binary.BigEndian.Uint16(seg[0:2])
	p.DstPort = binary.BigEndian.Uint16(seg[2:4])
	p.Payload = seg[8:min(n, len(seg))]
	return nil
}

// decodeICMP decodes an ICMP or ICMPv6 header (p.Proto says which).
// Every ICMPv4 message has an 8-byte header; an ICMPv6 message may be 4
// bytes, except echo messages and errors.
func decodeICMP(seg []byte, p *Packet) error {
	if len(seg) < 4 {
		return ErrTruncated
	}
	p.ICMPType, p.ICMPCode = seg[0], seg[1]
	p.ICMPQuery, p.ICMPAnswer = ICMPQuery(p.Proto, p.ICMPType)
	isErr := isICMPError(p.Proto, p.ICMPType)
	if len(seg) < 8 {
		if p.Proto == ProtoICMP || p.ICMPQuery != 0 || isErr {
			return ErrTruncated
		}
		p.Payload = seg[len(seg):]
		return nil
	}
	p.Payload = seg[8:]
	switch {
	case p.ICMPQuery != 0:
		id := binary.BigEndian.Uint16(seg[4:6])
		p.SrcPort, p.DstPort = id, id
	case isErr:
		p.ICMPError = true
		if p.Proto == ProtoICMP {
			return quotedIPv4(seg[8:], &p.Inner)
		}
		return quotedIPv6(seg[8:], &p.Inner)
	}
	return nil
}

// ICMPQuery tells whether an ICMP type of protocol proto (ProtoICMP or
// ProtoICMPv6) is a query or a query's reply, messages that carry an
// identifier (the decoder puts it in both SrcPort and DstPort): echo, and
// for ICMPv4 also timestamp, information and address mask. request is the
// type of the exchange's query, 0 when typ is neither; reply tells whether
// typ is the reply.
func ICMPQuery(proto, typ uint8) (request uint8, reply bool) {
	if proto == ProtoICMPv6 {
		switch typ {
		case icmp6Echo:
			return icmp6Echo, false
		case icmp6EchoReply:
			return icmp6Echo, true
		}
		return 0, false
	}
	switch typ {
	case icmp4Echo:
		return icmp4Echo, false
	case icmp4EchoReply:
		return icmp4Echo, true
	case icmp4Timestamp, icmp4Info, icmp4Mask:
		return typ, false
	case icmp4Timestamp + 1, icmp4Info + 1, icmp4Mask + 1:
		return typ - 1, true
	}
	return 0, false
}

// isICMPError reports whether an ICMP type of protocol proto is an error
// that quotes the packet that caused it.
func isICMPError(proto, typ uint8) bool {
	if proto == ProtoICMP {
		switch typ {
		case icmp4Unreachable, icmp4SourceQnch, icmp4Redirect, icmp4TimeExcd, icmp4ParamProb:
			return true
		}
		return false
	}
	return typ >= icmp6Unreachable && typ <= icmp6ParamProb
}

// quotedIPv4 decodes the IPv4 packet quoted by an ICMPv4 error. The quote
// usually ends 8 bytes into the transport header, so its lengths are not
// checked against what is present.
func quotedIPv4(q []byte, in *Quoted) error {
	if len(q) < 20 || q[0]>>4 != 4 {
		return ErrICMPQuote
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || ihl > len(q) {
		return ErrICMPQuote
	}
	in.Src = netip.AddrFrom4([4]byte(q[12:16]))
	in.Dst = netip.AddrFrom4([4]byte(q[16:20]))
	in.Proto = q[9]
	if binary.BigEndian.Uint16(q[6:8])&0x1fff != 0 {
		return nil // a non-first fragment has no ports
	}
	return quotedPorts(q[ihl:], in)
}

// quotedIPv6 decodes the IPv6 packet quoted by an ICMPv6 error.
func quotedIPv6(q []byte, in *Quoted) error {
	if len(q) < 40 || q[0]>>4 != 6 {
		return ErrICMPQuote
	}
	in.Src = netip.AddrFrom16([16]byte(q[8:24]))
	in.Dst = netip.AddrFrom16([16]byte(q[24:40]))
	proto, off, frag, _, err := walkIPv6(q)
	if err != nil {
		return ErrICMPQuote
	}
	in.Proto = proto
	if frag {
		return nil
	}
	return quotedPorts(q[off:], in)
}

// quotedPorts reads the ports of a quoted transport header: TCP and UDP
// ports, or the ICMP echo identifier in both.
func quotedPorts(t []byte, in *Quoted) error {
	switch in.Proto {
	case ProtoTCP, ProtoUDP:
		if len(t) < 4 {
			return ErrICMPQuote
		}
		in.SrcPort = binary.BigEndian.Uint16(t[0:2])
		in.DstPort = binary.BigEndian.Uint16(t[2:4])
	case ProtoICMP, ProtoICMPv6:
		if len(t) < 1 {
			return ErrICMPQuote
		}
		if in.ICMPQuery, in.ICMPAnswer = ICMPQuery(in.Proto, t[0]); in.ICMPQuery != 0 {
			if len(t) < 6 {
				return ErrICMPQuote
			}
			id := binary.BigEndian.Uint16(t[4:6])
			in.SrcPort, in.DstPort = id, id
		}
	}
	return nil
}
