package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/lab"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 9, 1, 1, 5}, 5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its argument: %v", tc.in)
			}
		}
	}
	if got := medianU([]uint64{31, 30, 32}); got != 31 {
		t.Errorf("medianU = %v, want 31", got)
	}
}

func TestRatio(t *testing.T) {
	for _, tc := range []struct {
		x, base float64
		want    string
	}{
		{97, 100, "0.97x"},
		{1946.3, 1940.3, "1.00x"},
		{2, 1, "2.00x"},
		{5, 0, "n/a"},
		{5, -1, "n/a"},
	} {
		if got := fmtRatio(tc.x, tc.base); got != tc.want {
			t.Errorf("fmtRatio(%v, %v) = %q, want %q", tc.x, tc.base, got, tc.want)
		}
	}
}

// statsJSON is `inspectd stats --json` as the daemon prints it (trimmed).
const statsJSON = `{
  "workers": 2, "packets": 150, "accepted": 140, "dropped": 10,
  "new_sessions": 4, "session_packets": 136,
  "drop_reasons": {"tcp: SYN on an established session": 8, "no rule permits": 2},
  "sessions": 3, "half_open": 0, "expectations": 1,
  "queues": [
    {"queue": 0, "packets": 100, "accepted": 95, "dropped": 5, "offloaded": 2, "verdict_errors": 1, "overflows": 0, "queue_full": 2, "socket_full": 0},
    {"queue": 1, "packets": 50, "accepted": 45, "dropped": 5, "offloaded": 1, "verdict_errors": 0, "overflows": 3, "queue_full": 0, "socket_full": 4}
  ],
  "latency": {"bounds": [1e-6], "counts": [150, 0], "count": 150, "sum": 0.0001},
  "rules_loaded": "2026-01-02T03:04:05Z"
}`

