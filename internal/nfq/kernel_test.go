package nfq

import (
	"os"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/internal/nfq/nstest"
)

func TestParseKernelStats(t *testing.T) {
	got, err := ParseKernelStats(strings.NewReader(
		"    0  12345     3 2 65535     7     9 100 1\n   12  12346     0 2 65535     0     0   0 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []KernelStats{{Queue: 0, Waiting: 3, QueueDropped: 7, UserDropped: 9}, {Queue: 12}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"0 1 2\n", "x 1 2 3 4 5 6 7 1\n", "70000 1 2 3 4 5 6 7 1\n"} {
		if _, err := ParseKernelStats(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseKernelStats(%q) succeeded", bad)
		}
	}
}

// TestKernelStatsLive reads the real table with a queue bound.
func TestKernelStatsLive(t *testing.T) {
	nstest.Enter(t)
	q, err := Open(Config{Queue: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	f, err := os.Open(KernelStatsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := ParseKernelStats(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Queue != 5 {
		t.Fatalf("kernel stats %+v, want queue 5 alone", st)
	}
}
