package inspect

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/packettest"
)

// This file holds the scripted-conversation helpers of the adversarial
// suite (adversarial_test.go): a lab that runs raw packets through one
// engine and checks each verdict, and TCP connections that track sequence
// and acknowledgement numbers for both ends, so that a test reads as the
// FTP dialogue:
//
//	f := l.ftp(client, 40000, server)
//	f.c.send("PASV\r\n")
//	f.s.send("227 Entering Passive Mode (192,0,2,10,117,49)\r\n")
//	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)

// third is a host that takes part in no conversation (outside), and
// lanHost another host behind the firewall, next to the server.
var (
	third   = netip.MustParseAddr("203.0.113.9")
	lanHost = netip.MustParseAddr("192.0.2.99")
)

// lab runs scripted packets through one engine enforcing testRules and
// records the engine's events.
type lab struct {
	t      *testing.T
	e      *Engine
	now    time.Time
	n      int // packets processed
	events []Event
	// parent maps each session opened to its parent (0 for none).
	parent map[uint64]uint64
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabWith(t, testRules)
}

// newLabWith is newLab with another rule file.
func newLabWith(t *testing.T, src string) *lab {
	t.Helper()
	l := &lab{t: t, e: New(mustRules(t, src), Options{FastPath: true}), now: start, parent: map[uint64]uint64{}}
	l.e.Subscribe(func(ev Event) {
		l.events = append(l.events, ev)
		if ev.Kind == SessionOpen {
			l.parent[ev.Session.ID] = ev.Session.Parent
		}
	})
	return l
}

// ifaceOf names the interface a packet from a enters on: the server and
// its neighbours are behind lan0, everyone else (the client, the third
// party) is outside, on wan0.
func ifaceOf(a netip.Addr) string {
	for _, p := range []string{"192.0.2.0/24", "2001:db8:2::/64"} {
		if netip.MustParsePrefix(p).Contains(a) {
			return "lan0"
		}
	}
	return "wan0"
}

// process runs one packet from src and checks that it is accepted or
// dropped, with a reason that starts with reason.
func (l *lab) process(src netip.Addr, pkt []byte, accept bool, reason string) Verdict {
	l.t.Helper()
	l.n++
	l.now = l.now.Add(time.Millisecond)
	v := l.e.Process(pkt, Meta{Time: l.now, In: ifaceOf(src)})
	if v.Accept != accept || !strings.HasPrefix(v.Reason, reason) {
		l.t.Fatalf("packet %d from %v: got accept=%v reason %q, want accept=%v reason %q",
			l.n, src, v.Accept, v.Reason, accept, reason)
	}
	if v.Reason == "" {
		l.t.Fatalf("packet %d: verdict without a reason", l.n)
	}
	return v
}

// advance lets time pass with no packets; the engine sees it on the next
// packet (or a Tick).
func (l *lab) advance(d time.Duration) { l.now = l.now.Add(d) }

// syn sends a lone SYN from a to b and checks its verdict.
func (l *lab) syn(a, b netip.AddrPort, accept bool, reason string) Verdict {
	l.t.Helper()
	return l.process(a.Addr(), packettest.TCP(a, b, syn, 7000, 0, nil), accept, reason)
}

// tcpConn is a scripted TCP connection between its initiator a and its
// responder b.
type tcpConn struct {
	l    *lab
	id   uint64 // the session's ID
	a, b *peer
}

// peer is one end of a tcpConn.
type peer struct {
	conn  *tcpConn
	addr  netip.AddrPort
	next  uint32 // sequence number of the next byte it sends
	other *peer
}

// dial opens a connection from a to b: the SYN must be accepted with a
// reason starting with reason, the SYN-ACK and ACK as session traffic.
func (l *lab) dial(a, b netip.AddrPort, reason string) *tcpConn {
	l.t.Helper()
	c := &tcpConn{l: l}
	c.a = &peer{conn: c, addr: a, next: 1000}
	c.b = &peer{conn: c, addr: b, next: 500000}
	c.a.other, c.b.other = c.b, c.a
	v := l.process(a.Addr(), packettest.TCP(a, b, syn, c.a.next, 0, nil), true, reason)
	c.id = v.Session
	c.a.next++
	l.process(b.Addr(), packettest.TCP(b, a, syn|ack, c.b.next, c.a.next, nil), true, ReasonSession)
	c.b.next++
	c.a.ack()
	return c
}

// dataConn opens a data connection from a to b that an expectation of
// session parent admits, and checks that it is the parent's child.
func (l *lab) dataConn(a, b netip.AddrPort, parent uint64) *tcpConn {
	l.t.Helper()
	c := l.dial(a, b, ReasonRelated)
	if got := l.parent[c.id]; got != parent {
		l.t.Fatalf("data session %d has parent %d, want %d", c.id, got, parent)
	}
	return c
}

