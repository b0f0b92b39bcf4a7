package daemon

import (
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/inspectd/inspectd/internal/packettest"
	"github.com/inspectd/inspectd/rules"
)

const staleRules = `
interface wan wan0 net 198.51.100.0/24
interface lan lan0 net 192.0.2.0/24

in on wan default deny log {
    permit tcp from any to any port 9000
}
in on lan default deny log {
}
`

// TestNoPromotionOnStaleEntry: the kernel still holds a marked connection
// as ESTABLISHED (its peer vanished; the kernel keeps it for
// nf_conntrack_tcp_timeout_established, 5 days, while the engine expired
// the session after tcp-idle). A new SYN on the same ports is ignored by
// the kernel's TCP tracker (sES + SYN -> sIG: not INVALID, timeout not
// refreshed), reaches the queue, and the engine opens a half-open session
// and offloads it at the SYN. The entry saw no traffic since the session
// began, so it does not speak for it: the session is not promoted (no
// handshake ever completed; here the destination does not even exist),
// also by a keeper that sees the entry for the first time.
func TestNoPromotionOnStaleEntry(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "conntrack", "iptables-restore", "iptables-save")
	tp := nstest.Route(t)
	c := exec.Command("iptables-restore", "--noflush")
	c.Stdin = strings.NewReader(`*filter
-A FORWARD -p tcp -m conntrack --ctstate INVALID -j DROP
-A FORWARD -p tcp --syn -m conntrack --ctstate ESTABLISHED
-A FORWARD -p tcp
COMMIT
`)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	const dst = "192.0.2.99" // nobody answers
	nstest.Run(t, "conntrack", "-I", "-p", "tcp", "-s", nstest.ClientAddr, "-d", dst, "--sport", "40000", "--dport", "9000",
		"--state", "ESTABLISHED", "--status", "SEEN_REPLY,ASSURED", "-t", "500", "-m", "0x10000000")
	k, err := newKeeper(0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	if err := k.poll(time.Now()); err != nil { // an earlier keep-alive read
		t.Fatal(err)
	}

	// The client opens a new connection from the same port: a real SYN
	// through the kernel's forward path.
	nstest.In(t, tp.Client, func() {
		d := net.Dialer{Timeout: 300 * time.Millisecond,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(nstest.ClientAddr), Port: 40000}}
		if c, err := d.Dial("tcp", dst+":9000"); err == nil {
			c.Close()
		}
	})
	out := nstest.Run(t, "iptables-save", "-c", "-t", "filter")
	m := regexp.MustCompile(`\[(\d+):\d+\] -A FORWARD -p tcp .*--ctstate ESTABLISHED`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("the SYN was not seen as ESTABLISHED by the kernel:\n%s\n%s", out, nstest.Run(t, "conntrack", "-L"))
	}
	state := nstest.Run(t, "conntrack", "-L", "-p", "tcp", "--sport", "40000")
	t.Logf("kernel after the SYN: %s", strings.TrimSpace(state))

	// The engine sees that SYN (queued by rule 7) and offloads it.
	rs, err := rules.Parse("test.rules", []byte(staleRules))
	if err != nil {
		t.Fatal(err)
	}
	e := inspect.New(rs, inspect.Options{FastPath: true})
	client, server := netip.MustParseAddr(nstest.ClientAddr), netip.MustParseAddr(dst)
	syn := packettest.TCP(netip.AddrPortFrom(client, 40000), netip.AddrPortFrom(server, 9000), packettest.SYN, 1000, 0, nil)
	v := e.Process(syn, inspect.Meta{Time: time.Now(), In: "wan0", Out: "lan0"})
	if !v.Accept || !v.Offload {
		t.Fatalf("SYN verdict %+v, want accept with offload", v)
	}
	time.Sleep(10 * time.Millisecond)
	now := time.Now()
	if err := k.poll(now); err != nil {
		t.Fatal(err)
	}
	key := conntrack.Key{Src: client, Dst: server, SrcPort: 40000, DstPort: 9000, Proto: 6}
	t.Logf("keeper: established %v, alive since the SYN %v", k.alive.Load().isEstablished(key),
		k.alive.Load().since(key, now.Add(-10*time.Millisecond)))
	w := &worker{e: e, keep: k}
	w.Tick(now)
	for _, s := range e.Sessions() {
		if s.Key == key && s.State == conntrack.StateEstablished.String() {
			t.Errorf("session promoted to %s on a stale kernel entry; no handshake was ever completed", s.State)
		}
	}

	// A keeper that sees the entry for the first time only now (the
	// daemon restarted, or the entry's mark came back) must not take it
	// for this session's traffic either: its timeout ran down long ago.
	k2, err := newKeeper(0x10000000)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.close()
	now2 := time.Now()
	if err := k2.poll(now2); err != nil {
		t.Fatal(err)
	}
	(&worker{e: e, keep: k2}).Tick(now2)
	for _, s := range e.Sessions() {
		if s.Key == key && s.State == conntrack.StateEstablished.String() {
			t.Errorf("session promoted on a stale kernel entry the keeper saw for the first time")
		}
	}
}
