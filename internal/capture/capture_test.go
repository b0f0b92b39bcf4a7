package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/internal/packettest"
)

// realCaptures are the copies in testdata (see testdata/SOURCES.md) with
// what they hold.
var realCaptures = []struct {
	file    string
	packets int
	link    layers.LinkType
	ipv6    int // packets whose outer IP header is IPv6
	proto41 int // IPv6-in-IPv4 packets (decoded as IPv4 protocol 41)
}{
	{"tcpdump-tftp.pcap", 7, layers.LinkTypeEthernet, 0, 0},
	{"suricata-ftp-port-memcap.pcap", 18, layers.LinkTypeNull, 0, 0},
	{"suricata-bug-5758.pcap", 41, layers.LinkTypeRaw, 0, 0},
	{"zeek-ftp-ipv6-multiline-reply.pcap", 50, layers.LinkTypeEthernet, 50, 0},
	{"pcapplusplus-ftp.pcap", 10, layers.LinkTypeEthernet, 0, 2},
	{"arkime-ftp.pcap", 10, layers.LinkTypeEthernet, 0, 0},
}

// drain reads r to its end or first error: the frames read, and the
// error (io.EOF at a clean end).
func drain(r *Reader) (int, error) {
	for n := 0; ; n++ {
		if _, err := r.Next(); err != nil {
			return n, err
		}
	}
}

// readAll reads every frame of r, copying the data.
func readAll(t *testing.T, r *Reader) []Frame {
	t.Helper()
	var frames []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return frames
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", len(frames), err)
		}
		f.Data = append([]byte(nil), f.Data...)
		frames = append(frames, f)
	}
}

func readFile(t *testing.T, path string) []Frame {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return readAll(t, r)
}

// TestRealCaptures reads every kept capture and decodes every packet.
func TestRealCaptures(t *testing.T) {
	d := decode.NewDecoder()
	for _, c := range realCaptures {
		t.Run(c.file, func(t *testing.T) {
			frames := readFile(t, filepath.Join("testdata", c.file))
			if len(frames) != c.packets {
				t.Errorf("%d frames, want %d", len(frames), c.packets)
			}
			var ipv6, proto41 int
			var last time.Time
			for i, f := range frames {
				if f.Index != i+1 || f.Link != c.link || f.Interface != "" {
					t.Errorf("frame %d: Index %d Link %v Interface %q", i+1, f.Index, f.Link, f.Interface)
				}
				if f.Time.Before(last) || f.Time.Year() < 2000 {
					t.Errorf("frame %d: time %v after %v", f.Index, f.Time, last)
				}
				last = f.Time
				var p decode.Packet
				if err := d.Frame(f.Link, f.Data, &p); err != nil {
					t.Errorf("frame %d: %v", f.Index, err)
					continue
				}
				if p.IsIPv6() {
					ipv6++
				}
				if p.Proto == 41 {
					proto41++
					continue
				}
				compareWithGopacket(t, f, &p)
			}
			if ipv6 != c.ipv6 || proto41 != c.proto41 {
				t.Errorf("%d IPv6 and %d 6in4 packets, want %d and %d", ipv6, proto41, c.ipv6, c.proto41)
			}
		})
	}
}

// compareWithGopacket checks a decoded packet against gopacket's own
// decoding of the same frame.
func compareWithGopacket(t *testing.T, f Frame, p *decode.Packet) {
	t.Helper()
	gp := gopacket.NewPacket(f.Data, f.Link, gopacket.Default)
	var src, dst []byte
	switch ip := gp.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst = ip.SrcIP, ip.DstIP
	case *layers.IPv6:
		src, dst = ip.SrcIP, ip.DstIP
	default:
		t.Errorf("frame %d: gopacket finds no IP layer", f.Index)
		return
	}
	if !bytes.Equal(p.Src.AsSlice(), src) || !bytes.Equal(p.Dst.AsSlice(), dst) {
		t.Errorf("frame %d: addresses %v -> %v, gopacket %v -> %v", f.Index, p.Src, p.Dst, src, dst)
	}
	switch l := gp.TransportLayer().(type) {
	case *layers.TCP:
		if p.Proto != decode.ProtoTCP || p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) ||
			p.Seq != l.Seq || p.Ack != l.Ack || p.Window != l.Window || (p.Flags&decode.TCPSyn != 0) != l.SYN || (p.Flags&decode.TCPAck != 0) != l.ACK ||
			!bytes.Equal(p.Payload, l.Payload) {
			t.Errorf("frame %d: TCP %+v, gopacket %v", f.Index, p, l)
		}
	case *layers.UDP:
		if p.Proto != decode.ProtoUDP || p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) ||
			!bytes.Equal(p.Payload, l.Payload) {
			t.Errorf("frame %d: UDP %+v, gopacket %v", f.Index, p, l)
		}
	default:
		t.Errorf("frame %d: gopacket finds transport %T", f.Index, l)
	}
}

