package inspect

// Bounded state and fairness of the engine under hostile load: one
// abusive peer must not deny service to others.

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/packettest"
)

// attacker is one host outside (on wan0) that floods; victim hosts use
// the lab's client and server.
var attacker = netip.MustParseAddr("198.51.100.66")

// limitRules is testRules with a plain UDP service (DNS) added.
const limitRules = `
interface wan wan0 net 198.51.100.0/24 2001:db8:1::/64
interface lan lan0 net 192.0.2.0/24 2001:db8:2::/64

set servers { 192.0.2.10 2001:db8:2::10 }

in on wan default deny log {
    permit tcp from any to @servers port { 21 2121 } inspect ftp
    permit udp from any to @servers port 69 inspect tftp
    permit udp from any to @servers port 53
    permit tcp from any to @servers port 9000
    permit icmp from any to any type echo-request
    permit icmpv6 from any to any type echo-request
}
in on lan default deny log {
}
`

// flood sends pkt from src without checking its verdict (what the
// engine does to the attacker is not the point) and returns it.
func (l *lab) flood(src netip.Addr, pkt []byte) Verdict {
	l.n++
	l.now = l.now.Add(time.Millisecond)
	return l.e.Process(pkt, Meta{Time: l.now, In: ifaceOf(src)})
}

// TestOneHostFillsSessionTable: half-open-per-host covers TCP handshakes
// only. Without sessions-per-host one source host could fill the whole
// session table with flows nobody answers (UDP from many ports, ICMP echo
// with many identifiers, or TCP connections it opens and resets itself,
// which leave half-open at once but stay in the table for tcp-finwait),
// and every other host's new flow would be refused with "limit: session
// table full". With it, the flood stops at the host's share and the
// victim's first SYN is admitted.
func TestOneHostFillsSessionTable(t *testing.T) {
	const limits = "limits { sessions 64 sessions-per-host 16 half-open 32 half-open-per-host 8 }\n"
	cases := []struct {
		name  string
		flood func(l *lab, i int)
	}{
		{"udp-ports", func(l *lab, i int) {
			l.flood(attacker, packettest.UDP(ap(attacker, uint16(10000+i)), ap(server, 53), []byte("q")))
		}},
		{"icmp-echo-ids", func(l *lab, i int) {
			l.flood(attacker, packettest.ICMPEcho(attacker, server, uint16(1+i), 1, false))
		}},
		{"tcp-syn-then-own-reset", func(l *lab, i int) {
			a, s := ap(attacker, uint16(20000+i)), ap(server, 9000)
			l.flood(attacker, packettest.TCP(a, s, syn, 7000, 0, nil))
			l.flood(attacker, packettest.TCP(a, s, rst, 7001, 0, nil))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLabWith(t, limitRules+limits)
			for i := range 200 {
				c.flood(l, i)
			}
			v := l.e.Process(packettest.TCP(ap(client, 40000), ap(server, 9000), syn, 1, 0, nil),
				Meta{Time: l.now.Add(time.Millisecond), In: "wan0"})
			if !v.Accept {
				t.Errorf("one host (%v) holds %d of %d sessions; another host's SYN is refused: %q; "+
					"want a per-host share so that others still get in", attacker, l.e.Stats().Sessions, 64, v.Reason)
			}
			if n := l.e.Stats().Reasons[conntrack.ErrSessionsPerHost.Error()]; n == 0 {
				t.Errorf("the flood was not refused by sessions-per-host: %v", l.e.Stats().Reasons)
			}
		})
	}
}

