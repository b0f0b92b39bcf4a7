// Package ftp is inspectd's FTP application-layer gateway: an Inspector
// for one FTP control session that reads the command and reply streams
// and asks the engine to expect exactly the data connections the server
// has agreed to (RFC 959, RFC 1123 section 4.1, RFC 2428).
//
// The inspector reassembles each direction's byte stream by TCP sequence
// number, strips Telnet control sequences, splits the stream into lines
// and recognises commands only at the start of a line. A passive data
// connection is expected when the server announces it: 227 to a pending
// PASV, 229 to a pending EPSV. An active one is expected as soon as the
// client sends a valid PORT or EPRT (some servers connect before they
// confirm), usable only by the server, and cancelled when the server
// refuses the command (4xx or 5xx). PORT and EPRT must name the client's
// own control address, 227 the server's own address, and data ports below
// Config.MinDataPort are refused. docs/INSPECTION.md explains each
// decision.
//
// An Inspector holds fixed-size state (two line buffers of Config.MaxLine
// bytes and a short queue of commands awaiting replies) and does not
// allocate while judging ordinary lines.
package ftp

import (
	"fmt"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// Defaults and bounds of Config.
const (
	// DefaultExpectTimeout is how long a data-connection expectation
	// stays pending when Config.ExpectTimeout is zero.
	DefaultExpectTimeout = 60 * time.Second
	// DefaultMinDataPort is the lowest data port accepted when
	// Config.MinDataPort is zero.
	DefaultMinDataPort = 1024
	// DefaultMaxLine is the per-direction line buffer when Config.MaxLine
	// is zero.
	DefaultMaxLine = 512
	// MinLine and MaxLineLimit bound Config.MaxLine: shorter buffers could
	// not hold an EPRT command with an IPv6 address, longer ones only cost
	// memory.
	MinLine      = 128
	MaxLineLimit = 8192
	// DataPort is the source port of an active-mode data connection
	// unless Config.ActiveSourcePortAny: ftp-data, port 20.
	DataPort = 20
)

// Config tunes an FTP Inspector. The zero value is the default policy.
type Config struct {
	// ExpectTimeout is how long a data-connection expectation stays
	// pending (the rules' ftp-expect); zero means DefaultExpectTimeout.
	ExpectTimeout time.Duration
	// MinDataPort is the lowest data port a PORT, EPRT, 227 or 229 may
	// name; lower ports are refused. Zero means DefaultMinDataPort; 1
	// accepts every port.
	MinDataPort uint16
	// ActiveSourcePortAny lets the server open an active-mode data
	// connection from any source port. When false the connection must
	// come from port 20 (DataPort), whatever the control port: the
	// rules' "active-source-port 20".
	ActiveSourcePortAny bool
	// MaxLine is how many bytes of one line are buffered per direction;
	// a longer line is discarded up to its end and opens nothing. Zero
	// means DefaultMaxLine; other values are clamped to
	// [MinLine, MaxLineLimit].
	MaxLine int
}

// Validate reports whether c holds values New would have to change, so
// that a rule file asking for them can be refused with a clear error.
func (c Config) Validate() error {
	if c.ExpectTimeout < 0 {
		return fmt.Errorf("ftp: expect timeout %v is negative", c.ExpectTimeout)
	}
	if c.MaxLine != 0 && (c.MaxLine < MinLine || c.MaxLine > MaxLineLimit) {
		return fmt.Errorf("ftp: line limit %d outside %d..%d bytes", c.MaxLine, MinLine, MaxLineLimit)
	}
	return nil
}

func (c Config) normalized() Config {
	if c.ExpectTimeout <= 0 {
		c.ExpectTimeout = DefaultExpectTimeout
	}
	if c.MinDataPort == 0 {
		c.MinDataPort = DefaultMinDataPort
	}
	switch {
	case c.MaxLine == 0:
		c.MaxLine = DefaultMaxLine
	case c.MaxLine < MinLine:
		c.MaxLine = MinLine
	case c.MaxLine > MaxLineLimit:
		c.MaxLine = MaxLineLimit
	}
	return c
}

// Inspector is the FTP gateway of one control session. It implements
// conntrack.Inspector. It is not safe for concurrent use; the engine
// calls it from the session's worker only.
type Inspector struct {
	cfg Config
	st  state
	// prev is the state at the start of the current Inspect call.
	prev state
	// line holds the current line of each direction (indexed by
	// conntrack.Dir); saved is where Inspect keeps a copy of the current
	// direction's partial line so that a dropped packet leaves no trace.
	line  [2][]byte
	saved []byte
	// longCmd and longReply are the notes for over-long lines, formatted
	// once in New.
	longCmd, longReply string
}

// New returns the inspector for one FTP control session. Zero fields of
// cfg take their defaults and out-of-range ones are clamped (see
// Config.Validate).
func New(cfg Config) *Inspector {
	cfg = cfg.normalized()
	buf := make([]byte, 3*cfg.MaxLine)
	return &Inspector{
		cfg:       cfg,
		line:      [2][]byte{buf[:cfg.MaxLine:cfg.MaxLine], buf[cfg.MaxLine : 2*cfg.MaxLine : 2*cfg.MaxLine]},
		saved:     buf[2*cfg.MaxLine:],
		longCmd:   fmt.Sprintf("ftp: command line longer than %d bytes discarded", cfg.MaxLine),
		longReply: fmt.Sprintf("ftp: reply line longer than %d bytes discarded", cfg.MaxLine),
	}
}

// Reconfigure puts cfg in force for the rest of the session (a rules
// reload), except MaxLine: the line buffers keep the size they have.
func (in *Inspector) Reconfigure(cfg Config) {
	cfg = cfg.normalized()
	cfg.MaxLine = in.cfg.MaxLine
	in.cfg = cfg
}

// Name returns "ftp".
func (*Inspector) Name() string { return "ftp" }

// Reasons given without formatting.
const (
	reasonGap      = "ftp: out-of-order segment, waiting for the missing bytes"
	reasonTLS      = "ftp: AUTH TLS accepted, control channel encrypted, inspection stops"
	reasonNUL      = "ftp: NUL byte in a command line"
	reasonNULReply = "ftp: NUL byte in a reply line, ignored"
)

// maxAhead is the number of consecutive segments beyond a gap after which
// the stream gives up on the missing bytes: the first maxAhead-1 are
// dropped, the next is accepted and the stream resynchronises there.
const maxAhead = 3

// Inspect judges one segment of the control session. It implements
// conntrack.Inspector. Every result asks that the session is never
// offloaded. Once the control session has ended (a reset the tracker took
// as ending it, or both directions' FINs) every result cancels its
// pending holes and opens none: not one the closing segment's last
// command asked for, nor one a reply that crossed the reset asks for, nor
// one a command asks for whose bytes came after a FIN that overtook them.
// A data connection belongs to a live control session.
func (in *Inspector) Inspect(c *conntrack.Context, p *decode.Packet) conntrack.Result {
	res := in.inspect(c, p)
	if res.Drop || p.Proto != decode.ProtoTCP {
		return res
	}
	if p.Flags&decode.TCPFin != 0 {
		d := 0
		if c.Dir != conntrack.Original {
			d = 1
		}
		in.st.dir[d].fin = true
	}
	if c.Session.State == conntrack.StateClosed || (in.st.dir[0].fin && in.st.dir[1].fin) {
		res.Cancel, res.HasExpect = true, false
	}
	return res
}

// inspect is Inspect without the end of the session.
func (in *Inspector) inspect(c *conntrack.Context, p *decode.Packet) conntrack.Result {
	res := conntrack.Result{NoOffload: true}
	if p.Proto != decode.ProtoTCP || in.st.stopped {
		return res
	}
	d := 0
	if c.Dir != conntrack.Original {
		d = 1
	}
	s := &in.st.dir[d]
	seq := p.Seq
	if p.Flags&decode.TCPSyn != 0 {
		seq++ // the SYN occupies one sequence number
		if !s.started {
			// The first SYN, or one sent again with a new initial
			// sequence number (the tracker accepted it) before any data.
			s.synced, s.next = true, seq
		}
	}
	payload := p.Payload
	if len(payload) == 0 {
		return res
	}
	if !s.synced {
		// First data of a direction whose SYN we did not see: a new
		// session's stream starts here (ISN+1); a picked-up one is
		// somewhere inside a line.
		s.synced, s.next = true, seq
		if c.Session.PickedUp {
			s.discard = true
			in.st.greeted = true // long past
		}
	}
	end := seq + uint32(len(payload))
	off := int32(seq - s.next)
	if off > 0 {
		if s.ahead+1 < maxAhead {
			s.ahead++ // the one piece of state a drop keeps: see INSPECTION.md
			res.Drop, res.Reason = true, reasonGap
			return res
		}
	} else if uint32(-off) >= uint32(len(payload)) {
		return res // nothing new: first-seen bytes win
	}

	// From here on the packet may be refused by what it says: keep a
	// copy of the state so that a drop leaves none of its effects.
	in.snapshot(d)
	s.started = true
	if off > 0 {
		// Third segment in a row beyond a gap: give up on the missing
		// bytes and resynchronise at the next line end. The lost bytes
		// may have ended a multi-line reply: replies start afresh (RFC
		// 959 section 4.2 makes servers pad text lines that start with
		// digits, so none is taken for a reply).
		s.resync()
		if d == 1 {
			in.st.multi = false
		}
	} else {
		payload = payload[-off:]
	}
	s.ahead = 0
	s.next = end
	if in.scan(c, d, payload, &res) {
		in.restore(d)
		res.HasExpect, res.Cancel = false, false
		res.Expect = conntrack.Expect{}
	}
	return res
}

// snapshot keeps the state and direction d's partial line.
func (in *Inspector) snapshot(d int) {
	in.prev = in.st
	copy(in.saved, in.line[d][:in.st.dir[d].n])
}

// restore undoes everything since snapshot.
func (in *Inspector) restore(d int) {
	in.st = in.prev
	copy(in.line[d], in.saved[:in.st.dir[d].n])
}
