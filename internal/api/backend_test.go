package api_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
)

const testRules = `
interface wan wan0 net 198.51.100.0/24
interface lan lan0 net 192.0.2.0/24
in on wan default deny log {
    permit udp from any to 192.0.2.10 port 69 inspect tftp
    permit tcp from any to 192.0.2.10 port 9000
}
in on lan default deny {
}
`

func TestEngineBackend(t *testing.T) {
	rs, err := rules.Parse("test.rules", []byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	engines := []*inspect.Engine{
		inspect.New(rs, inspect.Options{Worker: 0, Workers: 2}),
		inspect.New(rs, inspect.Options{Worker: 1, Workers: 2}),
	}
	var deleted []conntrack.Key
	reloads := 0
	now := time.Unix(1700000000, 0)
	b := api.NewEngineBackend(engines, api.EngineConfig{
		Reload: func() error {
			reloads++
			if reloads == 2 {
				return errors.New("test.rules:1:1: broken")
			}
			for _, e := range engines {
				e.SetRules(rs)
			}
			return nil
		},
		Queues:       func() []api.QueueStats { return []api.QueueStats{{Queue: 0, Packets: 3}} },
		Latency:      func() api.Histogram { return api.Histogram{Count: 3} },
		DeleteKernel: func(k []conntrack.Key) (int, error) { deleted = append(deleted, k...); return len(k), nil },
		WatchBuffer:  16,
		Now:          func() time.Time { return now },
	})
	w := b.Watch()
	defer w.Close()

	cl := netip.MustParseAddr("198.51.100.2")
	sv := netip.MustParseAddr("192.0.2.10")
	m := inspect.Meta{Time: now, In: "wan0"}
	// A TFTP read request on worker 0 (opens a session and an expectation),
	// a TCP SYN on worker 1, and a denied packet.
	if v := engines[0].Process(packettest.UDP(netip.AddrPortFrom(cl, 5000), netip.AddrPortFrom(sv, 69), []byte("\x00\x01f.bin\x00octet\x00")), m); !v.Accept {
		t.Fatalf("tftp request: %+v", v)
	}
	if v := engines[1].Process(packettest.TCP(netip.AddrPortFrom(cl, 40000), netip.AddrPortFrom(sv, 9000), packettest.SYN, 1, 0, nil), m); !v.Accept {
		t.Fatalf("syn: %+v", v)
	}
	if v := engines[1].Process(packettest.TCP(netip.AddrPortFrom(cl, 40001), netip.AddrPortFrom(sv, 22), packettest.SYN, 1, 0, nil), m); v.Accept {
		t.Fatalf("ssh syn accepted: %+v", v)
	}

	ss := b.Sessions()
	if len(ss) != 2 || ss[0].ID >= ss[1].ID {
		t.Fatalf("sessions = %+v", ss)
	}
	xs := b.Expectations()
	if len(xs) != 1 || xs[0].ALG != "tftp" {
		t.Fatalf("expectations = %+v", xs)
	}
	st := b.Stats()
	if st.Workers != 2 || st.Packets != 3 || st.Accepted != 2 || st.Dropped != 1 || st.DropReasons[inspect.ReasonDenyDefault] != 1 ||
		st.Sessions != 2 || st.Expectations != 1 || st.Limits[0].Used != 1 || st.Limits[0].Limit != rs.Limits.Sessions ||
		len(st.Queues) != 1 || st.Latency.Count != 3 || !st.RulesLoaded.Equal(now) || len(st.SessionCounts) != 2 ||
		len(st.ExpectCounts) != 1 {
		t.Errorf("stats = %+v", st)
	}
	r := b.Rules()
	if len(r.Rules) != 2 || r.Rules[0].Hits != 1 || r.Rules[1].Hits != 1 || r.Rules[0].Inspect != "tftp" ||
		r.Rules[0].Interface != "wan" || len(r.Defaults) != 2 || r.Defaults[0].Action != "deny" || !r.Defaults[0].Log {
		t.Errorf("rules = %+v", r)
	}

	kinds := map[string]int{}
	for len(w.C()) > 0 {
		kinds[(<-w.C()).Kind.String()]++
	}
	if kinds["session-open"] != 2 || kinds["expect-add"] != 1 || kinds["deny"] != 1 {
		t.Errorf("events = %v", kinds)
	}

	tcpID := ss[0].ID
	if ss[0].Proto != "tcp" {
		tcpID = ss[1].ID
	}
	if res, err := b.Clear(tcpID); err != nil || res.Sessions != 1 || res.Kernel != 1 || len(deleted) != 1 || deleted[0].DstPort != 9000 {
		t.Errorf("clear = %+v, %v, deleted %v", res, err, deleted)
	}
	if _, err := b.Clear(tcpID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("clear twice: %v", err)
	}
	if res, err := b.ClearAll(); err != nil || res.Sessions != 1 || len(b.Sessions()) != 0 {
		t.Errorf("clear all = %+v, %v", res, err)
	}

	now = now.Add(time.Hour)
	if res, err := b.Reload(); err != nil || !strings.Contains(res.Summary, "2 rules") || !b.Stats().RulesLoaded.Equal(now) {
		t.Errorf("reload = %+v, %v", res, err)
	}
	loaded := now
	now = now.Add(time.Hour)
	if _, err := b.Reload(); err == nil || !b.Rules().Loaded.Equal(loaded) {
		t.Errorf("failed reload: %v, loaded %v", err, b.Rules().Loaded)
	}
}

func TestHub(t *testing.T) {
	h := api.NewHub(2)
	h.Publish(inspect.Event{Kind: inspect.Deny}) // nobody watches
	a, b := h.Watch(), h.Watch()
	for range 3 {
		h.Publish(inspect.Event{Kind: inspect.Deny})
	}
	if len(a.C()) != 2 || a.Lost() != 1 || b.Lost() != 1 || h.Lost() != 2 {
		t.Errorf("lost a %d b %d hub %d", a.Lost(), b.Lost(), h.Lost())
	}
	a.Close()
	a.Close()
	<-b.C()
	h.Publish(inspect.Event{Kind: inspect.Note})
	if a.Lost() != 1 || b.Lost() != 1 || len(b.C()) != 2 {
		t.Errorf("after close: a lost %d, b lost %d, b queued %d", a.Lost(), b.Lost(), len(b.C()))
	}
	if allocs := testing.AllocsPerRun(100, func() { h.Publish(inspect.Event{Kind: inspect.Deny}) }); allocs != 0 {
		t.Errorf("Publish allocates %v times", allocs)
	}
}

func TestHistogram(t *testing.T) {
	h := api.Histogram{Bounds: []float64{1, 2, 3}, Counts: []uint64{1, 2, 0, 1}, Count: 4, Sum: 10}
	for q, want := range map[float64]float64{0.25: 1, 0.5: 2, 0.75: 2} {
		if got := h.Quantile(q); got != want {
			t.Errorf("q%v = %v, want %v", q, got, want)
		}
	}
	if got := h.Quantile(1); got < 1e300 {
		t.Errorf("q1 = %v, want +Inf", got)
	}
	if h.Mean() != 2.5 || (api.Histogram{}).Quantile(0.5) != 0 || (api.Histogram{}).Mean() != 0 {
		t.Error("mean or empty histogram")
	}
	if (api.Usage{Used: 1, Limit: 4}).Percent() != 25 || (api.Usage{}).Percent() != 0 {
		t.Error("usage percent")
	}
}
