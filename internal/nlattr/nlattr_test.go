package nlattr

import (
	"encoding/binary"
	"testing"
)

func attr(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(hdrLen+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

type seen struct {
	typ uint16
	v   string
}

func walk(b []byte) ([]seen, bool) {
	var got []seen
	ok := Each(b, func(typ uint16, v []byte) { got = append(got, seen{typ, string(v)}) })
	return got, ok
}

func TestEach(t *testing.T) {
	b := append(attr(1, []byte("abc")), attr(2|0x8000, nil)...) // padded, then nested flag
	b = append(b, attr(3|0x4000, []byte("12345678"))...)
	got, ok := walk(b)
	want := []seen{{1, "abc"}, {2, ""}, {3, "12345678"}}
	if !ok || len(got) != len(want) {
		t.Fatalf("Each = %v, %v; want %v", got, ok, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("attribute %d = %v, want %v", i, got[i], want[i])
		}
	}
	// The last attribute's padding may be missing.
	if got, ok := walk(attr(1, []byte("abc"))[:7]); !ok || len(got) != 1 || got[0].v != "abc" {
		t.Errorf("unpadded last attribute: %v, %v", got, ok)
	}
	// A length past the end, or shorter than the header: false, after
	// the attributes before it.
	cut := append(attr(1, []byte("ab")), 0xff, 0, 2, 0)
	if got, ok := walk(cut); ok || len(got) != 1 {
		t.Errorf("length past the end: %v, %v", got, ok)
	}
	if got, ok := walk([]byte{2, 0, 1, 0}); ok || len(got) != 0 {
		t.Errorf("length under the header: %v, %v", got, ok)
	}
	if got, ok := walk(nil); !ok || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, ok)
	}
}

func TestUint32(t *testing.T) {
	if got := Uint32([]byte{1, 2, 3, 4, 5}); got != 0x01020304 {
		t.Errorf("Uint32 = %#x", got)
	}
	if got := Uint32([]byte{1, 2, 3}); got != 0 {
		t.Errorf("short Uint32 = %#x", got)
	}
}
