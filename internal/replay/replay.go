// Package replay runs captures through the engine, as `inspectd replay`
// does: one verdict per packet, a summary, and a check against a file of
// expected verdicts so that rule files can be tested in CI.
package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/capture"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/rules"
)

// Options configure a replay.
type Options struct {
	Rules *rules.Ruleset
	// JSON prints one JSON object per packet and a final summary object.
	JSON bool
	// Quiet prints only the summary (and mismatches).
	Quiet bool
	// Expect, when not nil, holds the expected verdicts; mismatches are
	// printed and counted.
	Expect []Expectation
	// PickUp and GapRecovery are passed to the engine (see
	// inspect.Options).
	PickUp      bool
	GapRecovery int
	// Progress, when not nil, receives a progress line about once a
	// second (stderr on a terminal).
	Progress io.Writer
	// WriteExpect, when not nil, receives the verdicts in the
	// expected-verdicts format, to be reviewed and kept as a golden file.
	WriteExpect io.Writer
}

// Packet is the verdict on one packet, as printed with --json.
type Packet struct {
	Packet  int       `json:"packet"`
	Time    time.Time `json:"time"`
	In      string    `json:"in"`
	Summary string    `json:"summary"`
	Verdict string    `json:"verdict"`
	Reason  string    `json:"reason"`
	Rule    string    `json:"rule"`
	Session uint64    `json:"session"`
	// Events is what else the engine reported while it judged the
	// packet, in order; absent when nothing.
	Events []Event `json:"events,omitempty"`
}

// Event is something the engine reported while it judged a packet,
// besides the verdict: an inspector's note (AUTH TLS seen, a malformed
// PORT ignored, ...), or an expectation (the hole an inspector opens for
// a data connection) added, used or expired.
type Event struct {
	// Kind is "note", "expect-add", "expect-use" or "expect-expire" (the
	// names of the inspect.EventKind values).
	Kind string `json:"kind"`
	// Reason is the note, or what the expectation is for ("ftp PASV").
	Reason string `json:"reason"`
	// Expect describes the expectation, for the expect-* kinds.
	Expect *inspect.ExpectInfo `json:"expect,omitempty"`
}

// String formats the event for the text report, e.g.
// "expect-add x1 of s1 (ftp PASV): tcp 198.51.100.2:any > 192.0.2.10:30050 until 12:00:01.000000".
func (e Event) String() string {
	x := e.Expect
	if x == nil {
		return e.Kind + ": " + e.Reason
	}
	s := fmt.Sprintf("%s x%d of s%d (%s): %s %s > %s", e.Kind, x.ID, x.Parent, x.What, x.Proto, x.Src, x.Dst)
	switch e.Kind {
	case inspect.ExpectAdd.String():
		s += " until " + x.Expires.UTC().Format(timeFormat)
	case inspect.ExpectExpire.String():
		s += ", unused"
	}
	return s
}

// timeFormat is how the text report prints times (in UTC).
const timeFormat = "15:04:05.000000"

// Summary totals a replay.
type Summary struct {
	Capture  string         `json:"capture"`
	Packets  int            `json:"packets"`
	Accepted int            `json:"accepted"`
	Dropped  int            `json:"dropped"`
	Verdicts map[string]int `json:"verdicts"` // "accept: session", "drop: default deny", ...
	Sessions struct {
		Opened  int            `json:"opened"`
		Related int            `json:"related"`
		ByALG   map[string]int `json:"by_alg"`
	} `json:"sessions"`
	Expectations struct {
		Added   int `json:"added"`
		Used    int `json:"used"`
		Expired int `json:"expired"`
	} `json:"expectations"`
	// Mismatches counts the packets that got another verdict than
	// expected and the expected-verdicts lines that name packets beyond
	// the end of the capture.
	Mismatches int `json:"mismatches"`
	beyond     int // the second kind of mismatch
}

// ErrMismatch is returned when packets got other verdicts than expected.
var ErrMismatch = errors.New("verdicts differ from the expected ones")

// Run replays one capture file and writes the report to out. A capture
// that cannot be read to its end (cut short, damaged, or with a link type
// replay does not read) gives an error; the summary of the packets read
// before it is still written, when there are any.
func Run(path string, opt Options, out io.Writer) (*Summary, error) {
	r, err := capture.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return run(r, path, opt, out)
}

type frameSource interface {
	Next() (capture.Frame, error)
}

