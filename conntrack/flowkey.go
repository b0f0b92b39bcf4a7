package conntrack

import (
	"encoding/binary"
	"net/netip"
)

// flowKey is the table's internal key: both endpoints in a canonical order
// (the smaller address and port first), so one map entry serves both
// directions. It holds no pointers, which keeps hashing cheap and the map
// invisible to the garbage collector's scan.
// An ICMP query's key keeps its query type, and the answer flag as seen
// from endpoint a.
type flowKey struct {
	a, b   [16]byte
	pa, pb uint16
	proto  uint8
	query  uint8
	answer bool
	v6     bool
}

func canonical(k Key) flowKey {
	a, b := k.Src.As16(), k.Dst.As16()
	pa, pb := k.SrcPort, k.DstPort
	answer := k.Answer
	switch {
	case less(&b, pb, &a, pa):
		a, b, pa, pb = b, a, pb, pa
		answer = k.Query != 0 && !answer
	case a == b && pa == pb:
		answer = false // a host pinging itself: one key for both directions
	}
	return flowKey{a: a, b: b, pa: pa, pb: pb, proto: k.Proto, query: k.Query, answer: answer, v6: k.Src.Is6()}
}

// less orders endpoints by address, then port, comparing the addresses as
// two big-endian 64-bit halves.
func less(a *[16]byte, pa uint16, b *[16]byte, pb uint16) bool {
	ah, bh := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8])
	if ah != bh {
		return ah < bh
	}
	al, bl := binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:])
	if al != bl {
		return al < bl
	}
	return pa < pb
}

// expectKey indexes expectations by what the first packet of the expected
// connection carries, except its source port (which may be "any").
type expectKey struct {
	src, dst [16]byte
	dport    uint16
	proto    uint8
	v6       bool
}

func expectKeyOf(proto uint8, src, dst netip.Addr, dport uint16) expectKey {
	return expectKey{src: src.As16(), dst: dst.As16(), dport: dport, proto: proto, v6: src.Is6()}
}
