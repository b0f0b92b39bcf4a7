package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/inspectd/inspectd/internal/api"
)

// The project's targets (issue 4, item 9).
const (
	targetBulk     = 0.95 // inspectd's bulk throughput over the kernel's
	targetConnRate = 0.80 // inspectd's connections/s over the kernel's
	targetUserPkts = 30   // packets in user space per transfer, whatever its size
)

// Mode names, in the order of each round.
const (
	modeNone     = "none"
	modeKernel   = "kernel"
	modeInspectd = "inspectd"
)

var modes = []string{modeNone, modeKernel, modeInspectd}

// result collects one mode's samples.
type result struct {
	Mode       string
	MiBps      []float64 // large download throughput, one per download
	SmallSecs  []float64 // small download time, one per download
	ConnRates  []float64 // connections/s, one per run
	ConnErrors int       // failed attempts over all runs
	FirstError string    // the first failed attempt's error
	// inspectd only: packets that reached user space per large transfer,
	// per small transfer, and per connection of each connection-rate run.
	UserPkts      []uint64
	SmallUserPkts []uint64
	ConnUserPkts  []float64
	// Lost counts packets the queues lost (kernel queue or socket full,
	// reader overruns, refused verdicts) during the measurements; Drops
	// counts packets the engine dropped, by reason.
	Lost  uint64
	Drops map[string]uint64
}

// median returns the median of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianU is median for counters.
func medianU(xs []uint64) float64 {
	f := make([]float64, len(xs))
	for i, x := range xs {
		f[i] = float64(x)
	}
	return median(f)
}

// ratio returns x/base, ok false when base is not positive.
func ratio(x, base float64) (float64, bool) {
	if base <= 0 {
		return 0, false
	}
	return x / base, true
}

// fmtRatio formats x/base as "0.97x", or "n/a" without a base.
func fmtRatio(x, base float64) string {
	r, ok := ratio(x, base)
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", r)
}

// parseStats decodes the output of `inspectd stats --json`.
func parseStats(b []byte) (api.Stats, error) {
	var st api.Stats
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("inspectd stats --json: %w", err)
	}
	if st.Workers == 0 && len(st.Queues) == 0 {
		return st, errors.New("inspectd stats --json: no workers and no queues in the answer")
	}
	return st, nil
}

// counters are the figures benchlab takes from inspectd's stats.
type counters struct {
	userPkts uint64            // packets read from the queues: those that reached user space
	lost     uint64            // packets the queues lost
	drops    map[string]uint64 // packets the engine dropped, by reason
}

func countersOf(st api.Stats) counters {
	c := counters{drops: maps.Clone(st.DropReasons)}
	for _, q := range st.Queues {
		c.userPkts += q.Packets
		c.lost += q.QueueFull + q.SocketFull + q.Overflows + q.VerdictErrors
	}
	return c
}

// sub returns after minus before, an error when a counter went backwards
// (the daemon restarted in between).
func (after counters) sub(before counters) (counters, error) {
	backwards := fmt.Errorf("inspectd's counters went backwards (%+v, then %+v): did it restart?", before, after)
	if after.userPkts < before.userPkts || after.lost < before.lost {
		return counters{}, backwards
	}
	d := counters{userPkts: after.userPkts - before.userPkts, lost: after.lost - before.lost}
	for why, n := range after.drops {
		if n < before.drops[why] {
			return counters{}, backwards
		}
		if n > before.drops[why] {
			if d.drops == nil {
				d.drops = make(map[string]uint64)
			}
			d.drops[why] = n - before.drops[why]
		}
	}
	return d, nil
}

