package lab

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestKernelRuleset(t *testing.T) {
	v4, v6 := KernelRuleset(false), KernelRuleset(true)
	for _, rs := range []string{v4, v6} {
		for _, want := range []string{
			":FORWARD DROP",
			"-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
			"-i wan0 -p tcp -m multiport --dports 21,2121 -j CT --helper ftp\n",
			"-i wan0 -p udp --dport 69 -j CT --helper tftp\n",
			"-i wan0 -p tcp --dport 9000 --syn -m conntrack --ctstate NEW -j ACCEPT\n",
		} {
			if !strings.Contains(rs, want) {
				t.Errorf("ruleset lacks %q:\n%s", want, rs)
			}
		}
		if strings.Count(rs, "COMMIT\n") != 2 {
			t.Errorf("ruleset must commit the raw and filter tables:\n%s", rs)
		}
	}
	if !strings.Contains(v4, "-p icmp --icmp-type echo-request") || strings.Contains(v4, "icmpv6") {
		t.Errorf("IPv4 ruleset's ICMP rule:\n%s", v4)
	}
	if !strings.Contains(v6, "-p ipv6-icmp --icmpv6-type echo-request") {
		t.Errorf("IPv6 ruleset's ICMP rule:\n%s", v6)
	}
}

// TestKernelFirewall loads the kernel firewall into a real lab and checks
// that it lets the echo service through and stops other ports, both
// families, and that OpenFirewall lifts it.
func TestKernelFirewall(t *testing.T) {
	l := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	echo, err := StartEcho(l.Server, "[::]:9000")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	other, err := StartEcho(l.Server, "[::]:9001")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// The first IPv6 connection through the lab's edge loses its SYN and
	// waits for the retransmission (1 s), hence the generous timeout for
	// what must pass; what must not pass gets a short one.
	reach := func(dst netip.Addr, port uint16, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := l.Client.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte{1}); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	}

	if err := l.KernelFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := l.Edge.Run(ctx, "iptables-save")
	if err != nil || !strings.Contains(out, "--helper ftp") {
		t.Fatalf("iptables-save after KernelFirewall: %v\n%s", err, out)
	}
	for _, dst := range []netip.Addr{ServerV4, ServerV6} {
		if err := reach(dst, EchoPort, 5*time.Second); err != nil {
			t.Errorf("echo service at %s blocked by the kernel firewall: %v", dst, err)
		}
		if err := reach(dst, 9001, 300*time.Millisecond); err == nil {
			t.Errorf("port 9001 at %s reachable through the kernel firewall", dst)
		}
	}
	if err := l.OpenFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.Addr{ServerV4, ServerV6} {
		if err := reach(dst, 9001, 5*time.Second); err != nil {
			t.Errorf("port 9001 at %s blocked after OpenFirewall: %v", dst, err)
		}
	}
}
