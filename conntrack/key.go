package conntrack

import (
	"fmt"
	"net/netip"

	"github.com/inspectd/inspectd/internal/decode"
)

// Key identifies a flow in one direction: protocol, addresses and ports.
// It is comparable and holds no pointers that need allocating, so it can
// key a map directly.
//
// For an ICMP query and its reply (echo; for ICMPv4 also timestamp,
// information and address mask) the ports hold the query's identifier,
// Query the query's type, and Answer is set in the reply's direction. A
// responder's own queries, with the same identifier, are then a flow of
// their own and not the replies of the initiator's session, as in Linux's
// conntrack, which keys ICMP by type.
type Key struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Query            uint8
	Answer           bool
}

// KeyOf returns the flow key of a decoded packet, in the packet's direction.
func KeyOf(p *decode.Packet) Key {
	return Key{Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto,
		Query: p.ICMPQuery, Answer: p.ICMPAnswer}
}

// QuotedKey returns the flow key of the packet an ICMP error quotes, in
// the quoted packet's direction.
func QuotedKey(q *decode.Quoted) Key {
	return Key{Src: q.Src, Dst: q.Dst, SrcPort: q.SrcPort, DstPort: q.DstPort, Proto: q.Proto,
		Query: q.ICMPQuery, Answer: q.ICMPAnswer}
}

// Reverse returns the key of the opposite direction.
func (k Key) Reverse() Key {
	return Key{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto,
		Query: k.Query, Answer: k.Query != 0 && !k.Answer}
}

// Orient turns traffic counters of flow k (indexed by direction: k's
// sender first) into the same flow's counters seen from key to, and
// reports whether to is k or its reverse; otherwise it returns them as
// they are.
func (k Key) Orient(to Key, packets, bytes [2]uint64) ([2]uint64, [2]uint64, bool) {
	switch to {
	case k:
		return packets, bytes, true
	case k.Reverse():
		return [2]uint64{packets[1], packets[0]}, [2]uint64{bytes[1], bytes[0]}, true
	}
	return packets, bytes, false
}

// String formats the key as "proto src:port -> dst:port" (IPv6 in brackets).
func (k Key) String() string {
	return fmt.Sprintf("%s %s -> %s", ProtoName(k.Proto),
		netip.AddrPortFrom(k.Src, k.SrcPort), netip.AddrPortFrom(k.Dst, k.DstPort))
}

// ProtoName returns the conventional name of an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case decode.ProtoTCP:
		return "tcp"
	case decode.ProtoUDP:
		return "udp"
	case decode.ProtoICMP:
		return "icmp"
	case decode.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto-%d", p)
}

// Dir is a packet's direction within a session.
type Dir uint8

// Directions: Original is the initiator's (client's) direction, Reply the
// responder's.
const (
	Original Dir = 0
	Reply    Dir = 1
)

// String returns "original" or "reply".
func (d Dir) String() string {
	if d == Original {
		return "original"
	}
	return "reply"
}