func TestParseStats(t *testing.T) {
	st, err := parseStats([]byte(statsJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := countersOf(st)
	if c.userPkts != 150 || c.lost != 10 {
		t.Errorf("counters %+v, want 150 packets in user space, 10 lost", c)
	}
	if c.drops["tcp: SYN on an established session"] != 8 {
		t.Errorf("drops %v", c.drops)
	}
	for _, bad := range []string{"", "not json", "{}", `{"workers": "two"}`} {
		if _, err := parseStats([]byte(bad)); err == nil {
			t.Errorf("parseStats(%q) succeeded", bad)
		}
	}
}

func TestCountersSub(t *testing.T) {
	before := counters{userPkts: 100, lost: 1, drops: map[string]uint64{"a": 2}}
	after := counters{userPkts: 131, lost: 1, drops: map[string]uint64{"a": 5, "b": 1}}
	d, err := after.sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if d.userPkts != 31 || d.lost != 0 || d.drops["a"] != 3 || d.drops["b"] != 1 || len(d.drops) != 2 {
		t.Errorf("after - before = %+v", d)
	}
	if d, err := before.sub(before); err != nil || d.drops != nil || d.userPkts != 0 {
		t.Errorf("no change: %+v, %v", d, err)
	}
	if _, err := before.sub(after); err == nil {
		t.Error("counters going backwards accepted")
	}
	restarted := counters{userPkts: 200, drops: map[string]uint64{"a": 1}}
	if _, err := restarted.sub(before); err == nil {
		t.Error("a drop counter going backwards accepted")
	}
	if got := fmtDrops(map[string]uint64{"b": 1, "a": 1, "c": 7}); got != `7 "c", 1 "a", 1 "b"` {
		t.Errorf("fmtDrops = %s", got)
	}
	if got := fmtDrops(nil); got != "none" {
		t.Errorf("fmtDrops(nil) = %s", got)
	}
}

func TestParseCurl(t *testing.T) {
	secs, err := parseCurl("209715200 0.103512\n", 200<<20)
	if err != nil || secs != 0.103512 {
		t.Errorf("parseCurl = %v, %v", secs, err)
	}
	for _, bad := range []string{"", "209715200", "1 0.1", "x 0.1", "209715200 x", "209715200 0", "209715200 0.1 extra"} {
		if _, err := parseCurl(bad, 200<<20); err == nil {
			t.Errorf("parseCurl(%q) succeeded", bad)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.sizeMiB != 200 || c.downloads != 5 || c.connClients != 16 || c.connDuration != 4*time.Second || c.connSources != 1 {
		t.Errorf("defaults %+v do not match the issue's method", c)
	}
	for _, args := range [][]string{
		{"-size-mib", "0"}, {"-downloads", "0"}, {"-conn-clients", "0"}, {"-conn-duration", "0s"},
		{"-conn-runs", "-1"}, {"-queues", "0"}, {"-conn-sources", "0"}, {"-conn-sources", "201"},
		{"-small-kib", "0"}, {"extra"}, {"-nope"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
	if code := run([]string{"-downloads", "0"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	if code := run([]string{"connrate"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("connrate without -addr: exit %d, want 2", code)
	}
	if code := run([]string{"connrate", "-addr", "127.0.0.1:1", "-sources", "nope"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 2 {
		t.Errorf("connrate with a bad source: exit %d, want 2", code)
	}
}

func TestClientSources(t *testing.T) {
	got := clientSources(3)
	want := []netip.Addr{lab.ClientV4, netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("198.51.100.4")}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("clientSources(3) = %v, want %v", got, want)
	}
	if got := clientSources(1); len(got) != 1 {
		t.Errorf("clientSources(1) = %v", got)
	}
	srcs, err := parseSources("127.0.0.1, ::1")
	if err != nil || len(srcs) != 2 || !srcs[1].Is6() {
		t.Errorf("parseSources = %v, %v", srcs, err)
	}
	if srcs, err := parseSources(""); err != nil || srcs != nil {
		t.Errorf("parseSources(\"\") = %v, %v", srcs, err)
	}
}

// TestConnRate runs the client against an echo service on loopback; it
// checks counting, not speed.
func TestConnRate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := lab.ServeEcho(ln)
	defer echo.Close()
	var out bytes.Buffer
	if err := connRateCmd([]string{"-addr", ln.Addr().String(), "-clients", "2", "-duration", "50ms",
		"-sources", "127.0.0.1"}, &out); err != nil {
		t.Fatal(err)
	}
	var res connResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Conns == 0 || res.Errors != 0 || res.Elapsed <= 0 || res.Rate() <= 0 {
		t.Errorf("against a live echo service: %+v", res)
	}

	// Nothing listens any more: every attempt fails and is counted.
	addr := ln.Addr().String()
	echo.Close()
	res = connRate(context.Background(), addr, 2, 30*time.Millisecond, nil)
	if res.Conns != 0 || res.Errors == 0 || !strings.Contains(res.FirstError, "refused") {
		t.Errorf("against a closed port: %+v", res)
	}
	if (connResult{Conns: 5}).Rate() != 0 {
		t.Error("Rate without elapsed time is not 0")
	}
}

func TestReport(t *testing.T) {
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]*result{
		modeNone:   {MiBps: []float64{2000, 2100, 1900}, ConnRates: []float64{21000}},
		modeKernel: {MiBps: []float64{2000, 1000, 3000}, ConnRates: []float64{20000}},
		modeInspectd: {MiBps: []float64{1950, 1900, 2000}, SmallSecs: []float64{0.0025}, ConnRates: []float64{10000}, ConnErrors: 3,
			FirstError: "dial tcp: i/o timeout", UserPkts: []uint64{31, 29, 30}, SmallUserPkts: []uint64{28, 28, 28},
			ConnUserPkts: []float64{5.3}, Drops: map[string]uint64{"tcp: SYN on an established session": 80}},
	}
	ts := targets(res)
	if len(ts) != 3 || !ts[0].Met || ts[0].Got != "0.97x" || ts[1].Met || ts[1].Got != "0.50x" ||
		ts[2].Met || ts[2].Got != "at most 31 over 6 transfers" {
		t.Errorf("targets %+v", ts)
	}
	var out bytes.Buffer
	report(&out, cfg, res)
	for _, want := range []string{
		"inspectd  1950.0      0.97x        2.5   10000      0.50x",
		"30 (200 MiB), 28 (64 KiB)",
		"5.3 packets in user space per connection",
		`80 "tcp: SYN on an established session"`,
		"inspectd: first connection error: dial tcp: i/o timeout",
		"NOT MET  (0.50x)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	empty := map[string]*result{modeNone: {}, modeKernel: {}, modeInspectd: {}}
	for _, tg := range targets(empty) {
		if tg.Met || tg.Got != "not measured" {
			t.Errorf("target without figures: %+v", tg)
		}
	}
}
