package decode

import (
	"testing"
	"unsafe"

	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/internal/packettest"
)

// fuzzLinks are the link types FuzzDecode feeds every input through.
var fuzzLinks = []layers.LinkType{
	layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw,
	layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop,
}

func FuzzDecode(f *testing.F) {
	for _, pkt := range hotPackets() {
		f.Add(pkt)
		f.Add(packettest.Ethernet(pkt, 3))
		f.Add(cat(sll(0x86dd), pkt))
		f.Add(cat(sll2(0x0800), pkt))
		f.Add(cat(le32(2), pkt))
	}
	f.Add(withIPv4Options(packettest.UDP(cli4, srv4, []byte("x")), []byte{1, 1, 1, 0}))
	f.Add(packettest.Fragment(packettest.TCP(cli4, srv4, packettest.ACK, 1, 2, make([]byte, 40)), 16, 3)[0])
	f.Add(packettest.ICMPError(rtr6, cli6.Addr(), 1, 0, withIPv6Ext(packettest.UDP(cli6, srv6, nil), []uint8{protoFragment}, []byte{0, 0, 0, 1, 0, 0, 0, 1})))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Packet
		if err := d.IP(data, &p); err == nil {
			checkInvariants(t, data, &p)
			if end := payloadOffset(t, data, p.Payload) + len(p.Payload); end > p.Length {
				t.Errorf("IP: payload ends at %d, beyond the IP length %d", end, p.Length)
			}
		}
		for _, link := range fuzzLinks {
			if err := d.Frame(link, data, &p); err == nil {
				checkInvariants(t, data, &p)
			}
		}
	})
}

// checkInvariants checks what holds for every successfully decoded packet.
func checkInvariants(t *testing.T, data []byte, p *Packet) {
	t.Helper()
	payloadOffset(t, data, p.Payload)
	if p.Length > len(data) || p.Length < 20 {
		t.Errorf("Length %d with %d bytes of data", p.Length, len(data))
	}
	if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
		t.Errorf("addresses %v -> %v", p.Src, p.Dst)
	}
	if p.Fragment && (p.SrcPort != 0 || p.DstPort != 0 || p.Flags != 0 || p.ICMPError || p.MoreFragments) {
		t.Errorf("non-first fragment with transport fields: %+v", p)
	}
	if p.HasWScale && p.WScale > 14 {
		t.Errorf("WScale %d above 14", p.WScale)
	}
	if p.ICMPError && (!p.Inner.Src.IsValid() || p.Inner.Src.Is4() != p.Src.Is4()) {
		t.Errorf("ICMP error with quoted addresses %v -> %v", p.Inner.Src, p.Inner.Dst)
	}
}

// payloadOffset returns where payload starts in data, failing the test
// when payload does not lie within data.
func payloadOffset(t *testing.T, data, payload []byte) int {
	t.Helper()
	if len(payload) == 0 {
		return 0
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(payload))) - start)
	if off < 0 || off+len(payload) > len(data) {
		t.Fatalf("payload [%d:%d] outside data of %d bytes", off, off+len(payload), len(data))
	}
	return off
}