func TestTimestamps(t *testing.T) {
	// tcpdump -tt -r testdata/tcpdump-tftp.pcap: first packet 1433421113.718074.
	frames := readFile(t, "testdata/tcpdump-tftp.pcap")
	if want := time.Unix(1433421113, 718074000).UTC(); !frames[0].Time.Equal(want) {
		t.Errorf("first packet at %v, want %v", frames[0].Time, want)
	}
}

// gzipped returns data compressed with gzip.
func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGzip(t *testing.T) {
	plain, err := os.ReadFile("testdata/zeek-ftp-ipv6-multiline-reply.pcap")
	if err != nil {
		t.Fatal(err)
	}
	// Named like a plain pcap: the magic decides, not the name.
	path := filepath.Join(t.TempDir(), "capture.pcap")
	if err := os.WriteFile(path, gzipped(t, plain), 0o644); err != nil {
		t.Fatal(err)
	}
	got, want := readFile(t, path), readFile(t, "testdata/zeek-ftp-ipv6-multiline-reply.pcap")
	if len(got) != len(want) {
		t.Fatalf("%d frames from gzip, %d from plain", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, want[i].Data) || !got[i].Time.Equal(want[i].Time) || got[i].Link != want[i].Link {
			t.Errorf("frame %d differs", i+1)
		}
	}
}

// testPackets are raw IP packets for the captures the tests write.
func testPackets() [][]byte {
	a := netip.MustParseAddrPort("198.51.100.2:40000")
	b := netip.MustParseAddrPort("192.0.2.10:21")
	a6 := netip.MustParseAddrPort("[2001:db8::2]:40000")
	b6 := netip.MustParseAddrPort("[2001:db8:2::10]:69")
	return [][]byte{
		packettest.TCP(a, b, packettest.SYN, 1, 0, nil),
		packettest.UDP(a6, b6, []byte("\x00\x01f\x00octet\x00")),
		packettest.TCP(b, a, packettest.SYN|packettest.ACK, 9, 2, nil),
		packettest.ICMPEcho(a6.Addr(), b6.Addr(), 5, 1, false),
	}
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

// sll2Header returns a Linux cooked capture v2 header for an IP packet.
func sll2Header(pkt []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:2], 0x86dd)
	if pkt[0]>>4 == 4 {
		binary.BigEndian.PutUint16(h[0:2], 0x0800)
	}
	binary.BigEndian.PutUint32(h[4:8], 3)
	binary.BigEndian.PutUint16(h[8:10], 1)
	return h
}

