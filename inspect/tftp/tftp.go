// Package tftp is inspectd's TFTP application-layer gateway (RFC 1350).
//
// A TFTP client sends its read (RRQ) or write (WRQ) request to the
// server's port 69; the server answers from a new port of its choosing
// (its transfer identifier), and the whole transfer runs between that
// port and the client's. The Inspector attached to the request's session
// checks each request and asks the engine to expect the first UDP packet
// from the server's address, from any port, to the client's address and
// port; that packet creates the transfer's session, which then carries
// the transfer both ways. Malformed requests are dropped and open
// nothing. docs/INSPECTION.md explains each decision.
package tftp

import (
	"fmt"
	"strings"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// DefaultExpectTimeout is how long a transfer expectation stays pending
// when Config.ExpectTimeout is zero. A server answers a request within
// milliseconds, and a client that hears nothing resends its request,
// which renews the expectation.
const DefaultExpectTimeout = 30 * time.Second

// MaxRequest is the largest request accepted, in bytes: RFC 2347 limits a
// request with options to 512 bytes.
const MaxRequest = 512

// TFTP opcodes (RFC 1350 section 5, RFC 2347).
const (
	opRRQ = 1
	opWRQ = 2
)

// Config tunes a TFTP Inspector. The zero value is the default policy.
type Config struct {
	// ExpectTimeout is how long a transfer expectation stays pending;
	// zero means DefaultExpectTimeout.
	ExpectTimeout time.Duration
}

// Validate reports whether c holds a value New would have to change.
func (c Config) Validate() error {
	if c.ExpectTimeout < 0 {
		return fmt.Errorf("tftp: expect timeout %v is negative", c.ExpectTimeout)
	}
	return nil
}

// Inspector is the TFTP gateway of one request session (client port to
// server port 69). It implements conntrack.Inspector and keeps no state
// besides its configuration.
type Inspector struct {
	timeout time.Duration
}

// New returns the inspector for one TFTP request session. A zero or
// negative ExpectTimeout takes the default.
func New(cfg Config) *Inspector {
	if cfg.ExpectTimeout <= 0 {
		cfg.ExpectTimeout = DefaultExpectTimeout
	}
	return &Inspector{timeout: cfg.ExpectTimeout}
}

// Reconfigure puts cfg in force for the rest of the session (a rules
// reload).
func (in *Inspector) Reconfigure(cfg Config) { *in = *New(cfg) }

// Name returns "tftp".
func (*Inspector) Name() string { return "tftp" }

// Inspect judges one packet of the request session. A well-formed RRQ or
// WRQ from the client yields an expectation for the server's answer; any
// other packet from the client is dropped with the reason. Packets from
// the server on the request session (an error answered from port 69)
// pass and open nothing. The session is never offloaded, so that every
// request is seen.
func (in *Inspector) Inspect(c *conntrack.Context, p *decode.Packet) conntrack.Result {
	res := conntrack.Result{NoOffload: true}
	if p.Proto != decode.ProtoUDP || c.Dir != conntrack.Original {
		return res
	}
	op, why := checkRequest(p.Payload)
	if why != "" {
		res.Drop, res.Reason = true, why
		if strings.HasPrefix(why, unknownOpcode) {
			res.Class = unknownOpcode
		}
		return res
	}
	k := c.Session.Key
	what := "tftp RRQ"
	if op == opWRQ {
		what = "tftp WRQ"
	}
	res.HasExpect = true
	res.Expect = conntrack.Expect{
		Proto: decode.ProtoUDP, Src: k.Dst, Dst: k.Src, DstPort: k.SrcPort,
		Timeout: in.timeout, Replace: true, What: what,
	}
	return res
}

// checkRequest checks an RRQ or WRQ (RFC 1350 section 5, with RFC 2347
// options): opcode, a non-empty NUL-terminated file name, a
// NUL-terminated mode that is netascii, octet or mail (in any case), then
// option name/value pairs, each NUL-terminated, names non-empty. It
// returns the opcode, or a reason when the packet is not such a request.
func checkRequest(b []byte) (op uint16, why string) {
	if len(b) < 2 {
		return 0, "tftp: packet too short for a request"
	}
	if len(b) > MaxRequest {
		return 0, "tftp: request longer than 512 bytes"
	}
	op = uint16(b[0])<<8 | uint16(b[1])
	if op != opRRQ && op != opWRQ {
		return 0, notRequest(op)
	}
	name, rest, ok := field(b[2:])
	if !ok {
		return 0, "tftp: file name not NUL-terminated"
	}
	if len(name) == 0 {
		return 0, "tftp: empty file name"
	}
	mode, rest, ok := field(rest)
	if !ok {
		return 0, "tftp: transfer mode missing or not NUL-terminated"
	}
	if !is(mode, "netascii") && !is(mode, "octet") && !is(mode, "mail") {
		return 0, "tftp: unknown transfer mode"
	}
	for len(rest) > 0 {
		var opt []byte
		if opt, rest, ok = field(rest); !ok {
			return 0, "tftp: option not NUL-terminated"
		}
		if len(opt) == 0 {
			return 0, "tftp: empty option name"
		}
		if _, rest, ok = field(rest); !ok {
			return 0, "tftp: option without a NUL-terminated value"
		}
	}
	return op, ""
}

// field splits b at its first NUL: the bytes before it and those after.
func field(b []byte) (f, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// is reports whether b equals the lower-case ASCII word w, ignoring case.
func is(b []byte, w string) bool {
	if len(b) != len(w) {
		return false
	}
	for i := range len(b) {
		if b[i]|0x20 != w[i] {
			return false
		}
	}
	return true
}

var opNames = [...]string{3: "DATA", 4: "ACK", 5: "ERROR", 6: "OACK"}

func notRequest(op uint16) string {
	if int(op) < len(opNames) && opNames[op] != "" {
		return "tftp: " + opNames[op] + " is not a request"
	}
	return fmt.Sprintf("%s %d", unknownOpcode, op)
}

// unknownOpcode begins the reason for a request with an opcode TFTP does
// not define; the opcode follows.
const unknownOpcode = "tftp: unknown opcode"
