package inspect

import "time"

// Meta is what the packet source knows about a packet besides its bytes.
type Meta struct {
	// Time is the packet's timestamp: the capture time in replay, the
	// receive time live. The engine takes all its time from here.
	Time time.Time
	// In is the name of the device the packet entered on (e.g. "wan0").
	In string
	// Out is the name of the device the packet leaves by, when known.
	Out string
	// Offloaded is set when the packet's connection carries the offload
	// mark: an earlier verdict (possibly of an earlier run of the daemon)
	// let the kernel fast path carry it. Only inspectd's own verdicts set
	// that connection mark.
	Offloaded bool
}

// Verdict is the engine's decision on one packet.
type Verdict struct {
	// Accept is true when the packet may pass.
	Accept bool
	// Reason is a short constant explanation, e.g. "rule", "session",
	// "related", "no session or expectation", "tcp: outside window".
	// Inspectors' refusals carry their own formatted reason.
	Reason string
	// Rule is where the deciding rule stands ("file:line"), or "" when no
	// rule decided (session traffic, decode errors).
	Rule string
	// Session is the ID of the session the packet belongs to or created;
	// 0 when none.
	Session uint64
	// Offload is true when the flow may be carried by the kernel fast path
	// from now on (the packet should be marked).
	Offload bool
}