func run(src frameSource, name string, opt Options, out io.Writer) (*Summary, error) {
	sum := &Summary{Capture: name, Verdicts: map[string]int{}}
	sum.Sessions.ByALG = map[string]int{}
	eng := inspect.New(opt.Rules, inspect.Options{PickUp: opt.PickUp, GapRecovery: opt.GapRecovery})
	var events []Event // those of the packet being judged
	eng.Subscribe(func(ev inspect.Event) {
		sum.count(ev)
		switch ev.Kind {
		case inspect.Note, inspect.ExpectAdd, inspect.ExpectUse, inspect.ExpectExpire:
			events = append(events, Event{Kind: ev.Kind.String(), Reason: ev.Reason, Expect: ev.Expect})
		}
	})
	dec := decode.NewDecoder()
	var pkt decode.Packet
	expected := newExpectIndex(opt.Expect)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false) // "a > b" as it is
	lastProgress := time.Now()
	var readErr error
	link, linkOK := layers.LinkType(0), false // the last link type checked
	for {
		f, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		if !linkOK || f.Link != link {
			if link, linkOK = f.Link, decode.ReadsLink(f.Link); !linkOK {
				readErr = unsupportedLink(name, f)
				break
			}
		}
		events = nil
		in := interfaceOf(opt.Rules, f.Interface, dec, f, &pkt)
		v := eng.ProcessFrame(f.Link, f.Data, inspect.Meta{Time: f.Time, In: in})
		rec := Packet{Packet: f.Index, Time: f.Time, In: in, Verdict: verdictWord(v), Reason: v.Reason,
			Rule: v.Rule, Session: v.Session, Events: events}
		if dec.Frame(f.Link, f.Data, &pkt) == nil {
			rec.Summary = describe(&pkt)
		} else {
			rec.Summary = fmt.Sprintf("undecodable frame, %d bytes", len(f.Data))
		}
		sum.Packets++
		if v.Accept {
			sum.Accepted++
		} else {
			sum.Dropped++
		}
		sum.Verdicts[rec.Verdict+": "+v.Reason]++
		mismatch := ""
		if opt.Expect != nil {
			if e := expected.lookup(f.Index); e != nil &&
				(e.Verdict != rec.Verdict || !strings.HasPrefix(rec.Reason, e.Reason)) {
				want := e.Verdict
				if e.Reason != "" {
					want += " (" + e.Reason + ")"
				}
				mismatch = fmt.Sprintf("MISMATCH packet %d: expected %s (line %d), got %s (%s)", f.Index, want, e.Line, rec.Verdict, rec.Reason)
				sum.Mismatches++
			}
		}
		switch {
		case opt.JSON && !opt.Quiet:
			if err := enc.Encode(rec); err != nil {
				return sum, err
			}
		case !opt.Quiet:
			fmt.Fprintln(out, formatLine(&rec))
			for _, ev := range rec.Events {
				fmt.Fprintln(out, eventIndent+ev.String())
			}
		}
		if mismatch != "" && !opt.JSON {
			fmt.Fprintln(out, mismatch)
		}
		if opt.WriteExpect != nil {
			fmt.Fprintf(opt.WriteExpect, "%d %s %s\n", f.Index, rec.Verdict, rec.Reason)
		}
		if opt.Progress != nil && time.Since(lastProgress) > time.Second {
			lastProgress = time.Now()
			fmt.Fprintf(opt.Progress, "\r%s: %d packets", name, sum.Packets)
		}
	}
	if opt.Progress != nil && sum.Packets > 0 {
		fmt.Fprintf(opt.Progress, "\r%s: %d packets\n", name, sum.Packets)
	}
	if readErr == nil {
		// Lines for packets the capture lacks are mistakes: a wrong
		// capture, or one cut shorter than when the file was written.
		for _, e := range opt.Expect {
			if e.First == 0 || e.Last <= sum.Packets {
				continue
			}
			sum.Mismatches++
			sum.beyond++
			if !opt.JSON {
				fmt.Fprintf(out, "MISMATCH line %d: expected %s, but the capture has %s\n", e.Line, e.packets(), plural(sum.Packets, "packet", "packets"))
			}
		}
	} else if sum.Packets == 0 {
		return sum, readErr
	}
	if opt.JSON {
		if err := enc.Encode(map[string]*Summary{"summary": sum}); err != nil {
			return sum, err
		}
	} else {
		sum.print(out)
	}
	if readErr != nil {
		return sum, readErr
	}
	if sum.Mismatches > 0 {
		return sum, fmt.Errorf("%s: %s: %w", name, plural(sum.Mismatches, "mismatch", "mismatches"), ErrMismatch)
	}
	return sum, nil
}

// eventIndent starts the line of an event, under the packet's line.
const eventIndent = "       "

// unsupportedLink is the error for frame f, whose link type replay does
// not read.
func unsupportedLink(name string, f capture.Frame) error {
	where := ""
	if f.Interface != "" {
		where = " (interface " + f.Interface + ")"
	}
	known := make([]string, len(decode.LinkTypes))
	for i, l := range decode.LinkTypes {
		known[i] = fmt.Sprintf("%d (%s)", l.Type, l.Name)
		if l.Type == layers.LinkTypeRaw {
			known[i] = fmt.Sprintf("%d (%s, also as 12 or 14)", l.Type, l.Name)
		}
	}
	return fmt.Errorf("%s: packet %d%s: link type %d is not supported; replay reads link types %s",
		name, f.Index, where, uint16(f.Link), strings.Join(known, ", "))
}

