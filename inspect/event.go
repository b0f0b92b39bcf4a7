package inspect

import (
	"net/netip"
	"time"

	"github.com/inspectd/inspectd/conntrack"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	SessionOpen  EventKind = iota + 1 // a session was created (by a rule or an expectation)
	SessionClose                      // a session left the table
	ExpectAdd                         // an inspector opened a hole
	ExpectUse                         // a hole was used by a new connection
	ExpectExpire                      // a hole expired unused
	Deny                              // a packet was dropped
	Note                              // an inspector's decision worth logging that dropped nothing
)

var kindNames = [...]string{"", "session-open", "session-close", "expect-add", "expect-use", "expect-expire", "deny", "note"}

// String returns the kind's name, e.g. "session-open".
func (k EventKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// MarshalText makes kinds readable in JSON.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Event is something the engine did that people may want to know.
type Event struct {
	Kind EventKind `json:"kind"`
	Time time.Time `json:"time"`
	// Reason says why: the drop reason, why a session closed, or an
	// inspector's note.
	Reason string `json:"reason,omitempty"`
	// Rule is where the deciding rule stands ("file:line"), if any.
	Rule string `json:"rule,omitempty"`
	// In is the device the packet entered on, for packet events.
	In string `json:"in,omitempty"`
	// Log is set when the deciding rule or default asked for logging.
	Log bool `json:"log,omitempty"`
	// Flow is the packet's flow (Deny) or the session's key.
	Flow FlowInfo `json:"flow"`
	// Session describes the session concerned, when there is one.
	Session *SessionInfo `json:"session,omitempty"`
	// Expect describes the expectation concerned, when there is one.
	Expect *ExpectInfo `json:"expect,omitempty"`
}

// FlowInfo is a flow key for people and JSON.
type FlowInfo struct {
	Proto string `json:"proto"`
	Src   string `json:"src"` // "addr:port", IPv6 in brackets
	Dst   string `json:"dst"`
}

func flowInfo(k conntrack.Key) FlowInfo {
	return FlowInfo{
		Proto: conntrack.ProtoName(k.Proto),
		Src:   netip.AddrPortFrom(k.Src, k.SrcPort).String(),
		Dst:   netip.AddrPortFrom(k.Dst, k.DstPort).String(),
	}
}

// SessionInfo is a snapshot of a session for people and JSON.
type SessionInfo struct {
	ID        uint64    `json:"id"`
	Proto     string    `json:"proto"`
	Src       string    `json:"src"`
	Dst       string    `json:"dst"`
	State     string    `json:"state"`
	ALG       string    `json:"alg"`
	Parent    uint64    `json:"parent"`
	Rule      string    `json:"rule,omitempty"`
	In        string    `json:"in,omitempty"`
	Offloaded bool      `json:"offloaded"`
	PickedUp  bool      `json:"picked_up,omitempty"`
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"last_seen"`
	Packets   [2]uint64 `json:"packets"` // original, reply
	Bytes     [2]uint64 `json:"bytes"`
	// Key is the session's flow key (Src, Dst and Proto above, as
	// values).
	Key conntrack.Key `json:"-"`
}

// ExpectInfo is a snapshot of an expectation for people and JSON.
type ExpectInfo struct {
	ID      uint64    `json:"id"`
	Parent  uint64    `json:"parent"`
	ALG     string    `json:"alg"`
	What    string    `json:"what"`
	Proto   string    `json:"proto"`
	Src     string    `json:"src"` // "addr:any" when any source port
	Dst     string    `json:"dst"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

func expectInfo(x *conntrack.Expectation) *ExpectInfo {
	src := netip.AddrPortFrom(x.Src, x.SrcPort).String()
	if x.SrcPort == 0 {
		src = netip.AddrPortFrom(x.Src, 0).String()
		src = src[:len(src)-1] + "any"
	}
	return &ExpectInfo{
		ID: x.ID, Parent: x.Parent, ALG: x.Inspector, What: x.What,
		Proto: conntrack.ProtoName(x.Proto), Src: src,
		Dst:     netip.AddrPortFrom(x.Dst, x.DstPort).String(),
		Created: x.Created, Expires: x.Expires,
	}
}