// TestOneHostExhaustsExpectations: without expectations-per-host one
// client could fill the expectation table (4096 by default, 16 here), and
// every other user's FTP or TFTP data connection would be refused while
// it lasts:
//
//   - TFTP: each request from a new source port is a new request session
//     whose RRQ opens an expectation at once, without any answer from the
//     server (4096 UDP packets per 30 s, about 140 packets a second);
//   - FTP: each control session holds one pending hole, and PORT opens it
//     on the command itself; one host may open any number of control
//     sessions (only half-open ones are limited per host).
//
// The holes of one client (the owner session's source address) are
// bounded to a share of the table, so the victim's PASV still opens its
// hole and its data connection is admitted as related.
func TestOneHostExhaustsExpectations(t *testing.T) {
	const limits = "limits { expectations 16 expectations-per-host 4 }\n"
	cases := []struct {
		name  string
		flood func(l *lab)
	}{
		{"tftp-requests", func(l *lab) {
			for i := range 64 {
				rrq := []byte("\x00\x01f" + strconv.Itoa(i) + "\x00octet\x00")
				l.process(attacker, packettest.UDP(ap(attacker, uint16(30000+i)), ap(server, 69), rrq), true, ReasonRule)
			}
		}},
		{"ftp-control-sessions", func(l *lab) {
			for i := range 20 {
				f := l.ftp(attacker, uint16(41000+i), server)
				f.port(uint16(52000 + i))
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLabWith(t, limitRules+limits)
			c.flood(l)
			f := l.ftp(client, 40000, server)
			f.pasv(30001)
			v := l.e.Process(packettest.TCP(ap(client, 50000), ap(server, 30001), syn, 1, 0, nil),
				Meta{Time: l.now.Add(time.Millisecond), In: "wan0"})
			if !v.Accept || v.Reason != ReasonRelated {
				t.Errorf("after one host's flood (%d expectations pending, notes %q) the victim's passive data "+
					"connection gets accept=%v %q; want it related: one host must not hold every hole",
					l.e.Stats().Expectations, lastNotes(l, 2), v.Accept, v.Reason)
			}
		})
	}
}

// lastNotes returns the reasons of the last n Note events.
func lastNotes(l *lab, n int) []string {
	notes := l.kinds(Note)
	if len(notes) > n {
		notes = notes[len(notes)-n:]
	}
	return notes
}

// TestActiveDataChargedToClient: an active-mode data connection is opened
// by the server (from port 20). Counted under the server's address, a
// client that asks for active transfers on several control sessions and
// never answers the server's SYNs would use up the server's
// half-open-per-host quota (4 here), and the active transfers of every
// other client of that server would be refused. It counts under the
// client that negotiated it (the owner session's source): the victim's
// active data connection is admitted as related.
func TestActiveDataChargedToClient(t *testing.T) {
	l := newLabWith(t, limitRules+"limits { half-open-per-host 4 }\n")
	for i := range 4 {
		f := l.ftp(attacker, uint16(41000+i), server)
		f.port(uint16(52000 + i))
		f.s.send("200 PORT command successful.\r\n")
		f.c.send("LIST\r\n")
		// The server connects; the attacker never answers the SYN.
		l.syn(ap(server, 20), ap(attacker, uint16(52000+i)), true, ReasonRelated)
	}
	f := l.ftp(client, 40000, server)
	f.port(50000)
	f.s.send("200 PORT command successful.\r\n")
	v := l.e.Process(packettest.TCP(ap(server, 20), ap(client, 50000), syn, 1, 0, nil),
		Meta{Time: l.now.Add(time.Millisecond), In: "lan0"})
	if !v.Accept || v.Reason != ReasonRelated {
		t.Errorf("another client's unanswered active transfers block this client's: server SYN gets accept=%v %q; want related",
			v.Accept, v.Reason)
	}
}

// TestRefusedRelatedSYNKeepsHole: when the first packet of an expected
// connection is refused by a table limit (the table full for a moment),
// the expectation stays: the SYN the client retransmits when there is
// room again, with the hole still pending, is admitted as related. (It
// used to be used up before the session was refused, so a transient limit
// hit killed the transfer for good.)
func TestRefusedRelatedSYNKeepsHole(t *testing.T) {
	l := newLabWith(t, limitRules+"limits { sessions 8 }\n")
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	// Seven pings fill the table (ICMP sessions live 10 s).
	for i := range 7 {
		l.process(attacker, packettest.ICMPEcho(attacker, server, uint16(1+i), 1, false), true, ReasonRule)
	}
	data := packettest.TCP(ap(client, 50000), ap(server, 30001), syn, 1, 0, nil)
	l.process(client, data, false, "limit: session table full")
	l.advance(11 * time.Second) // the pings are over; the hole has 49 s left
	v := l.e.Process(data, Meta{Time: l.now.Add(time.Millisecond), In: "wan0"})
	if !v.Accept || v.Reason != ReasonRelated {
		t.Errorf("retransmitted data SYN after the table had room again: accept=%v %q; want related "+
			"(the refused first SYN must not use up the hole)", v.Accept, v.Reason)
	}
}

// TestIPv6PerHostIsPer64: an IPv6 host holds a /64 (SLAAC, privacy
// addresses) and can send from as many of its addresses as it likes:
// counted per address, one host would fill the global half-open table and
// refuse every other client's SYN. IPv6 sources count per /64 (as Linux's
// connlimit and hashlimit users configure it), so the other client still
// gets in.
func TestIPv6PerHostIsPer64(t *testing.T) {
	l := newLabWith(t, limitRules+"limits { half-open 16 half-open-per-host 4 }\n")
	for i := range 64 {
		src := netip.MustParseAddr("2001:db8:1::" + strconv.FormatInt(int64(0x100+i), 16))
		l.flood(src, packettest.TCP(ap(src, 40000), ap(server6, 9000), syn, 7000, 0, nil))
	}
	victim := netip.MustParseAddr("2001:db8:5::2")
	v := l.e.Process(packettest.TCP(ap(victim, 40000), ap(server6, 9000), syn, 1, 0, nil),
		Meta{Time: l.now.Add(time.Millisecond), In: "wan0"})
	if !v.Accept {
		t.Errorf("one /64 holds %d half-open sessions; another client's SYN: %q; want accepted",
			l.e.Stats().HalfOpen, v.Reason)
	}
}

// TestAdoptedSessionsNotCharged: after a restart the engine adopts
// offloaded connections from whatever packet comes first, keyed in that
// packet's direction, often the server's. Sessions picked up in the
// middle of their life are not counted per host: counted under the
// server, its clients' connections would use up its share and refuse its
// own new flows.
func TestAdoptedSessionsNotCharged(t *testing.T) {
	src := limitRules + "limits { sessions 256 sessions-per-host 8 }\n"
	src = strings.Replace(src, "in on lan default deny log {\n}", "in on lan default deny log {\n    permit udp from any to any port 53\n}", 1)
	l := newLabWith(t, src)
	now := start
	for i := range 8 {
		// An offloaded client connection to the server; the server's
		// segment is the first the new run sees.
		p := packettest.TCP(ap(server, 9000), ap(client, uint16(40000+i)), ack, 5000, 1000, []byte("x"))
		now = now.Add(time.Millisecond)
		if v := l.e.Process(p, Meta{Time: now, In: "lan0", Offloaded: true}); !v.Accept {
			t.Fatalf("adopt: %q", v.Reason)
		}
	}
	now = now.Add(time.Millisecond)
	v := l.e.Process(packettest.UDP(ap(server, 5353), ap(client, 53), []byte("q")), Meta{Time: now, In: "lan0"})
	if !v.Accept {
		t.Errorf("the server's own first flow after adopting 8 of its clients' connections: %q; "+
			"the clients' connections count under the server", v.Reason)
	}
}
