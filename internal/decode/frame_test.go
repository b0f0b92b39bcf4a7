package decode

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/internal/packettest"
)

// sll returns a Linux cooked capture (v1) header for etherType.
func sll(etherType uint16) []byte {
	h := make([]byte, sllLen)
	binary.BigEndian.PutUint16(h[2:4], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:6], 6)
	binary.BigEndian.PutUint16(h[14:16], etherType)
	return h
}

// sll2 returns a Linux cooked capture v2 header for etherType.
func sll2(etherType uint16) []byte {
	h := make([]byte, sll2Len)
	binary.BigEndian.PutUint16(h[0:2], etherType)
	binary.BigEndian.PutUint32(h[4:8], 2) // interface index
	binary.BigEndian.PutUint16(h[8:10], 1)
	return h
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func TestFrame(t *testing.T) {
	udp4 := packettest.UDP(cli4, srv4, []byte("hi")) // 30 bytes: Ethernet pads it
	tcp6 := packettest.TCP(cli6, srv6, packettest.ACK, 1, 2, []byte("hello"))
	for _, tc := range []struct {
		name  string
		link  layers.LinkType
		frame []byte
		ip    []byte
	}{
		{"ethernet v4 padded", layers.LinkTypeEthernet, packettest.Ethernet(udp4), udp4},
		{"ethernet v6", layers.LinkTypeEthernet, packettest.Ethernet(tcp6), tcp6},
		{"802.1Q", layers.LinkTypeEthernet, packettest.Ethernet(udp4, 10), udp4},
		{"QinQ", layers.LinkTypeEthernet, packettest.Ethernet(tcp6, 100, 200), tcp6},
		{"SLL v4", layers.LinkTypeLinuxSLL, cat(sll(0x0800), udp4), udp4},
		{"SLL v6", layers.LinkTypeLinuxSLL, cat(sll(0x86dd), tcp6), tcp6},
		{"SLL2 v4", layers.LinkTypeLinuxSLL2, cat(sll2(0x0800), udp4), udp4},
		{"SLL2 v6", layers.LinkTypeLinuxSLL2, cat(sll2(0x86dd), tcp6), tcp6},
		{"raw v4", layers.LinkTypeRaw, udp4, udp4},
		{"raw v6", layers.LinkTypeRaw, tcp6, tcp6},
		{"IPv4", layers.LinkTypeIPv4, udp4, udp4},
		{"IPv6", layers.LinkTypeIPv6, tcp6, tcp6},
		{"null little-endian AF_INET", layers.LinkTypeNull, cat(le32(2), udp4), udp4},
		{"null big-endian AF_INET6 (FreeBSD)", layers.LinkTypeNull, cat(be32(28), tcp6), tcp6},
		{"null AF_INET6 (Darwin)", layers.LinkTypeNull, cat(le32(30), tcp6), tcp6},
		{"loop AF_INET6 (OpenBSD)", layers.LinkTypeLoop, cat(be32(24), tcp6), tcp6},
		{"loop AF_INET", layers.LinkTypeLoop, cat(be32(2), udp4), udp4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, want Packet
			d := NewDecoder()
			if err := d.Frame(tc.link, tc.frame, &got); err != nil {
				t.Fatalf("Frame: %v", err)
			}
			if err := d.IP(tc.ip, &want); err != nil {
				t.Fatal(err)
			}
			checkPacket(t, got, want, want.Payload)
		})
	}
}

func TestFrameErrors(t *testing.T) {
	udp4 := packettest.UDP(cli4, srv4, nil)
	tcp6 := packettest.TCP(cli6, srv6, packettest.ACK, 1, 2, nil)
	arp := packettest.Ethernet(udp4)
	arp[12], arp[13] = 0x08, 0x06
	tags := packettest.Ethernet(udp4, 1, 2, 3, 4, 5)
	for _, tc := range []struct {
		name  string
		link  layers.LinkType
		frame []byte
		want  error
	}{
		{"ARP", layers.LinkTypeEthernet, arp, ErrNotIP},
		{"short ethernet", layers.LinkTypeEthernet, arp[:13], ErrTruncated},
		{"ethernet header only", layers.LinkTypeEthernet, packettest.Ethernet(udp4)[:14], ErrTruncated},
		{"VLAN tag cut", layers.LinkTypeEthernet, packettest.Ethernet(udp4, 7)[:16], ErrTruncated},
		{"too many VLAN tags", layers.LinkTypeEthernet, tags, ErrNotIP},
		{"ethertype v4, version 6", layers.LinkTypeEthernet, cat(packettest.Ethernet(udp4)[:14], tcp6), ErrBadIPHeader},
		{"short SLL", layers.LinkTypeLinuxSLL, sll(0x0800)[:15], ErrTruncated},
		{"SLL ARP", layers.LinkTypeLinuxSLL, cat(sll(0x0806), udp4), ErrNotIP},
		{"short SLL2", layers.LinkTypeLinuxSLL2, sll2(0x0800)[:19], ErrTruncated},
		{"LinkTypeIPv4 carrying v6", layers.LinkTypeIPv4, tcp6, ErrBadIPHeader},
		{"LinkTypeIPv6 carrying v4", layers.LinkTypeIPv6, udp4, ErrBadIPHeader},
		{"LinkTypeIPv6 empty", layers.LinkTypeIPv6, nil, ErrTruncated},
		{"raw garbage", layers.LinkTypeRaw, []byte{0x12, 0x34}, ErrNotIP},
		{"short null", layers.LinkTypeNull, []byte{2, 0, 0}, ErrTruncated},
		{"null AF 7", layers.LinkTypeNull, cat(le32(7), udp4), ErrNotIP},
		{"802.11", layers.LinkTypeIEEE802_11, udp4, ErrUnsupportedLink},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			if err := NewDecoder().Frame(tc.link, tc.frame, &p); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