// plural returns n and the noun: "1 packet", "2 packets".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (s *Summary) count(ev inspect.Event) {
	switch ev.Kind {
	case inspect.SessionOpen:
		s.Sessions.Opened++
		if ev.Session != nil {
			if ev.Session.Parent != 0 {
				s.Sessions.Related++
			}
			if ev.Session.ALG != "" {
				s.Sessions.ByALG[ev.Session.ALG]++
			}
		}
	case inspect.ExpectAdd:
		s.Expectations.Added++
	case inspect.ExpectUse:
		s.Expectations.Used++
	case inspect.ExpectExpire:
		s.Expectations.Expired++
	}
}

func (s *Summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n%s: %s, %d accepted, %d dropped\n", s.Capture, plural(s.Packets, "packet", "packets"), s.Accepted, s.Dropped)
	keys := make([]string, 0, len(s.Verdicts))
	for k := range s.Verdicts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %6d  %s\n", s.Verdicts[k], k)
	}
	fmt.Fprintf(w, "sessions: %d opened, %d related", s.Sessions.Opened, s.Sessions.Related)
	algs := make([]string, 0, len(s.Sessions.ByALG))
	for k := range s.Sessions.ByALG {
		algs = append(algs, k)
	}
	sort.Strings(algs)
	for _, k := range algs {
		fmt.Fprintf(w, ", %d %s", s.Sessions.ByALG[k], k)
	}
	fmt.Fprintf(w, "\nexpectations: %d added, %d used, %d expired\n",
		s.Expectations.Added, s.Expectations.Used, s.Expectations.Expired)
	if n := s.Mismatches - s.beyond; n > 0 {
		fmt.Fprintf(w, "MISMATCHES: %s got another verdict than expected\n", plural(n, "packet", "packets"))
	}
	if s.beyond > 0 {
		fmt.Fprintf(w, "MISMATCHES: expected verdicts for packets beyond the end of the capture (%s)\n", plural(s.beyond, "line", "lines"))
	}
}

// interfaceOf names the device a captured packet entered on: the pcapng
// interface name when the rule file knows it (by device or logical name),
// else the interface whose declared networks hold the source address.
func interfaceOf(rs *rules.Ruleset, capIface string, dec *decode.Decoder, f capture.Frame, p *decode.Packet) string {
	if capIface != "" {
		if ifc := rs.InterfaceByDevice(capIface); ifc != nil {
			return ifc.Device
		}
		if ifc := rs.InterfaceByName(capIface); ifc != nil {
			return ifc.Device
		}
	}
	if dec.Frame(f.Link, f.Data, p) != nil {
		return ""
	}
	if ifc := rs.InterfaceFor(p.Src); ifc != nil {
		return ifc.Device
	}
	return ""
}

func verdictWord(v inspect.Verdict) string {
	if v.Accept {
		return "accept"
	}
	return "drop"
}

func formatLine(r *Packet) string {
	rule := r.Rule
	if rule == "" {
		rule = "-"
	}
	sess := "-"
	if r.Session != 0 {
		sess = fmt.Sprintf("s%d", r.Session)
	}
	in := r.In
	if in == "" {
		in = "?"
	}
	return fmt.Sprintf("%6d %s %-6s %-58s %-6s %-5s %s  %s", r.Packet, r.Time.UTC().Format(timeFormat),
		in, r.Summary, r.Verdict, sess, rule, r.Reason)
}

// describe summarises a packet in one line, tcpdump style.
func describe(p *decode.Packet) string {
	var b strings.Builder
	b.WriteString(conntrack.ProtoName(p.Proto))
	b.WriteByte(' ')
	switch p.Proto {
	case decode.ProtoTCP, decode.ProtoUDP:
		b.WriteString(netip.AddrPortFrom(p.Src, p.SrcPort).String())
		b.WriteString(" > ")
		b.WriteString(netip.AddrPortFrom(p.Dst, p.DstPort).String())
	default:
		b.WriteString(p.Src.String())
		b.WriteString(" > ")
		b.WriteString(p.Dst.String())
	}
	switch p.Proto {
	case decode.ProtoTCP:
		b.WriteString(" [")
		for _, f := range []struct {
			bit uint8
			c   byte
		}{{decode.TCPSyn, 'S'}, {decode.TCPFin, 'F'}, {decode.TCPRst, 'R'}, {decode.TCPPsh, 'P'}, {decode.TCPUrg, 'U'}, {decode.TCPAck, '.'}} {
			if p.Flags&f.bit != 0 {
				b.WriteByte(f.c)
			}
		}
		fmt.Fprintf(&b, "] len %d", len(p.Payload))
	case decode.ProtoUDP:
		fmt.Fprintf(&b, " len %d", len(p.Payload))
	case decode.ProtoICMP, decode.ProtoICMPv6:
		fmt.Fprintf(&b, " type %d code %d", p.ICMPType, p.ICMPCode)
	}
	if p.Fragment {
		b.WriteString(" (fragment)")
	}
	return b.String()
}
