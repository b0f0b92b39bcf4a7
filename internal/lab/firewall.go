package lab

import (
	"bytes"
	"context"
	"fmt"
	"strings"
)

// KernelRuleset returns the iptables-restore input (ip6 selects the
// ip6tables flavour) that makes the edge a stateful firewall with the
// kernel's conntrack and its FTP and TFTP helpers, equivalent to
// examples/lab.rules: from the WAN side only new FTP control connections
// (TCP 21 and 2121, FTP helper), TFTP requests (UDP 69, TFTP helper),
// connections to the benchmark echo service (TCP EchoPort) and echo
// requests may start; everything established or related to a tracked
// connection (the helpers' data channels) passes; the rest is dropped. It
// is the baseline inspectd replaces. Restoring it replaces the filter and
// raw tables.
func KernelRuleset(ip6 bool) string {
	icmp := "-p icmp --icmp-type echo-request"
	if ip6 {
		icmp = "-p ipv6-icmp --icmpv6-type echo-request"
	}
	return fmt.Sprintf(`*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i %[1]s -p tcp -m multiport --dports 21,2121 -j CT --helper ftp
-A PREROUTING -i %[1]s -p udp --dport 69 -j CT --helper tftp
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i %[1]s -p tcp -m multiport --dports 21,2121 --syn -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i %[1]s -p udp --dport 69 -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i %[1]s -p tcp --dport %[2]d --syn -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -i %[1]s %[3]s -m conntrack --ctstate NEW -j ACCEPT
COMMIT
`, WANIf, EchoPort, icmp)
}

// openRuleset is the iptables-restore input that empties the filter and
// raw tables and accepts everything.
const openRuleset = `*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
`

// KernelFirewall loads KernelRuleset into the edge for both address
// families, replacing its filter and raw tables, and empties the edge's
// connection tracking table so no earlier flow is carried over.
func (l *Lab) KernelFirewall(ctx context.Context) error {
	if err := l.FlushConntrack(ctx); err != nil {
		return err
	}
	if err := l.restore(ctx, "iptables-restore", KernelRuleset(false)); err != nil {
		return err
	}
	return l.restore(ctx, "ip6tables-restore", KernelRuleset(true))
}

// OpenFirewall empties the edge's filter and raw tables (policy ACCEPT:
// the edge forwards everything) and its connection tracking table. It
// undoes KernelFirewall; rules of other tables (inspectd's mangle hooks)
// are left alone.
func (l *Lab) OpenFirewall(ctx context.Context) error {
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		if err := l.restore(ctx, cmd, openRuleset); err != nil {
			return err
		}
	}
	return l.FlushConntrack(ctx)
}

// FlushConntrack empties the edge's kernel connection tracking table, both
// address families (conntrack(8), Debian package conntrack).
func (l *Lab) FlushConntrack(ctx context.Context) error {
	for _, fam := range []string{"ipv4", "ipv6"} {
		out, err := l.Edge.Command(ctx, "conntrack", "-F", "-f", fam).CombinedOutput()
		if err != nil {
			return fmt.Errorf("lab: conntrack -F -f %s in %s: %w: %s", fam, l.Edge, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func (l *Lab) restore(ctx context.Context, cmd, ruleset string) error {
	c := l.Edge.Command(ctx, cmd)
	c.Stdin = strings.NewReader(ruleset)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: %s in %s: %w: %s", cmd, l.Edge, err, bytes.TrimSpace(out))
	}
	return nil
}