// segment builds a segment from p with the given flags, sequence number
// and payload, acknowledging everything the other end sent.
func (p *peer) segment(flags uint8, seq uint32, data string, opts ...packettest.Opt) []byte {
	return packettest.TCP(p.addr, p.other.addr, flags, seq, p.other.next, []byte(data), opts...)
}

// raw sends one segment at sequence number seq and checks its verdict;
// it does not move p.next.
func (p *peer) raw(flags uint8, seq uint32, data string, accept bool, reason string, opts ...packettest.Opt) Verdict {
	p.conn.l.t.Helper()
	return p.conn.l.process(p.addr.Addr(), p.segment(flags, seq, data, opts...), accept, reason)
}

// send sends data in order; it must pass as session traffic.
func (p *peer) send(data string) Verdict {
	p.conn.l.t.Helper()
	return p.sendWant(data, true, ReasonSession)
}

// sendWant sends data in order and checks the verdict; an accepted
// segment moves the sequence on, a dropped one does not (the sender would
// retransmit it).
func (p *peer) sendWant(data string, accept bool, reason string) Verdict {
	p.conn.l.t.Helper()
	v := p.raw(ack|psh, p.next, data, accept, reason)
	if accept {
		p.next += uint32(len(data))
	}
	return v
}

// ack sends a bare acknowledgement.
func (p *peer) ack() {
	p.conn.l.t.Helper()
	p.raw(ack, p.next, "", true, ReasonSession)
}

// close ends the connection with a FIN from each end, p first.
func (p *peer) close() {
	p.conn.l.t.Helper()
	p.raw(ack|fin, p.next, "", true, ReasonSession)
	p.next++
	p.other.raw(ack|fin, p.other.next, "", true, ReasonSession)
	p.other.next++
	p.ack()
}

// ftpSession is an FTP control connection: c is the client, s the server.
type ftpSession struct {
	*tcpConn
	c, s *peer
}

// ftp opens a control connection from client:cport to server:21 (a rule
// with inspect ftp permits it), then greets and logs in.
func (l *lab) ftp(client netip.Addr, cport uint16, server netip.Addr) *ftpSession {
	l.t.Helper()
	conn := l.dial(ap(client, cport), ap(server, 21), ReasonRule)
	f := &ftpSession{tcpConn: conn, c: conn.a, s: conn.b}
	f.s.send("220 (vsFTPd 3.0.3)\r\n")
	f.c.send("USER anonymous\r\n")
	f.s.send("331 Please specify the password.\r\n")
	f.c.send("PASS guest@\r\n")
	f.s.send("230 Login successful.\r\n")
	f.c.send("TYPE I\r\n")
	f.s.send("200 Switching to Binary mode.\r\n")
	return f
}

// pasv negotiates a passive transfer on the server's IPv4 address.
func (f *ftpSession) pasv(port uint16) {
	f.l.t.Helper()
	f.c.send("PASV\r\n")
	f.s.send("227 Entering Passive Mode (" + commas(f.s.addr.Addr()) + "," + strconv.Itoa(int(port>>8)) + "," + strconv.Itoa(int(port&255)) + ").\r\n")
}

// port sends PORT naming the client's own address and port.
func (f *ftpSession) port(port uint16) {
	f.l.t.Helper()
	f.c.send("PORT " + commas(f.c.addr.Addr()) + "," + strconv.Itoa(int(port>>8)) + "," + strconv.Itoa(int(port&255)) + "\r\n")
}

// commas writes an IPv4 address the PORT way: 192,0,2,10.
func commas(a netip.Addr) string {
	return strings.ReplaceAll(a.String(), ".", ",")
}

// kinds returns the events of kind k, as "reason" strings.
func (l *lab) kinds(k EventKind) []string {
	var out []string
	for _, ev := range l.events {
		if ev.Kind == k {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// wantNote checks that an inspector noted why.
func (l *lab) wantNote(why string) {
	l.t.Helper()
	for _, r := range l.kinds(Note) {
		if r == why {
			return
		}
	}
	l.t.Fatalf("no note %q among %q", why, l.kinds(Note))
}

// wantHoles checks the pending expectations, as "What src -> dst".
func (l *lab) wantHoles(want ...string) {
	l.t.Helper()
	var got []string
	for _, x := range l.e.Expectations() {
		got = append(got, x.What+" "+x.Src+" -> "+x.Dst)
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		l.t.Fatalf("pending expectations %q, want %q", got, want)
	}
}
