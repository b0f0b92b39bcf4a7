package ftp

import "github.com/inspectd/inspectd/conntrack"

// Telnet bytes (RFC 854) that matter to an FTP control stream.
const (
	telIAC  = 255 // interpret as command
	telDONT = 254
	telWILL = 251 // WILL, WONT, DO and DONT (251..254) take one option byte
	telSB   = 250 // subnegotiation, up to IAC SE
	telSE   = 240
)

// Telnet decoder states.
const (
	tsData  uint8 = iota // ordinary bytes
	tsIAC                // after IAC
	tsOpt                // after IAC WILL/WONT/DO/DONT: the option byte follows
	tsSB                 // inside a subnegotiation
	tsSBIAC              // IAC inside a subnegotiation
)

// stream is the reassembly, Telnet and line state of one direction. The
// line bytes themselves live in Inspector.line.
type stream struct {
	next    uint32 // sequence number of the next byte expected
	n       int    // bytes of the current line buffered
	synced  bool   // next is known
	started bool   // bytes of this direction were read: a SYN no longer moves next
	discard bool   // resynchronising: drop bytes up to the next line end
	long    bool   // the current line outgrew the buffer
	ahead   uint8  // consecutive segments seen beyond a gap
	tel     uint8  // Telnet decoder state
	fin     bool   // this direction sent its FIN
}

// resync forgets the current line and discards bytes up to the next line
// end: the stream position is no longer known to be at a line start.
func (s *stream) resync() {
	s.n, s.long, s.discard, s.tel = 0, false, true, tsData
}

// scan feeds new in-order bytes of direction d through the Telnet decoder
// and the line splitter and handles each complete line. It reports true
// when the packet must be dropped; res then holds the reason.
func (in *Inspector) scan(c *conntrack.Context, d int, b []byte, res *conntrack.Result) bool {
	s := &in.st.dir[d]
	buf := in.line[d]
	for _, ch := range b {
		switch s.tel {
		case tsData:
			if ch == telIAC {
				s.tel = tsIAC
				continue
			}
		case tsIAC:
			switch {
			case ch == telIAC:
				s.tel = tsData // IAC IAC is a literal 0xFF
			case ch >= telWILL && ch <= telDONT:
				s.tel = tsOpt
				continue
			case ch == telSB:
				s.tel = tsSB
				continue
			default: // IP, DM, AO, AYT, NOP, ...: no data
				s.tel = tsData
				continue
			}
		case tsOpt:
			s.tel = tsData
			continue
		case tsSB:
			if ch == telIAC {
				s.tel = tsSBIAC
			}
			continue
		case tsSBIAC:
			if ch == telSE {
				s.tel = tsData
			} else {
				s.tel = tsSB
			}
			continue
		}
		if ch != '\n' {
			if s.discard {
				continue
			}
			if s.n < len(buf) {
				buf[s.n] = ch
				s.n++
			} else {
				s.long = true
			}
			continue
		}
		// End of a line.
		if s.discard {
			s.discard = false
			continue
		}
		line := buf[:s.n]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		long := s.long
		s.n, s.long = 0, false
		var drop bool
		if d == 0 {
			drop = in.command(c, line, long, res)
		} else {
			drop = in.reply(c, line, long, res)
		}
		if drop {
			return true
		}
		if in.st.stopped {
			return false // encrypted or closed: the rest is not FTP
		}
	}
	return false
}
