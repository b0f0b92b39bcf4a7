package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/kconntrack"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestAuditKernelCounts checks the close line of a session: an offloaded
// one carries the kernel's counters (turned the session's way round) when
// the kernel has them for that connection, the engine's otherwise.
func TestAuditKernelCounts(t *testing.T) {
	key := conntrack.Key{Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("192.0.2.10"),
		SrcPort: 40000, DstPort: 30001, Proto: 6}
	engine := [2]uint64{3, 2}
	tw := uint8(kconntrack.TCPTimeWait)
	// The same connection through destination NAT: the client asked for
	// 203.0.113.1:80, which the edge forwards to the session's server.
	dnat := kconntrack.Flow{Key: conntrack.Key{Src: key.Src, Dst: netip.MustParseAddr("203.0.113.1"),
		SrcPort: key.SrcPort, DstPort: 80, Proto: 6}, Reply: key.Reverse(), TCPState: tw, Counted: true,
		Packets: [2]uint64{7000, 9000}, Bytes: [2]uint64{400000, 13000000}}
	for _, tc := range []struct {
		name      string
		offloaded bool
		flow      kconntrack.Flow
		found     bool
		err       error
		packets   [2]uint64
		bytes     [2]uint64
		kernel    bool
	}{
		{name: "not offloaded", packets: engine, bytes: [2]uint64{300, 200}},
		{name: "kernel", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: key, TCPState: tw, Counted: true, Packets: [2]uint64{7000, 9000}, Bytes: [2]uint64{400000, 13000000}},
			packets: [2]uint64{7000, 9000}, bytes: [2]uint64{400000, 13000000}, kernel: true},
		{name: "kernel reversed", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: key.Reverse(), TCPState: tw, Counted: true, Packets: [2]uint64{9000, 7000}, Bytes: [2]uint64{13000000, 400000}},
			packets: [2]uint64{7000, 9000}, bytes: [2]uint64{400000, 13000000}, kernel: true},
		{name: "destination NAT", offloaded: true, found: true, flow: dnat,
			packets: [2]uint64{7000, 9000}, bytes: [2]uint64{400000, 13000000}, kernel: true},
		{name: "newer connection on the same ports", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: key, TCPState: kconntrack.TCPEstablished, Counted: true, Packets: [2]uint64{3, 2}, Bytes: [2]uint64{180, 120}},
			packets: engine, bytes: [2]uint64{300, 200}},
		{name: "fewer packets than the engine saw", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: key, TCPState: tw, Counted: true, Packets: [2]uint64{2, 2}, Bytes: [2]uint64{120, 120}},
			packets: engine, bytes: [2]uint64{300, 200}},
		{name: "another connection", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: conntrack.Key{Src: key.Src, Dst: key.Dst, SrcPort: 1, DstPort: 2, Proto: 6}, TCPState: tw, Counted: true, Packets: [2]uint64{7000, 9000}},
			packets: engine, bytes: [2]uint64{300, 200}},
		{name: "no accounting", offloaded: true, found: true, flow: kconntrack.Flow{Key: key},
			packets: engine, bytes: [2]uint64{300, 200}},
		{name: "gone", offloaded: true, packets: engine, bytes: [2]uint64{300, 200}},
		{name: "error", offloaded: true, err: errors.New("netlink"), packets: engine, bytes: [2]uint64{300, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.DebugLevel)
			a := newAuditor(zap.New(core), newLimiter(100, 100), func(k conntrack.Key) (kconntrack.Flow, bool, error) {
				if k != key {
					t.Errorf("kernel asked for %v, want %v", k, key)
				}
				return tc.flow, tc.found, tc.err
			})
			a.event(inspect.Event{Kind: inspect.SessionClose, Reason: "fin", Session: &inspect.SessionInfo{
				ID: 1, Proto: "tcp", State: "closing", Offloaded: tc.offloaded, Key: key,
				Packets: engine, Bytes: [2]uint64{300, 200}}})
			a.close()
			all := logs.All()
			if len(all) != 1 {
				t.Fatalf("%d lines, want 1", len(all))
			}
			m := all[0].ContextMap()
			got := [4]uint64{m["packets_orig"].(uint64), m["packets_reply"].(uint64), m["bytes_orig"].(uint64), m["bytes_reply"].(uint64)}
			want := [4]uint64{tc.packets[0], tc.packets[1], tc.bytes[0], tc.bytes[1]}
			if got != want {
				t.Errorf("counts %v, want %v", got, want)
			}
			if _, ok := m["counted_by"]; ok != tc.kernel {
				t.Errorf("counted_by present %v, want %v", ok, tc.kernel)
			}
		})
	}
}
