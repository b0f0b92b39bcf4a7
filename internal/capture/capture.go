// Package capture reads packet captures for replay: pcap (microsecond or
// nanosecond timestamps, either byte order) and pcapng (any number of
// interfaces, each with its own link type and name), plain or
// gzip-compressed. The format is recognised by its magic number, never
// by the file name. Link types are passed on as the file gives them,
// except DLT_RAW's platform values 12 and 14, which become LinkTypeRaw.
//
// Reading is done by gopacket's pcapgo readers; this package detects the
// format, keeps the packet numbers, bounds what one packet may cost (see
// MaxPerFrame), and turns errors into messages that name the file and the
// packet.
package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Frame is one captured packet.
type Frame struct {
	// Data is the captured bytes, starting at the link-layer header. It
	// is reused by the next call to Next: copy it to keep it.
	Data []byte
	// Time is the capture timestamp (UTC; zero for pcapng simple packet
	// blocks, which carry none).
	Time time.Time
	// Link is the link type of the interface the packet was captured on,
	// LinkTypeRaw for the DLT_RAW values 12 and 14 (see linkType).
	Link layers.LinkType
	// Interface is the pcapng interface name, "" when the file gives none
	// (always "" for pcap files).
	Interface string
	// Index is the 1-based packet number in the file.
	Index int
}

// Magic numbers, as the first four bytes of a file read big-endian.
const (
	magicPcapMicroLE = 0xd4c3b2a1
	magicPcapMicroBE = 0xa1b2c3d4
	magicPcapNanoLE  = 0x4d3cb2a1
	magicPcapNanoBE  = 0xa1b23c4d
	magicPcapng      = 0x0a0d0d0a // section header block type, a palindrome
	magicGzip        = 0x1f8b     // first two bytes
)

// packetSource is what pcapgo's pcap and pcapng readers have in common.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Reader reads the frames of one capture file. It is not safe for
// concurrent use.
type Reader struct {
	name   string
	src    packetSource
	pcap   *pcapgo.Reader   // set for pcap files
	ng     *pcapgo.NgReader // set for pcapng files
	gz     *gzip.Reader     // set for gzip-compressed files
	lim    *frameLimit      // what the pcapgo reader reads through
	file   *os.File         // set when Open opened the file
	n      int              // frames returned so far
	err    error            // sticky: returned by every Next after the first error or io.EOF
	closed bool
}

// Open opens the capture file at path. Errors name the path.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError already names the path
	}
	r, err := NewReader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader reads a capture from rd; name identifies it in error messages
// (usually the file name). Close does not close rd.
func NewReader(rd io.Reader, name string) (*Reader, error) {
	r := &Reader{name: name}
	br := bufio.NewReader(rd)
	head, err := br.Peek(4)
	if len(head) >= 2 && binary.BigEndian.Uint16(head) == magicGzip {
		if r.gz, err = gzip.NewReader(br); err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", name, err)
		}
		br = bufio.NewReader(r.gz)
		head, err = br.Peek(4)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: not a pcap or pcapng file (%d bytes)", name, len(head))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.lim = &frameLimit{r: br}
	switch magic := binary.BigEndian.Uint32(head); magic {
	case magicPcapMicroLE, magicPcapMicroBE, magicPcapNanoLE, magicPcapNanoBE:
		if r.pcap, err = pcapgo.NewReader(r.lim); err != nil {
			return nil, fmt.Errorf("%s: bad pcap header: %w", name, eofIsTruncation(err))
		}
		r.src = r.pcap
	case magicPcapng:
		if r.ng, err = pcapgo.NewNgReader(r.lim, pcapgo.NgReaderOptions{WantMixedLinkType: true}); err != nil {
			return nil, fmt.Errorf("%s: bad pcapng header: %w", name, eofIsTruncation(err))
		}
		r.src = r.ng
	default:
		return nil, fmt.Errorf("%s: not a pcap or pcapng file (magic 0x%08x)", name, magic)
	}
	return r, nil
}

