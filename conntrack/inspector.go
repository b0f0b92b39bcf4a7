package conntrack

import (
	"net/netip"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

// Inspector is an application-layer gateway (ALG) attached to one session,
// such as the FTP or TFTP inspector. The engine calls Inspect for every
// packet of the session that passed tracking: for TCP only segments inside
// the window reach it, in the order the engine sees them.
//
// An Inspector never touches the session table itself: it returns what it
// wants done in a Result, so it can be tested without a table.
type Inspector interface {
	// Name is the inspector's short name, such as "ftp" or "tftp".
	Name() string
	// Inspect judges one packet travelling in direction c.Dir of session
	// c.Session. When the Result says Drop, the inspector must leave its
	// state as if the packet had never arrived, so that a retransmission
	// of the same bytes is judged the same way.
	Inspect(c *Context, p *decode.Packet) Result
}

// Context is what an Inspector knows about the packet it judges.
type Context struct {
	// Session is the session the packet belongs to. Session.Key is the
	// original direction: the client (initiator) is Key.Src.
	Session *Session
	// Dir is the packet's direction within the session.
	Dir Dir
	// Now is the packet's timestamp (capture time in replay, receive time
	// live). Inspectors never read the wall clock.
	Now time.Time
}

// Result is an Inspector's judgement of one packet.
type Result struct {
	// Drop asks the engine to drop the packet; Reason then says why, e.g.
	// "ftp: PORT names 203.0.113.9, not the client 198.51.100.2".
	Drop bool
	// Reason explains a drop, or notes a decision that did not drop the
	// packet (it is then logged as an event, e.g. "ftp: AUTH TLS accepted,
	// inspection stops"). Empty when there is nothing to say.
	Reason string
	// Class, when set, is what a drop is counted under: Reason without
	// the specifics a peer chose (addresses, ports, bytes it sent), so
	// that the engine's drop counters stay bounded whatever peers send.
	// Empty when Reason is fixed text.
	Class string
	// Expect, when HasExpect is set, is a data connection to open: the
	// engine adds it to the table owned by this session.
	Expect    Expect
	HasExpect bool
	// Cancel asks the engine to remove the session's pending
	// expectations (before adding Expect, if any): the server refused
	// what the hole was opened for.
	Cancel bool
	// NoOffload asks that the session is never offloaded to the kernel
	// fast path (control channels must stay visible).
	NoOffload bool
}

// Expect describes a predicted connection, as an Inspector asks for it.
// The expectation matches the first packet with protocol Proto from Src
// (port SrcPort, or any port when SrcPort is 0) to Dst port DstPort.
type Expect struct {
	Proto   uint8
	Src     netip.Addr
	SrcPort uint16 // 0 means any source port
	Dst     netip.Addr
	DstPort uint16
	// Timeout is how long the expectation stays pending.
	Timeout time.Duration
	// Replace removes the session's other pending expectations first
	// (FTP keeps at most one pending hole per control session).
	Replace bool
	// What names the expectation for people, e.g. "ftp PASV" or "tftp RRQ".
	What string
}
