package nfq

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// KernelStatsPath is the kernel's per-queue table, as seen from the
// calling thread's network namespace.
const KernelStatsPath = "/proc/thread-self/net/netfilter/nfnetlink_queue"

// KernelStats is what the kernel counts for one bound queue.
type KernelStats struct {
	Queue uint16
	// Waiting is the number of packets queued and not yet decided.
	Waiting uint64
	// QueueDropped counts packets that found the queue full (MaxQueueLen):
	// dropped, or accepted when failing open.
	QueueDropped uint64
	// UserDropped counts packets the kernel could not deliver to the
	// socket (receive buffer full): dropped.
	UserDropped uint64
}

// ParseKernelStats reads the kernel's queue table (KernelStatsPath) and
// returns the counters of every bound queue.
func ParseKernelStats(r io.Reader) ([]KernelStats, error) {
	var out []KernelStats
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		// queue_number peer_portid queue_total copy_mode copy_range
		// queue_dropped user_dropped id_sequence 1
		if len(f) < 7 {
			return nil, fmt.Errorf("nfq: kernel queue table line %d: %d fields, want at least 7", line, len(f))
		}
		var v [7]uint64
		for i, idx := range []int{0, 2, 5, 6} {
			n, err := strconv.ParseUint(f[idx], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("nfq: kernel queue table line %d: %w", line, err)
			}
			v[i] = n
		}
		if v[0] > 0xffff {
			return nil, fmt.Errorf("nfq: kernel queue table line %d: queue %d out of range", line, v[0])
		}
		out = append(out, KernelStats{Queue: uint16(v[0]), Waiting: v[1], QueueDropped: v[2], UserDropped: v[3]})
	}
	return out, sc.Err()
}
