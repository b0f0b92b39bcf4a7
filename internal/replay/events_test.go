package replay

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/capture"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
)

// frames is a frame source for synthetic captures: the frames, then err
// (io.EOF when nil).
type frames struct {
	fs  []capture.Frame
	err error
}

func (s *frames) Next() (capture.Frame, error) {
	if len(s.fs) == 0 {
		if s.err != nil {
			return capture.Frame{}, s.err
		}
		return capture.Frame{}, io.EOF
	}
	f := s.fs[0]
	s.fs = s.fs[1:]
	return f, nil
}

// rrq returns raw IP frames of TFTP read requests from 192.168.1.2 to the
// server of tftp.rules, one at each time.
func rrq(ts ...time.Time) []capture.Frame {
	var fs []capture.Frame
	for i, t := range ts {
		pkt := packettest.UDP(netip.AddrPortFrom(netip.MustParseAddr("192.168.1.2"), uint16(50000+i)),
			netip.MustParseAddrPort("192.168.1.1:69"), []byte("\x00\x01boot.cfg\x00octet\x00"))
		fs = append(fs, capture.Frame{Data: pkt, Time: t, Link: layers.LinkTypeRaw, Index: i + 1})
	}
	return fs
}

// TestEvents checks that the packets that added or used an expectation,
// or that made an inspector note something, show it: in the text report
// on indented lines under the packet's line, and in the JSON objects.
func TestEvents(t *testing.T) {
	g := goldens[1] // ftp_ftp-download-passive.pcap
	capPath, rulesPath, _ := g.paths()
	var out bytes.Buffer
	if _, err := Run(capPath, Options{Rules: mustRules(t, rulesPath), JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	dec := jsonLines(t, &out)
	added := map[uint64]int{} // expectation → packet that added it
	uses := 0
	for _, p := range dec {
		for _, ev := range p.Events {
			switch ev.Kind {
			case "expect-add":
				added[ev.Expect.ID] = p.Packet
				if ev.Reason != "ftp PASV" || ev.Expect.Parent != p.Session || !strings.HasSuffix(ev.Expect.Src, ":any") {
					t.Errorf("packet %d: %+v %+v", p.Packet, ev, ev.Expect)
				}
			case "expect-use":
				uses++
				if _, ok := added[ev.Expect.ID]; !ok || p.Reason != inspect.ReasonRelated {
					t.Errorf("packet %d (%s) uses expectation %d that no earlier packet added", p.Packet, p.Reason, ev.Expect.ID)
				}
			default:
				t.Errorf("packet %d: unexpected event %+v", p.Packet, ev)
			}
		}
		if p.Reason == inspect.ReasonRelated && len(p.Events) != 1 {
			t.Errorf("related packet %d has events %+v, want its expect-use", p.Packet, p.Events)
		}
	}
	if len(added) != g.related || uses != g.related {
		t.Errorf("%d expectations added, %d used; want %d", len(added), uses, g.related)
	}

	// Notes, in text, on the line after their packet's.
	for _, tc := range []struct {
		g      golden
		packet int
		note   string
	}{
		{goldens[8], 21, "ftp: AUTH TLS accepted, control channel encrypted, inspection stops"},
		{goldens[9], 24, "ftp: 227 reply without an address and port, nothing opened"},
		{goldens[9], 32, "ftp: malformed PORT argument, nothing opened"},
	} {
		capPath, rulesPath, _ := tc.g.paths()
		out.Reset()
		if _, err := Run(capPath, Options{Rules: mustRules(t, rulesPath)}, &out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(out.String(), "\n")
		i := slices.Index(lines, eventIndent+"note: "+tc.note)
		if i < 1 || !strings.HasPrefix(lines[i-1], fmt.Sprintf("%6d ", tc.packet)) {
			t.Errorf("%s: no note %q under packet %d:\n%s", tc.g.capture, tc.note, tc.packet, out.String())
		}
		if n := strings.Count(out.String(), "\n"+eventIndent+"note: "); n != 1 && tc.g == goldens[8] {
			t.Errorf("%s: %d event lines, want 1", tc.g.capture, n)
		}
	}
}

// TestExpireEvent checks that an expectation found expired shows under
// the packet during which the engine found it.
func TestExpireEvent(t *testing.T) {
	src, err := os.ReadFile("testdata/tftp.rules")
	if err != nil {
		t.Fatal(err)
	}
	// The expectation expires before the session it belongs to (udp-idle
	// 30s), which would take it along, silently.
	rs, err := rules.Parse("tftp.rules", append(src, "timeouts { tftp-expect 5s }\n"...))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	sum, err := run(&frames{fs: rrq(t0, t0.Add(10*time.Second))}, "expire", Options{Rules: rs}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Expectations.Added != 2 || sum.Expectations.Expired != 1 {
		t.Fatalf("expectations %+v, want 2 added, 1 expired", sum.Expectations)
	}
	lines := strings.Split(out.String(), "\n")
	want := []string{
		eventIndent + "expect-add x2 of s1 (tftp RRQ): udp 192.168.1.1:any > 192.168.1.2:50000 until 12:00:05.000000",
		eventIndent + "expect-expire x2 of s1 (tftp RRQ): udp 192.168.1.1:any > 192.168.1.2:50000, unused",
	}
	if len(lines) < 5 || lines[1] != want[0] || !strings.HasPrefix(lines[2], "     2 ") || !slices.Contains(lines[3:5], want[1]) {
		t.Errorf("report:\n%s\nwant, under packets 1 and 2:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

// jsonLines decodes the packet objects of a --json report.
func jsonLines(t *testing.T, r io.Reader) []Packet {
	t.Helper()
	var ps []Packet
	for _, l := range strings.Split(strings.TrimSpace(readAll(t, r)), "\n") {
		if strings.HasPrefix(l, `{"summary":`) {
			continue
		}
		var p Packet
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		ps = append(ps, p)
	}
	return ps
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExpectBeyondEnd checks that expected verdicts for packets the
// capture lacks are mismatches, and that lines within it are not.
func TestExpectBeyondEnd(t *testing.T) {
	g := goldens[0] // 63 packets
	capPath, rulesPath, _ := g.paths()
	rs := mustRules(t, rulesPath)
	for _, tc := range []struct {
		expect string
		want   []string // lines of the report; none: no mismatch
	}{
		{"1000 drop\n", []string{
			"MISMATCH line 1: expected packet 1000, but the capture has 63 packets",
			"MISMATCHES: expected verdicts for packets beyond the end of the capture (1 line)"}},
		{"1-63 accept\n# end\n60-70 accept\n", []string{
			"MISMATCH line 3: expected packets 60-70, but the capture has 63 packets"}},
		{"1 drop\n64 accept\n", []string{
			"MISMATCH packet 1: expected drop (line 1), got accept (rule)",
			"MISMATCH line 2: expected packet 64, but the capture has 63 packets",
			"MISMATCHES: 1 packet got another verdict than expected",
			"MISMATCHES: expected verdicts for packets beyond the end of the capture (1 line)"}},
		{"1-63 accept\n63 accept\n* accept\n", nil},
	} {
		exp, err := ParseExpect(strings.NewReader(tc.expect), "t.expect")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		sum, err := Run(capPath, Options{Rules: rs, Quiet: true, Expect: exp}, &out)
		if tc.want == nil {
			if err != nil || sum.Mismatches != 0 {
				t.Errorf("%q: %v\n%s", tc.expect, err, out.String())
			}
			continue
		}
		if !errors.Is(err, ErrMismatch) {
			t.Errorf("%q: error %v, want ErrMismatch", tc.expect, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w+"\n") {
				t.Errorf("%q: report lacks %q:\n%s", tc.expect, w, out.String())
			}
		}
	}
}

// TestReadError checks that a capture cut short reports the packets read
// before the error, in text and JSON, and nothing when there are none.
func TestReadError(t *testing.T) {
	g := goldens[0]
	capPath, rulesPath, _ := g.paths()
	rs := mustRules(t, rulesPath)
	data, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cut := filepath.Join(dir, "cut.pcap")
	if err := os.WriteFile(cut, data[:3000], 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var written bytes.Buffer
	sum, err := Run(cut, Options{Rules: rs, Quiet: true, WriteExpect: &written}, &out)
	if err == nil || !strings.Contains(err.Error(), "truncated record") || sum == nil || sum.Packets == 0 {
		t.Fatalf("err %v, summary %+v; want a truncation error after some packets", err, sum)
	}
	if !strings.Contains(out.String(), cut+": "+plural(sum.Packets, "packet", "packets")+", ") {
		t.Errorf("no summary of the %d packets read:\n%s", sum.Packets, out.String())
	}
	out.Reset()
	if _, err := Run(cut, Options{Rules: rs, JSON: true}, &out); err == nil ||
		!strings.Contains(out.String(), `{"summary":{"capture":"`+cut+`","packets":`) {
		t.Errorf("JSON: err %v, no summary:\n%s", err, out.String())
	}
	first := filepath.Join(dir, "first.pcap")
	if err := os.WriteFile(first, data[:24+10], 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if _, err := Run(first, Options{Rules: rs}, &out); err == nil || out.Len() != 0 {
		t.Errorf("cut in packet 1: err %v, report %q; want an error only", err, out.String())
	}
}

// pcapWithLink returns a pcap file of one raw IP packet whose header
// gives link type link.
func pcapWithLink(link layers.LinkType) []byte {
	pkt := rrq(time.Unix(0, 0))[0].Data
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, uint32(link))
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
	return append(b, pkt...)
}

// TestLinkTypes checks that a capture of a link type replay does not
// read fails at its first packet of that type, naming the type and the
// ones replay reads, and that DLT_RAW's values are read as raw IP.
func TestLinkTypes(t *testing.T) {
	rs := mustRules(t, "testdata/tftp.rules")
	dir := t.TempDir()
	for _, link := range []layers.LinkType{12, 14, layers.LinkTypeRaw} {
		path := filepath.Join(dir, "raw.pcap")
		if err := os.WriteFile(path, pcapWithLink(link), 0o644); err != nil {
			t.Fatal(err)
		}
		if sum, err := Run(path, Options{Rules: rs, Quiet: true}, io.Discard); err != nil || sum.Accepted != 1 {
			t.Errorf("link type %d: %v %+v", link, err, sum)
		}
	}
	path := filepath.Join(dir, "wifi.pcap")
	if err := os.WriteFile(path, pcapWithLink(layers.LinkTypeIEEE802_11), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, err := Run(path, Options{Rules: rs}, &out)
	if err == nil || out.Len() != 0 || !strings.HasPrefix(err.Error(), path+": packet 1: link type 105 is not supported; replay reads link types 0 (BSD loopback), 1 (Ethernet), 101 (raw IP, also as 12 or 14),") {
		t.Errorf("err %v, report %q", err, out.String())
	}

	// pcapng: a second interface, of a type replay does not read.
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeRaw, SnapLength: 65535}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	usb, err := w.AddInterface(pcapgo.NgInterface{Name: "usbmon0", LinkType: layers.LinkTypeLinuxUSB, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range rrq(time.Unix(0, 0), time.Unix(1, 0)) {
		ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: len(f.Data), InterfaceIndex: []int{0, usb}[i]}
		if err := w.WritePacket(ci, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "mixed.pcapng")
	if err := os.WriteFile(path, ng.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	sum, err := Run(path, Options{Rules: rs, Quiet: true}, &out)
	if err == nil || !strings.HasPrefix(err.Error(), path+": packet 2 (interface usbmon0): link type 220 is not supported") ||
		sum.Packets != 1 || !strings.Contains(out.String(), path+": 1 packet, 1 accepted") {
		t.Errorf("err %v, report %q", err, out.String())
	}
}

// TestExpectFile checks that an expected-verdicts file appears only when
// committed, and that a discarded one leaves an older file as it was.
func TestExpectFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.expect")
	x, err := CreateExpectFile(path)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(x, "1 accept rule\n")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("before Commit: %v", err)
	}
	if err := x.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "1 accept rule\n" {
		t.Fatalf("after Commit: %q, %v", b, err)
	}
	x, err = CreateExpectFile(path)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(x, "partial")
	x.Discard()
	if b, err := os.ReadFile(path); err != nil || string(b) != "1 accept rule\n" {
		t.Errorf("after Discard: %q, %v; want the older file", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left in %s: %v", dir, ents)
	}
	bad := filepath.Join(dir, "no", "such", "x.expect")
	if _, err := CreateExpectFile(bad); err == nil || err.Error() != "cannot create "+bad+": no such file or directory" {
		t.Errorf("missing directory: %v", err)
	}
}
