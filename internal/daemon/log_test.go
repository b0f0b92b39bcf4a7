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
// the kernel has them, the engine's otherwise.
func TestAuditKernelCounts(t *testing.T) {
	key := conntrack.Key{Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("192.0.2.10"),
		SrcPort: 40000, DstPort: 30001, Proto: 6}
	engine := [2]uint64{3, 2}
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
			flow:    kconntrack.Flow{Key: key, Counted: true, Packets: [2]uint64{7000, 9000}, Bytes: [2]uint64{400000, 13000000}},
			packets: [2]uint64{7000, 9000}, bytes: [2]uint64{400000, 13000000}, kernel: true},
		{name: "kernel reversed", offloaded: true, found: true,
			flow:    kconntrack.Flow{Key: key.Reverse(), Counted: true, Packets: [2]uint64{9000, 7000}, Bytes: [2]uint64{13000000, 400000}},
			packets: [2]uint64{7000, 9000}, bytes: [2]uint64{400000, 13000000}, kernel: true},
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
