package api_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/api"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
)

// TestBackendConcurrentReload runs workers' packets, ticks,
// keep-alive calls and clears against every read of the backend and
// reloads that move limits and timeouts up and down, for the race
// detector; then checks that the sums add up.
func TestBackendConcurrentReload(t *testing.T) {
	srcs := []string{testRules, testRules + "limits { sessions 20 half-open 5 }\ntimeouts { tcp-synwait 1s udp-idle 1s }\n",
		testRules + "limits { sessions 20000 }\n"}
	var rss []*rules.Ruleset
	for _, s := range srcs {
		rs, err := rules.Parse("test.rules", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		rss = append(rss, rs)
	}
	engines := []*inspect.Engine{
		inspect.New(rss[0], inspect.Options{Worker: 0, Workers: 2, FastPath: true}),
		inspect.New(rss[0], inspect.Options{Worker: 1, Workers: 2, FastPath: true}),
	}
	var mu sync.Mutex
	n := 0
	b := api.NewEngineBackend(engines, api.EngineConfig{
		Reload: func() error {
			mu.Lock()
			n++
			rs := rss[n%len(rss)]
			mu.Unlock()
			for _, e := range engines {
				e.SetRules(rs)
			}
			return nil
		},
		DeleteKernel: func(k []conntrack.Key) (int, error) { return len(k), nil },
	})
	w := b.Watch()
	defer w.Close()
	start := time.Unix(1700000000, 0)
	sv := netip.MustParseAddr("192.0.2.10")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + i)})
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				now := start.Add(time.Duration(j) * 10 * time.Millisecond)
				c := netip.AddrPortFrom(cl, uint16(1024+j%5000))
				e.Process(packettest.TCP(c, netip.AddrPortFrom(sv, 9000), packettest.SYN, 1, 0, nil), inspect.Meta{Time: now, In: "wan0"})
				e.Process(packettest.UDP(c, netip.AddrPortFrom(sv, 69), []byte("\x00\x01f\x00octet\x00")), inspect.Meta{Time: now, In: "wan0"})
				k := conntrack.Key{Proto: 6, Src: c.Addr(), SrcPort: c.Port(), Dst: sv, DstPort: 9000}
				e.Promote(k)
				e.Touch(k, now)
				e.Account(k, [2]uint64{5, 5}, [2]uint64{500, 500})
				if j%2000 == 0 {
					e.Tick(now)
					e.Offloaded(now)
				}
			}
		}()
	}
	for range 10 {
		b.Sessions()
		b.Expectations()
		b.Stats()
		b.Rules()
		if _, err := b.Reload(); err != nil {
			t.Fatal(err)
		}
		if ss := b.Sessions(); len(ss) > 0 {
			b.Clear(ss[0].ID)
		}
	}
	close(stop)
	wg.Wait()
	st := b.Stats()
	sum := 0
	for _, c := range st.SessionCounts {
		sum += c.Count
	}
	if sum > st.Sessions || st.HalfOpen < 0 || st.Expectations < 0 {
		t.Fatalf("stats: sessions %d, by kind %d, half-open %d, expectations %d", st.Sessions, sum, st.HalfOpen, st.Expectations)
	}
	if _, err := b.ClearAll(); err != nil {
		t.Fatal(err)
	}
}
