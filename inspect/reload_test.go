package inspect

import (
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/packettest"
)

// dupRules has the same rule text in two blocks: wan's copy first.
const dupRules = `
interface wan wan0 net 198.51.100.0/24
interface lan lan0 net 192.0.2.0/24

in on wan default deny {
    permit tcp from any to any port 9000
}
in on lan default deny {
    permit tcp from any to any port 9000
}
`

// TestReloadSameFileKeepsRuleOfBlock: a session admitted by the lan
// block's rule still names that rule after a reload of the very same
// file, not the wan block's rule of the same text: `inspectd sessions`
// and the session-close audit line must not name a rule of another
// interface that never saw the flow.
func TestReloadSameFileKeepsRuleOfBlock(t *testing.T) {
	e := New(mustRules(t, dupRules), Options{})
	v := e.Process(packettest.TCP(ap(server, 40000), ap(client, 9000), syn, 1, 0, nil), Meta{Time: start, In: "lan0"})
	if !v.Accept || v.Rule != "test.rules:9" {
		t.Fatalf("lan SYN: %+v", v)
	}
	if ss := e.Sessions(); len(ss) != 1 || ss[0].Rule != "test.rules:9" {
		t.Fatalf("before reload: %+v", ss)
	}
	e.SetRules(mustRules(t, dupRules))
	if ss := e.Sessions(); len(ss) != 1 || ss[0].Rule != "test.rules:9" {
		t.Fatalf("after reloading the same file the session names rule %q, want test.rules:9 (lan's rule)", ss[0].Rule)
	}
}

// TestReloadDroppedDeviceNotMisreported: when the device a session
// entered on is gone from the new file, the session shows no interface
// (and no rule), not the device that now stands at its old index.
func TestReloadDroppedDeviceNotMisreported(t *testing.T) {
	const three = `
interface wan wan0 net 198.51.100.0/24
interface lan lan0 net 192.0.2.0/24
interface dmz dmz0 net 203.0.113.0/24
in on wan default deny {
}
in on lan default deny {
}
in on dmz default permit {
}
`
	e := New(mustRules(t, three), Options{})
	dmzHost := third // 203.0.113.9
	if v := e.Process(packettest.TCP(ap(dmzHost, 40000), ap(client, 80), syn, 1, 0, nil), Meta{Time: start, In: "dmz0"}); !v.Accept {
		t.Fatalf("dmz SYN: %+v", v)
	}
	e.SetRules(mustRules(t, strings.ReplaceAll(three, "dmz", "guest")))
	ss := e.Sessions()
	if len(ss) != 1 {
		t.Fatalf("sessions %+v", ss)
	}
	if ss[0].In != "" || ss[0].Rule != "" {
		t.Fatalf("session that entered on dmz0 reported as entering on %q by rule %q after dmz0 left the rules", ss[0].In, ss[0].Rule)
	}
}

// TestReloadRenumbersUncollectedSessions: sessions whose deadline passed
// but that expiry has not collected yet (8 per packet; the rest at the
// next tick) are renumbered too: when they are collected after the
// reload, their session-close line (the audit trail) names their own
// rule, not whatever rule of the new file stands at their old index.
func TestReloadRenumbersUncollectedSessions(t *testing.T) {
	l := newLabWith(t, limitRules)
	for i := range 20 {
		l.process(client, packettest.UDP(ap(client, uint16(10000+i)), ap(server, 53), []byte("q")), true, ReasonRule)
	}
	// udp-idle (30 s) passes; one unrelated packet advances the clock
	// and collects only a few of the dead sessions.
	l.advance(31 * time.Second)
	l.process(client, packettest.ICMPEcho(client, server, 77, 1, false), true, ReasonRule)
	// A reload that adds a rule in front: the DNS rule moves from index 2
	// to 3, and index 2 is now the TFTP rule.
	moved := strings.Replace(limitRules, "in on wan default deny log {\n",
		"in on wan default deny log {\n    permit tcp from any to @servers port 8080\n", 1)
	rs := mustRules(t, moved)
	var dnsLoc string
	for _, r := range rs.Rules {
		if strings.Contains(r.Text, "port 53") {
			dnsLoc = r.Pos.String()
		}
	}
	l.e.SetRules(rs)
	l.events = nil
	l.e.Tick(l.now)
	closed := 0
	for _, ev := range l.events {
		if ev.Kind != SessionClose || ev.Session.Proto != "udp" {
			continue
		}
		closed++
		if ev.Session.Rule != dnsLoc && ev.Session.Rule != "" {
			t.Fatalf("session %d (admitted by the DNS rule) closed naming rule %q; the DNS rule is now %s",
				ev.Session.ID, ev.Session.Rule, dnsLoc)
		}
	}
	if closed == 0 {
		t.Fatal("no udp session left to collect at the tick: test setup")
	}
}

// TestReloadReconfiguresInspectors: a reload that shortens ftp-expect
// and raises min-data-port governs the pinholes a control session
// negotiates after it, also when the session opened before (it may live
// for hours, kept alive by its transfers).
func TestReloadReconfiguresInspectors(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	l.e.SetRules(mustRules(t, testRules+"timeouts { ftp-expect 5s }\nftp { min-data-port 40000 }\n"))
	f.c.send("PASV\r\n")
	f.s.raw(ack|psh, f.s.next, "227 Entering Passive Mode (192,0,2,10,117,49).\r\n", false, "ftp: 227 names port 30001, below 40000")
	f.pasv(40001)
	xs := l.e.Expectations()
	if len(xs) != 1 {
		t.Fatalf("expectations %+v", xs)
	}
	if d := xs[0].Expires.Sub(xs[0].Created); d != 5*time.Second {
		t.Fatalf("pinhole negotiated after the reload lasts %v, ftp-expect is now 5s", d)
	}
}

// TestClearAdoptedUDPFreesNoExtraShare: a UDP flow adopted after a
// restart (Meta.Offloaded) is not counted per host, and clearing it (or
// its expiry) must not take it off the host's count: the host would then
// get one more session than sessions-per-host.
func TestClearAdoptedUDPFreesNoExtraShare(t *testing.T) {
	l := newLabWith(t, limitRules+"limits { sessions 64 sessions-per-host 2 }\n")
	l.now = l.now.Add(time.Millisecond)
	v := l.e.Process(packettest.UDP(ap(client, 9999), ap(server, 53), []byte("q")), Meta{Time: l.now, In: "wan0", Offloaded: true})
	if !v.Accept || v.Reason != ReasonAdopted {
		t.Fatalf("adopt: %+v", v)
	}
	if _, ok := l.e.Clear(v.Session); !ok {
		t.Fatal("clear")
	}
	admitted := 0
	for i := range 5 {
		if v := l.flood(client, packettest.UDP(ap(client, uint16(20000+i)), ap(server, 53), []byte("q"))); v.Accept {
			admitted++
		}
	}
	if admitted != 2 {
		t.Fatalf("host admitted %d sessions with sessions-per-host 2", admitted)
	}
}
