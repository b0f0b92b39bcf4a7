// Package nlattr walks netlink attributes without allocating. An
// attribute is a 16-bit length and a 16-bit type in host byte order, the
// value, and padding to a multiple of 4 bytes (struct nlattr). The queue
// reader (internal/nfq) and the kernel conntrack reader
// (internal/kconntrack) parse their messages with it.
package nlattr

import "encoding/binary"

// TypeMask clears the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags from an
// attribute type.
const TypeMask = 0x3fff

// hdrLen is the size of an attribute's header.
const hdrLen = 4

// Each calls fn with the type (flags masked off) and the value of every
// attribute of b, in order. It returns false when an attribute's length is
// shorter than its header or runs past b; fn has then seen the attributes
// before it. The values alias b.
func Each(b []byte, fn func(typ uint16, v []byte)) bool {
	for len(b) >= hdrLen {
		n := int(binary.NativeEndian.Uint16(b))
		if n < hdrLen || n > len(b) {
			return false
		}
		fn(binary.NativeEndian.Uint16(b[2:])&TypeMask, b[hdrLen:n])
		n = (n + 3) &^ 3
		if n >= len(b) {
			break
		}
		b = b[n:]
	}
	return true
}

// Uint32 reads a big-endian (network order) 32-bit value, 0 when v is too
// short.
func Uint32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}
