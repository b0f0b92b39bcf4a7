package inspect

import (
	"testing"

	"github.com/inspectd/inspectd/internal/packettest"
)

// TestDataConnectionOffloadedAtSynAck: an expected data connection goes
// to the kernel fast path at its SYN-ACK (its handshake's last ACK then
// never reaches the engine) and counts as established at once; a session
// a rule opened waits for its handshake to finish.
func TestDataConnectionOffloadedAtSynAck(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	c, s := ap(client, 41000), ap(server, 30001)
	l.process(client, packettest.TCP(c, s, syn, 1000, 0, nil), true, ReasonRelated)
	v := l.process(server, packettest.TCP(s, c, syn|ack, 5000, 1001, nil), true, ReasonSession)
	if !v.Offload {
		t.Fatal("the data connection's SYN-ACK was not offloaded")
	}
	var state string
	for _, si := range l.e.Sessions() {
		if si.ID == v.Session {
			state = si.State
		}
	}
	if state != "established" || l.e.Stats().HalfOpen != 0 {
		t.Fatalf("data session %q, half-open %d; want established, 0", state, l.e.Stats().HalfOpen)
	}
	// The teardown still reaches the engine and is tracked.
	l.process(server, packettest.TCP(s, c, fin|ack, 90000, 1001, nil), true, ReasonSession)

	// A rule's session: the SYN-ACK is not offloaded.
	rc, rs := ap(client, 42000), ap(server, 9000)
	l.process(client, packettest.TCP(rc, rs, syn, 1, 0, nil), true, ReasonRule)
	if v := l.process(server, packettest.TCP(rs, rc, syn|ack, 7, 2, nil), true, ReasonSession); v.Offload {
		t.Fatal("a rule's session was offloaded before its handshake finished")
	}
}