// MaxPerFrame bounds the bytes read for one frame: its record and the
// pcapng blocks before it (interface descriptions, name resolution,
// statistics). Capture tools write records of at most 256 KiB (libpcap's
// largest snap length) and a few blocks between packets, but gzip lets a
// small file hold gigabytes of either, which pcapgo would keep in memory
// (a record whole, every interface description for good).
const MaxPerFrame = 1 << 20

// MaxInterfaces and MaxNames bound the interface descriptions and name
// resolution records of a pcapng section, which pcapgo keeps for the
// section's life: a file could otherwise add just under MaxPerFrame of
// them before each packet.
const (
	MaxInterfaces = 4096
	MaxNames      = 1 << 16
)

// errFrameTooBig is what frameLimit reads when a frame costs more than
// MaxPerFrame.
var errFrameTooBig = fmt.Errorf("more than %d MiB read for one packet: a record or pcapng blocks larger than any capture tool writes", MaxPerFrame>>20)

// frameLimit passes reads through until MaxPerFrame bytes were read since
// the last frame (reset).
type frameLimit struct {
	r io.Reader
	n int
}

func (l *frameLimit) Read(p []byte) (int, error) {
	if l.n >= MaxPerFrame {
		return 0, errFrameTooBig
	}
	if len(p) > MaxPerFrame-l.n {
		p = p[:MaxPerFrame-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

// eofIsTruncation reports a file that ends inside a header or record as
// io.ErrUnexpectedEOF: there, io.EOF would wrongly look like a clean end.
func eofIsTruncation(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Next returns the next frame, or io.EOF after the last one. A damaged or
// truncated record gives an error naming the file and the packet number;
// after an error (or io.EOF) Next keeps returning it. The frame's Data is
// valid until the next call.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	if r.closed {
		return Frame{}, fmt.Errorf("%s: reader is closed", r.name)
	}
	data, ci, err := r.src.ZeroCopyReadPacketData()
	if err != nil {
		if err == io.EOF {
			r.err = io.EOF
		} else if r.lim.n >= MaxPerFrame {
			r.err = fmt.Errorf("%s: packet %d: %w", r.name, r.n+1, errFrameTooBig)
		} else if errors.Is(err, io.ErrUnexpectedEOF) {
			r.err = fmt.Errorf("%s: packet %d: truncated record (the file ends inside it): %w", r.name, r.n+1, err)
		} else {
			r.err = fmt.Errorf("%s: packet %d: %w", r.name, r.n+1, err)
		}
		return Frame{}, r.err
	}
	r.n++
	r.lim.n = 0
	f := Frame{Data: data, Time: ci.Timestamp, Index: r.n}
	if r.pcap != nil {
		f.Link = linkType(r.pcap.LinkType())
		return f, nil
	}
	if n, names := r.ng.NInterfaces(), r.ng.NNames(); n > MaxInterfaces || names > MaxNames {
		r.err = fmt.Errorf("%s: packet %d: the section has %d interface descriptions and %d name records, more than any capture tool writes (at most %d and %d)",
			r.name, r.n, n, names, MaxInterfaces, MaxNames)
		return Frame{}, r.err
	}
	// pcapgo checked the interface index when it read the packet block.
	intf, err := r.ng.Interface(ci.InterfaceIndex)
	if err != nil {
		r.err = fmt.Errorf("%s: packet %d: %w", r.name, r.n, err)
		return Frame{}, r.err
	}
	f.Link, f.Interface = linkType(intf.LinkType), intf.Name
	return f, nil
}

// DLT_RAW's values: some tools write the platform's DLT value instead of
// LINKTYPE_RAW (101), 12 on most systems and 14 on OpenBSD.
const (
	dltRaw        layers.LinkType = 12
	dltRawOpenBSD layers.LinkType = 14
)

// linkType returns the link type a file gives, with DLT_RAW's platform
// values turned into LinkTypeRaw: raw IP, as Wireshark reads them.
func linkType(t layers.LinkType) layers.LinkType {
	if t == dltRaw || t == dltRawOpenBSD {
		return layers.LinkTypeRaw
	}
	return t
}

// Close releases the reader, and closes the file when Open opened it.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.gz != nil {
		err = r.gz.Close()
	}
	if r.file != nil {
		err = errors.Join(err, r.file.Close())
	}
	return err
}