// fmtDrops formats drop counts by reason, most frequent first.
func fmtDrops(drops map[string]uint64) string {
	if len(drops) == 0 {
		return "none"
	}
	whys := slices.Collect(maps.Keys(drops))
	slices.SortFunc(whys, func(a, b string) int {
		if c := cmp.Compare(drops[b], drops[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(whys))
	for i, why := range whys {
		parts[i] = fmt.Sprintf("%d %q", drops[why], why)
	}
	return strings.Join(parts, ", ")
}

// parseCurl reads curl's -w '%{size_download} %{time_total}' output and
// checks the size: it returns the transfer time in seconds.
func parseCurl(out string, wantSize int64) (float64, error) {
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, fmt.Errorf("curl printed %q, want SIZE SECONDS", out)
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("curl size %q: %w", f[0], err)
	}
	secs, err := strconv.ParseFloat(f[1], 64)
	if err != nil || secs <= 0 {
		return 0, fmt.Errorf("curl time %q: not a positive number", f[1])
	}
	if size != wantSize {
		return 0, fmt.Errorf("curl downloaded %d bytes, want %d", size, wantSize)
	}
	return secs, nil
}

// target is one of the project's targets and whether a run met it.
type target struct {
	What string // the target
	Got  string // what the run measured
	Met  bool
}

// targets evaluates the targets from the results by mode.
func targets(res map[string]*result) []target {
	k, in := res[modeKernel], res[modeInspectd]
	var ts []target
	bulk := target{What: fmt.Sprintf("bulk >= %.2fx the kernel's", targetBulk), Got: "not measured"}
	if r, ok := ratio(median(in.MiBps), median(k.MiBps)); ok {
		bulk.Got, bulk.Met = fmt.Sprintf("%.2fx", r), r >= targetBulk
	}
	ts = append(ts, bulk)
	conn := target{What: fmt.Sprintf("connections/s >= %.2fx the kernel's", targetConnRate), Got: "not measured"}
	if r, ok := ratio(median(in.ConnRates), median(k.ConnRates)); ok {
		conn.Got, conn.Met = fmt.Sprintf("%.2fx", r), r >= targetConnRate
	}
	ts = append(ts, conn)
	user := target{What: fmt.Sprintf("<= %d packets in user space per transfer", targetUserPkts), Got: "not measured"}
	all := append(slices.Clone(in.UserPkts), in.SmallUserPkts...)
	if len(all) > 0 {
		worst := slices.Max(all)
		user.Got = fmt.Sprintf("at most %d over %d transfers", worst, len(all))
		user.Met = worst <= targetUserPkts
	}
	ts = append(ts, user)
	return ts
}

// report prints the table of medians and the targets.
func report(w io.Writer, cfg config, res map[string]*result) {
	k := res[modeKernel]
	fmt.Fprintf(w, "\nResults: %d MiB passive FTP download, median of %d; connection rate (%d clients from %d address(es), %s), median of %d\n\n",
		cfg.sizeMiB, cfg.downloads, cfg.connClients, cfg.connSources, cfg.connDuration, cfg.connRuns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode\tMiB/s\tvs kernel\t%d KiB ms\tconn/s\tvs kernel\tconn errors\tuser-space pkts/transfer\t\n", cfg.smallKiB)
	for _, m := range modes {
		r := res[m]
		user := "-"
		if m == modeInspectd && len(r.UserPkts) > 0 {
			user = fmt.Sprintf("%.0f (%d MiB), %.0f (%d KiB)", medianU(r.UserPkts), cfg.sizeMiB, medianU(r.SmallUserPkts), cfg.smallKiB)
		}
		mb, cr := median(r.MiBps), median(r.ConnRates)
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.1f\t%.0f\t%s\t%d\t%s\t\n", m, mb, fmtRatio(mb, median(k.MiBps)),
			1000*median(r.SmallSecs), cr, fmtRatio(cr, median(k.ConnRates)), r.ConnErrors, user)
	}
	tw.Flush()
	in := res[modeInspectd]
	fmt.Fprintln(w)
	if len(in.ConnUserPkts) > 0 {
		fmt.Fprintf(w, "inspectd: %.1f packets in user space per connection (median)\n", median(in.ConnUserPkts))
	}
	fmt.Fprintf(w, "inspectd: packets lost by its queues: %d; dropped by its engine: %s\n", in.Lost, fmtDrops(in.Drops))
	for _, m := range modes {
		if r := res[m]; r.FirstError != "" {
			fmt.Fprintf(w, "%s: first connection error: %s\n", m, r.FirstError)
		}
	}
	fmt.Fprintln(w, "\nTargets:")
	for _, t := range targets(res) {
		met := "NOT MET"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(w, "  %-45s %-8s (%s)\n", t.What, met, t.Got)
	}
}