func TestPcapngInterfaces(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf,
		pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tun, err := w.AddInterface(pcapgo.NgInterface{Name: "tun0", LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	cooked, err := w.AddInterface(pcapgo.NgInterface{LinkType: layers.LinkTypeLinuxSLL2, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	var wants []Frame
	for i, pkt := range testPackets() {
		for j, f := range []Frame{
			{Link: layers.LinkTypeEthernet, Interface: "eth0", Data: packettest.Ethernet(pkt)},
			{Link: layers.LinkTypeRaw, Interface: "tun0", Data: pkt},
			{Link: layers.LinkTypeLinuxSLL2, Data: append(sll2Header(pkt), pkt...)},
		} {
			f.Time = t0.Add(time.Duration(3*i+j) * time.Microsecond)
			f.Index = len(wants) + 1
			ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: len(f.Data),
				InterfaceIndex: []int{0, tun, cooked}[j]}
			if err := w.WritePacket(ci, f.Data); err != nil {
				t.Fatal(err)
			}
			wants = append(wants, f)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{buf.Bytes(), gzipped(t, buf.Bytes())} {
		r, err := NewReader(bytes.NewReader(data), "test.pcapng")
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, r)
		if len(got) != len(wants) {
			t.Fatalf("%d frames, want %d", len(got), len(wants))
		}
		d := decode.NewDecoder()
		for i, f := range got {
			w := wants[i]
			// pcapgo's NgWriter stores nanoseconds.
			if f.Index != w.Index || f.Link != w.Link || f.Interface != w.Interface ||
				!f.Time.Equal(w.Time) || !bytes.Equal(f.Data, w.Data) {
				t.Errorf("frame %d: got %v %v %q %v, want %v %v %q %v", i+1,
					f.Index, f.Link, f.Interface, f.Time, w.Index, w.Link, w.Interface, w.Time)
			}
			var p decode.Packet
			if err := d.Frame(f.Link, f.Data, &p); err != nil {
				t.Errorf("frame %d: %v", i+1, err)
			}
		}
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}
}

// pcapFile returns a pcap file of the test packets as raw IP, written by
// hand so that byte order and resolution can be chosen.
func pcapFile(order binary.AppendByteOrder, nanos bool) []byte {
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	var b []byte
	b = order.AppendUint32(b, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 65535)
	b = order.AppendUint32(b, uint32(layers.LinkTypeRaw))
	for i, pkt := range testPackets() {
		ts := t0.Add(time.Duration(i) * time.Millisecond)
		frac := ts.Nanosecond() / 1000
		if nanos {
			frac = ts.Nanosecond()
		}
		b = order.AppendUint32(b, uint32(ts.Unix()))
		b = order.AppendUint32(b, uint32(frac))
		b = order.AppendUint32(b, uint32(len(pkt)))
		b = order.AppendUint32(b, uint32(len(pkt)))
		b = append(b, pkt...)
	}
	return b
}

func TestPcapVariants(t *testing.T) {
	pkts := testPackets()
	for _, tc := range []struct {
		name  string
		order binary.AppendByteOrder
		nanos bool
	}{
		{"little-endian microseconds", binary.LittleEndian, false},
		{"big-endian microseconds", binary.BigEndian, false},
		{"little-endian nanoseconds", binary.LittleEndian, true},
		{"big-endian nanoseconds", binary.BigEndian, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(pcapFile(tc.order, tc.nanos)), "variant.pcap")
			if err != nil {
				t.Fatal(err)
			}
			frames := readAll(t, r)
			if len(frames) != len(pkts) {
				t.Fatalf("%d frames, want %d", len(frames), len(pkts))
			}
			for i, f := range frames {
				want := t0.Add(time.Duration(i) * time.Millisecond)
				if !tc.nanos {
					want = want.Truncate(time.Microsecond)
				}
				if !f.Time.Equal(want) || f.Link != layers.LinkTypeRaw || !bytes.Equal(f.Data, pkts[i]) || f.Index != i+1 {
					t.Errorf("frame %d: %v %v %d bytes", i+1, f.Time, f.Link, len(f.Data))
				}
			}
		})
	}
}

// TestDLTRaw checks that DLT_RAW's platform values, 12 and 14, read as
// LinkTypeRaw in pcap and pcapng files, and that other link types are
// passed on as they are.
func TestDLTRaw(t *testing.T) {
	for _, tc := range []struct{ file, want layers.LinkType }{
		{12, layers.LinkTypeRaw},
		{14, layers.LinkTypeRaw},
		{layers.LinkTypeRaw, layers.LinkTypeRaw},
		{layers.LinkTypeIEEE802_11, layers.LinkTypeIEEE802_11},
	} {
		pcap := pcapFile(binary.LittleEndian, false)
		binary.LittleEndian.PutUint32(pcap[20:], uint32(tc.file))
		var ng bytes.Buffer
		w, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "tun0", LinkType: tc.file, SnapLength: 65535}, pcapgo.NgWriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pkt := testPackets()[0]
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, data := range [][]byte{pcap, ng.Bytes()} {
			r, err := NewReader(bytes.NewReader(data), "dlt.pcap")
			if err != nil {
				t.Fatal(err)
			}
			frames := readAll(t, r)
			if len(frames) == 0 {
				t.Fatalf("link type %d: no frames", tc.file)
			}
			for _, f := range frames {
				if f.Link != tc.want {
					t.Errorf("link type %d in the file: frame %d has %d, want %d", tc.file, f.Index, f.Link, tc.want)
				}
			}
		}
	}
}

func TestDataReused(t *testing.T) {
	// Documented behaviour: Data is only valid until the next call. Check
	// that reading does not allocate a buffer per packet.
	file := pcapFile(binary.LittleEndian, false)
	r, err := NewReader(bytes.NewReader(file), "reuse.pcap")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1, func() {
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	})
	if allocs > 1 {
		t.Errorf("%v allocations for %d packets", allocs, len(testPackets()))
	}
}

