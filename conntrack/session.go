package conntrack

import "slices"

// State is a session's protocol state.
type State uint8

// Session states. TCP sessions move through the handshake states; UDP and
// ICMP sessions are New until the reply direction has been seen.
const (
	StateNew         State = iota // first packet seen (UDP/ICMP), no reply yet
	StateSynSent                  // TCP: SYN seen
	StateSynRecv                  // TCP: SYN-ACK seen (or simultaneous open)
	StateEstablished              // TCP: handshake complete; UDP/ICMP: reply seen
	StateFinWait                  // TCP: one side sent FIN
	StateClosing                  // TCP: both sides sent FIN
	StateTimeWait                 // TCP: both FINs acknowledged
	StateClosed                   // TCP: reset; the session is about to go
)

var stateNames = [...]string{"new", "syn-sent", "syn-recv", "established", "fin-wait", "closing", "time-wait", "closed"}

// StateNames returns the names of all states, in order, as String gives
// them.
func StateNames() []string { return slices.Clone(stateNames[:]) }

// String returns the state's lower-case name, e.g. "established".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Session is one tracked flow. Key is the original direction: Key.Src is
// the initiator (the client), Key.Dst the responder.
type Session struct {
	ID  uint64
	Key Key
	// Rule is the index of the rule that permitted the session in its
	// ruleset, or -1 for a related session opened by an expectation.
	Rule int32
	// In is the index of the interface the first packet entered on, as
	// the engine numbers interfaces.
	In    uint16
	State State
	// Offloaded is set once the engine let the kernel fast path carry the
	// flow; NoOffload forbids it (inspected control channels).
	Offloaded bool
	NoOffload bool
	// PickedUp is set for a session picked up in the middle of its life
	// (for TCP: no handshake seen).
	PickedUp bool
	gone     bool  // removed from the table
	halfOpen bool  // counted among the half-open sessions
	timerPos int32 // position of its timer in the table's heap; -1 when it has none

	// Inspector is the session's ALG, or nil.
	Inspector Inspector

	// Created and LastSeen are packet timestamps in Unix nanoseconds.
	Created, LastSeen int64
	// Packets and Bytes count traffic per direction (indexed by Dir).
	Packets, Bytes [2]uint64

	tcp     [2]tcpPeer // per direction, indexed by Dir of the sender
	expires int64      // Unix nanoseconds; the session is dead after this
}

// dirOf returns the direction of a packet with key k in the session.
func (s *Session) dirOf(k Key) Dir {
	// (An ICMP query's answer flag tells the directions apart where the
	// endpoints do not: a host pinging itself.)
	if s.Key.Src == k.Src && s.Key.SrcPort == k.SrcPort && s.Key.Answer == k.Answer {
		return Original
	}
	return Reply
}

// tcpPeer is the window-tracking state of one TCP endpoint, after the
// scheme of Guido van Rooij's "Real Stateful TCP Packet Filtering".
type tcpPeer struct {
	end    uint32 // highest sequence number sent + length (next expected)
	acked  uint32 // highest acknowledgement of its data the other side sent
	maxEnd uint32 // highest ack + window advertised by the other side
	maxWin uint32 // largest (scaled) window this peer advertised
	scale  uint8  // window scale this peer uses
	flags  uint8  // peerSeenFin, peerFinAcked, ...
	ahead  uint8  // consecutive segments seen beyond the window (gap recovery)
}

// Alive reports whether the session is still in the table.
func (s *Session) Alive() bool { return !s.gone }
