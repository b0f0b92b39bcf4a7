package rules

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/inspectd/inspectd/internal/decode"
)

// genRules returns a realistic rule file with n rules in the wan block: a
// few sets, then mostly tcp and udp service rules with hosts, networks and
// port lists, some ICMP rules, and a catch-all log rule at the end.
func genRules(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(`interface wan eth0
interface lan eth1 net 192.0.2.0/24 2001:db8:2::/64
set servers { 192.0.2.10 192.0.2.11 2001:db8:2::10 }
set partners { 198.51.100.0/26 198.51.100.128/25 203.0.113.0/24 2001:db8:10::/48 2001:db8:20::/48 }
ports web { 80 443 8000-8080 8443 }
ports ftp { 21 2121 }
in on lan default permit { }
in on wan default deny log {
`)
	for range n - 1 {
		host := fmt.Sprintf("192.0.2.%d", 20+r.IntN(200))
		one := fmt.Sprintf("198.51.100.%d", r.IntN(256))
		if r.IntN(4) == 0 {
			host = fmt.Sprintf("2001:db8:2::%x", 20+r.IntN(200))
			one = fmt.Sprintf("2001:db8:10::%x", r.IntN(256))
		}
		src := "any"
		switch r.IntN(5) {
		case 0:
			src = "@partners"
		case 1:
			src = one
		case 2:
			src = fmt.Sprintf("{ 203.0.113.%d/30 2001:db8:%x::/48 }", 4*r.IntN(60), r.IntN(4096))
		}
		switch k := r.IntN(20); {
		case k < 10:
			fmt.Fprintf(&b, "    permit tcp from %s to %s port %d\n", src, host, 1+r.IntN(20000))
		case k < 13:
			fmt.Fprintf(&b, "    permit tcp from %s to %s port { %d %d-%d }\n", src, host, 1+r.IntN(1000), 3000+r.IntN(1000), 5000+r.IntN(1000))
		case k < 15:
			fmt.Fprintf(&b, "    permit udp from %s to %s port %d\n", src, host, 1+r.IntN(20000))
		case k == 15:
			fmt.Fprintf(&b, "    permit tcp from %s to @servers port @web log\n", src)
		case k == 16:
			fmt.Fprintf(&b, "    deny tcp from %s port 0-1023 to %s log\n", src, host)
		case k == 17:
			fmt.Fprintf(&b, "    permit tcp from %s to @servers port @ftp inspect ftp\n", src)
		case k == 18:
			fmt.Fprintf(&b, "    permit icmp from any to 192.0.2.%d type { echo-request %d }\n", r.IntN(256), 13+r.IntN(2))
		default:
			fmt.Fprintf(&b, "    permit icmpv6 from any to %s type echo-request\n", "2001:db8:2::/64")
		}
	}
	b.WriteString("    deny any from any to any log\n}\n")
	return b.String()
}

func TestGenRules(t *testing.T) {
	rs := mustParse(t, genRules(200))
	if n := len(rs.InterfaceByName("wan").Block.Rules); n != 200 {
		t.Fatalf("%d rules", n)
	}
}

// BenchmarkMatch200Rules matches new flows against a 200-rule block. The
// flows reach the last rule (the catch-all), the worst case for a
// first-match list.
func BenchmarkMatch200Rules(b *testing.B) {
	rs := mustParse(b, genRules(200))
	blk := rs.InterfaceByName("wan").Block
	flows := map[string]*Flow{
		"tcp4": flow(decode.ProtoTCP, "198.51.100.77", 40000, "192.0.2.250", 65000),
		"tcp6": flow(decode.ProtoTCP, "2001:db8:10::1", 40000, "2001:db8:2::1", 65000),
		// A port inside the hull of many multi-range rules: they pass the
		// prefilter and need the full check.
		"tcp4-hull": flow(decode.ProtoTCP, "198.51.100.77", 40000, "192.0.2.250", 3500),
		"udp4":      flow(decode.ProtoUDP, "198.51.100.77", 40000, "192.0.2.250", 65000),
		"icmp":      icmpFlow(decode.ProtoICMP, "198.51.100.77", "192.0.2.250", 8),
	}
	for _, name := range []string{"tcp4", "tcp4-hull", "tcp6", "udp4", "icmp"} {
		f := flows[name]
		if r := blk.Match(f); r != blk.Rules[len(blk.Rules)-1] {
			b.Fatalf("%s: matched %+v, want the catch-all", name, r)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				blk.Match(f)
			}
		})
	}
}