func TestErrors(t *testing.T) {
	pcap := pcapFile(binary.LittleEndian, false)
	last := len(testPackets())
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkt := range testPackets() {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(pkt), Length: len(pkt)}, pkt); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	garbage := []byte("\x12\x34\x56\x78 this is not a capture at all")
	for _, tc := range []struct {
		name    string
		data    []byte
		atOpen  string // substring of the error from NewReader, or "" when it opens
		atNext  string // substring of the error from Next
		packets int    // frames read before the error
	}{
		{"empty", nil, "empty.pcap: not a pcap or pcapng file (0 bytes)", "", 0},
		{"three bytes", []byte{0xd4, 0xc3, 0xb2}, "not a pcap or pcapng file (3 bytes)", "", 0},
		{"garbage", garbage, "garbage: not a pcap or pcapng file (magic 0x12345678)", "", 0},
		{"gzip of garbage", gzipped(t, garbage), "not a pcap or pcapng file (magic 0x12345678)", "", 0},
		{"broken gzip header", []byte{0x1f, 0x8b, 0, 0, 0}, "gzip:", "", 0},
		{"pcap header cut", pcap[:20], "bad pcap header: unexpected EOF", "", 0},
		{"pcap version 9", append([]byte{0xd4, 0xc3, 0xb2, 0xa1, 9}, pcap[5:]...), "bad pcap header", "", 0},
		{"pcapng header cut", ng.Bytes()[:20], "bad pcapng header", "", 0},
		{"pcap last record cut", pcap[:len(pcap)-3], "", "packet 4: truncated record", last - 1},
		{"pcap last record header cut", pcap[:len(pcap)-len(testPackets()[last-1])-5], "", "packet 4: truncated record", last - 1},
		{"gzip pcap last record cut", gzipped(t, pcap[:len(pcap)-3]), "", "packet 4: truncated record", last - 1},
		{"gzip stream cut", gzipped(t, pcap)[:len(gzipped(t, pcap))-12], "", "truncated record", -1},
		{"pcapng last block cut", ng.Bytes()[:ng.Len()-6], "", "packet 4: truncated record", last - 1},
		{"pcap record longer than original", func() []byte {
			b := append([]byte(nil), pcap...)
			binary.LittleEndian.PutUint32(b[24+12:], 10) // original length of packet 1
			return b
		}(), "", "packet 1: capture length exceeds original packet length", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "") + ".pcap"
			if tc.name == "garbage" {
				name = "garbage"
			}
			r, err := NewReader(bytes.NewReader(tc.data), name)
			if tc.atOpen != "" {
				if err == nil || !strings.Contains(err.Error(), tc.atOpen) {
					t.Fatalf("NewReader error %v, want one containing %q", err, tc.atOpen)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, err := drain(r)
			if err == io.EOF || !strings.Contains(err.Error(), tc.atNext) || !strings.HasPrefix(err.Error(), name+": ") {
				t.Errorf("Next error %v, want one starting %q containing %q", err, name, tc.atNext)
			}
			if tc.packets >= 0 && n != tc.packets {
				t.Errorf("%d frames before the error, want %d", n, tc.packets)
			}
			if _, again := r.Next(); again != err {
				t.Errorf("second Next error %v, want the same %v", again, err)
			}
		})
	}
}

func TestOpenClose(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.pcap")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.pcap")
	if err := os.WriteFile(path, []byte("not a capture"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.HasPrefix(err.Error(), path+": not a pcap") {
		t.Errorf("Open of a bad file: %v", err)
	}
	r, err := Open("testdata/tcpdump-tftp.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Next after Close: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	pcap := pcapFile(binary.BigEndian, true)
	f.Add(pcap)
	f.Add(pcap[:len(pcap)-7])
	f.Add(gzipped(f, pcapFile(binary.LittleEndian, false)))
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		f.Fatal(err)
	}
	for _, pkt := range testPackets() {
		data := packettest.Ethernet(pkt)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Fatal(err)
	}
	f.Add(ng.Bytes())
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0xff})
	d := decode.NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		defer r.Close()
		for i := 1; ; i++ {
			fr, err := r.Next()
			if err != nil {
				if err != io.EOF && !strings.HasPrefix(err.Error(), "fuzz: ") {
					t.Errorf("error without the name: %v", err)
				}
				return
			}
			if fr.Index != i {
				t.Fatalf("frame %d has Index %d", i, fr.Index)
			}
			var p decode.Packet
			_ = d.Frame(fr.Link, fr.Data, &p) // must not panic; errors are fine here
		}
	})
}
