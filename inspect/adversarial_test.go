package inspect

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/packettest"
)

// The adversarial suite of issue 3: FTP and TFTP conversations built
// packet by packet (ftpconv_test.go), run through the whole engine with
// testRules (clients outside on wan0, servers behind lan0, FTP on 21 and
// TFTP on 69 inspected, default deny both ways). Every packet's verdict
// and reason is checked, and every data connection must be the child of
// its control session.

func TestAdvPassiveSuccess(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("PASV\r\n")
	f.s.send("227 Entering Passive Mode (192,0,2,10,117,49)\r\n")
	l.wantHoles("ftp PASV 198.51.100.2:any -> 192.0.2.10:30001")
	f.c.send("RETR c2900-universalk9-mz.bin\r\n")
	d := l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	l.wantHoles()
	f.s.send("150 Opening BINARY mode data connection.\r\n")
	if v := d.b.send(strings.Repeat("x", 1400)); !v.Offload {
		t.Error("data connection not offloaded")
	}
	d.b.close()
	f.s.send("226 Transfer complete.\r\n")
	f.c.send("QUIT\r\n")
	f.s.send("221 Goodbye.\r\n")
	f.c.close()
}

func TestAdvActiveSuccess(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.port(50001)
	l.wantHoles("ftp PORT 192.0.2.10:20 -> 198.51.100.2:50001")
	f.s.send("200 PORT command successful. Consider using PASV.\r\n")
	f.c.send("STOR upload.bin\r\n")
	d := l.dataConn(ap(server, 20), ap(client, 50001), f.id)
	f.s.send("150 Ok to send data.\r\n")
	d.b.send(strings.Repeat("y", 1000))
	d.b.close()
	f.s.send("226 Transfer complete.\r\n")

	// pyftpdlib's order: the server connects before it confirms the PORT.
	f.port(50002)
	d = l.dataConn(ap(server, 20), ap(client, 50002), f.id)
	f.s.send("200 Active data connection established.\r\n")
	f.c.send("RETR f\r\n")
	f.s.send("125 Data connection already open. Transfer starting.\r\n")
	d.a.send("data")
	d.a.close()
	f.s.send("226 Transfer complete.\r\n")
}

func TestAdvSecondSYNToUsedHole(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	// The hole admitted one connection; a second, from another port, is
	// a new flow the rules refuse.
	l.syn(ap(client, 50001), ap(server, 30001), false, ReasonDenyDefault)

	// Active: once the data connection has closed, a new SYN on the same
	// four-tuple is a new connection, not the old session.
	f.port(50002)
	f.s.send("200 PORT command successful.\r\n")
	d := l.dataConn(ap(server, 20), ap(client, 50002), f.id)
	d.a.send("data")
	d.a.close()
	l.syn(ap(server, 20), ap(client, 50002), false, ReasonDenyDefault)
}

func TestAdvUnnegotiatedHighPort(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)
	// A hole for one port opens no other.
	f.pasv(30001)
	l.syn(ap(client, 50000), ap(server, 30002), false, ReasonDenyDefault)
	l.syn(ap(server, 20), ap(client, 50000), false, ReasonDenyDefault)
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
}

func TestAdvThirdPartyTakesHole(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	l.syn(ap(third, 50000), ap(server, 30001), false, ReasonDenyDefault)
	// The hole is still there for the client.
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)

	// Active: only the server, from port 20, may use a PORT hole.
	f.port(50002)
	f.s.send("200 PORT command successful.\r\n")
	l.syn(ap(lanHost, 20), ap(client, 50002), false, ReasonDenyDefault)
	l.syn(ap(server, 2000), ap(client, 50002), false, ReasonDenyDefault)
	l.dataConn(ap(server, 20), ap(client, 50002), f.id)
}

func TestAdvBounce(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.sendWant("PORT 203,0,113,9,0,80\r\n", false, "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	// The retransmission is refused the same way.
	f.c.sendWant("PORT 203,0,113,9,0,80\r\n", false, "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	f.c.sendWant("EPRT |1|203.0.113.9|80|\r\n", false, "ftp: EPRT names 203.0.113.9, not the client 198.51.100.2")
	l.wantHoles()
	l.syn(ap(server, 20), ap(third, 80), false, ReasonDenyDefault)
	// The session goes on.
	f.pasv(30001)
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
}

func TestAdvPrivilegedPort(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.sendWant("PORT 198,51,100,2,0,22\r\n", false, "ftp: PORT names port 22, below 1024")
	f.c.send("PASV\r\n")
	f.s.sendWant("227 Entering Passive Mode (192,0,2,10,0,25).\r\n", false, "ftp: 227 names port 25, below 1024")
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 25), false, ReasonDenyDefault)
	f.c.send("EPSV\r\n")
	f.s.sendWant("229 Entering Extended Passive Mode (|||21|)\r\n", false, "ftp: 229 names port 21, below 1024")
}

func TestAdvPortRefusedByServer(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.port(50000)
	l.wantHoles("ftp PORT 192.0.2.10:20 -> 198.51.100.2:50000")
	f.s.send("500 Illegal PORT command.\r\n")
	l.wantNote("ftp: PORT refused by the server (500), hole cancelled")
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50000), false, ReasonDenyDefault)
}

func TestAdv227FromClient(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.sendWant("227 Entering Passive Mode (198,51,100,2,117,49)\r\n", false, "ftp: client sent reply 227, not a command")
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 30001), false, ReasonDenyDefault)
}

func TestAdv227InMultiLineReply(t *testing.T) {
	l := newLab(t)
	conn := l.dial(ap(client, 40000), ap(server, 21), ReasonRule)
	c, s := conn.a, conn.b
	s.send("220 ready\r\n")
	c.send("USER anonymous\r\n")
	s.send("331 password\r\n")
	c.send("PASS x\r\n")
	s.send("230-Welcome\r\n227 Entering Passive Mode (192,0,2,10,117,49)\r\n230 Login successful.\r\n")
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)
	// Outside a multi-line reply, a 227 answering no PASV opens nothing.
	s.send("227 Entering Passive Mode (192,0,2,10,117,49)\r\n")
	l.wantNote("ftp: 227 reply without a pending PASV, nothing opened")
	l.wantHoles()
}

func TestAdvPortSplitInThree(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("PO")
	f.c.send("RT 198,51,1")
	l.wantHoles()
	f.c.send("00,2,195,80\r\n")
	f.s.send("200 PORT command successful.\r\n")
	l.dataConn(ap(server, 20), ap(client, 50000), f.id)
}

func TestAdv227OneBytePerSegment(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("PASV\r\n")
	for _, b := range []byte("227 Entering Passive Mode (192,0,2,10,117,49).\r\n") {
		f.s.send(string(b))
	}
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
}

func TestAdvPipelinedNOOPAndPORT(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("NOOP\r\nPORT 198,51,100,2,195,80\r\n")
	f.s.send("200 NOOP ok.\r\n200 PORT command successful.\r\n")
	l.dataConn(ap(server, 20), ap(client, 50000), f.id)
	// A bounce pipelined behind a NOOP drops the whole segment.
	f.c.sendWant("NOOP\r\nPORT 203,0,113,9,0,80\r\n", false, "ftp: PORT names 203.0.113.9")
}

func TestAdvPortMidLine(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	// NAT Slipstreaming: the segment boundary falls inside a line, and
	// the next segment starts with PORT.
	f.c.send("SITE " + strings.Repeat("x", 40))
	f.c.send("PORT 198,51,100,2,195,80\r\n")
	f.s.send("500 Unknown SITE command.\r\n")
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50000), false, ReasonDenyDefault)
}

func TestAdvConflictingRetransmission(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	seq := f.c.next
	f.c.send("NOOP\r\nNOOP\r\nNOOP\r\nHELP x\r\n")
	// The same bytes sent again with other content: TCP lets it through
	// (it is inside the window), the inspector keeps what it saw first.
	f.c.raw(ack|psh, seq, "PORT 198,51,100,2,195,80\r\n", true, ReasonSession)
	f.s.send("200 NOOP ok.\r\n200 NOOP ok.\r\n200 NOOP ok.\r\n214 Help OK.\r\n")
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50000), false, ReasonDenyDefault)
}

func TestAdv227FarOutsideWindow(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("PASV\r\n")
	f.s.raw(ack|psh, f.s.next+1<<30, "227 Entering Passive Mode (192,0,2,10,117,49)\r\n", false, "tcp: segment")
	f.s.raw(ack|psh, f.s.next-1<<30, "227 Entering Passive Mode (192,0,2,10,117,49)\r\n", false, "tcp: segment")
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)
	// The real reply still works.
	f.s.send("227 Entering Passive Mode (192,0,2,10,117,50)\r\n")
	l.dataConn(ap(client, 50000), ap(server, 30002), f.id)
}

func TestAdvUrgentAbortThenNewTransfer(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	f.c.send("RETR c2900-universalk9-mz.bin\r\n")
	d1 := l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	f.s.send("150 Opening BINARY mode data connection.\r\n")
	d1.b.send(strings.Repeat("x", 1400))
	// The old IOS abort: Telnet IP and DM as urgent data, then ABOR.
	f.c.raw(ack|psh|packettest.URG, f.c.next, "\xff\xf4\xff\xf2", true, ReasonSession, packettest.Urgent(4))
	f.c.next += 4
	f.c.send("ABOR\r\n")
	d1.b.raw(rst|ack, d1.b.next, "", true, ReasonSession)
	f.s.send("426 Failure writing network stream.\r\n")
	f.s.send("226 Abort successful.\r\n")
	f.pasv(30002)
	f.c.send("RETR c2900-universalk9-mz.bin\r\n")
	d2 := l.dataConn(ap(client, 50001), ap(server, 30002), f.id)
	f.s.send("150 Opening BINARY mode data connection.\r\n")
	d2.b.send(strings.Repeat("x", 1400))
	d2.b.close()
	f.s.send("226 Transfer complete.\r\n")
}

func TestAdvActiveAbortWithSingleReply(t *testing.T) {
	// An active transfer aborted, answered by one reply instead of two:
	// the next PORTs still open their holes.
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.port(50000)
	f.s.send("200 PORT command successful.\r\n")
	f.c.send("RETR c2900-universalk9-mz.bin\r\n")
	d := l.dataConn(ap(server, 20), ap(client, 50000), f.id)
	f.s.send("150 Opening BINARY mode data connection.\r\n")
	d.a.send(strings.Repeat("x", 1400))
	f.c.raw(ack|psh|packettest.URG, f.c.next, "\xff\xf4\xff\xf2", true, ReasonSession, packettest.Urgent(4))
	f.c.next += 4
	f.c.send("ABOR\r\n")
	d.a.raw(rst|ack, d.a.next, "", true, ReasonSession)
	f.s.send("226 Abort successful.\r\n")
	for i := range uint16(3) {
		f.port(50001 + i)
		f.s.send("200 PORT command successful.\r\n")
		f.c.send("RETR c2900-universalk9-mz.bin\r\n")
		d = l.dataConn(ap(server, 20), ap(client, 50001+i), f.id)
		f.s.send("150 Opening BINARY mode data connection.\r\n")
		d.a.send(strings.Repeat("x", 1400))
		d.a.close()
		f.s.send("226 Transfer complete.\r\n")
	}
}

func TestAdvFortyKilobyteLine(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	line := "PORT 198,51,100,2,195,80" + strings.Repeat(" ", 40<<10) + "\r\n"
	for i := 0; i < len(line); i += 1400 {
		f.c.send(line[i:min(i+1400, len(line))])
	}
	if n := len(l.kinds(Note)); n != 1 {
		t.Fatalf("%d notes, want 1: %q", n, l.kinds(Note))
	}
	l.wantNote("ftp: command line longer than 512 bytes discarded")
	f.s.send("500 Command line too long.\r\n")
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50000), false, ReasonDenyDefault)
	f.pasv(30001)
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
}

func TestAdvIPv6EPSVAndEPRT(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client6, 40000, server6)
	f.c.send("EPSV\r\n")
	f.s.send("229 Entering Extended Passive Mode (|||30001|)\r\n")
	l.wantHoles("ftp EPSV [2001:db8:1::2]:any -> [2001:db8:2::10]:30001")
	l.dataConn(ap(client6, 50000), ap(server6, 30001), f.id)
	f.c.send("EPRT |2|2001:db8:1::2|50001|\r\n")
	l.dataConn(ap(server6, 20), ap(client6, 50001), f.id)
	f.s.send("200 EPRT command successful.\r\n")
	// IPv4 forms on an IPv6 session.
	f.c.sendWant("EPRT |1|198.51.100.2|50002|\r\n", false, "ftp: EPRT |1| names 198.51.100.2 on an IPv6 session")
	f.c.sendWant("PORT 198,51,100,2,195,82\r\n", false, "ftp: PORT on an IPv6 session")
	f.c.sendWant("EPSV 1\r\n", false, "ftp: EPSV 1 asks for another address family")
	l.wantHoles()
}

func TestAdvEPSVOnIPv4(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("EPSV\r\n")
	f.s.send("229 Entering Extended Passive Mode (|||30001|)\r\n")
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	f.c.send("EPRT |1|198.51.100.2|50001|\r\n")
	f.s.send("200 EPRT command successful.\r\n")
	l.dataConn(ap(server, 20), ap(client, 50001), f.id)
	f.c.sendWant("EPRT |2|2001:db8:1::2|50002|\r\n", false, "ftp: EPRT |2| names 2001:db8:1::2 on an IPv4 session")
}

func TestAdvAuthTLS(t *testing.T) {
	l := newLab(t)
	conn := l.dial(ap(client, 40000), ap(server, 21), ReasonRule)
	c, s := conn.a, conn.b
	s.send("220 ready\r\n")
	c.send("AUTH TLS\r\n")
	s.send("234 Proceed with negotiation.\r\n")
	l.wantNote("ftp: AUTH TLS accepted, control channel encrypted, inspection stops")
	// From here on the channel is TLS: whatever it looks like, it opens
	// nothing, and nothing is refused.
	c.send("\x16\x03\x01\x02\x00PASV\r\n")
	s.send("227 Entering Passive Mode (192,0,2,10,117,49)\r\n")
	c.send("PORT 203,0,113,9,0,80\r\n")
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)
}

func TestAdvHoleAfterControlClosed(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	f.c.send("QUIT\r\n")
	f.s.send("221 Goodbye.\r\n")
	f.c.close()
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)

	// A reset ends the session as well.
	f = l.ftp(client, 40001, server)
	f.port(50001)
	f.c.raw(rst|ack, f.c.next, "", true, ReasonSession)
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50001), false, ReasonDenyDefault)
	if n := len(l.kinds(ExpectExpire)); n != 0 {
		t.Fatalf("%d holes expired, want them cancelled", n)
	}
}

func TestAdvHoleAfterTimeout(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	l.advance(59 * time.Second)
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	f.pasv(30002)
	l.advance(61 * time.Second) // ftp-expect is 60 s
	l.syn(ap(client, 50001), ap(server, 30002), false, ReasonDenyDefault)
	if got := l.kinds(ExpectExpire); len(got) != 1 || got[0] != "ftp PASV" {
		t.Fatalf("expired %q, want one ftp PASV", got)
	}
}

func TestAdvBareACKAndSYNACKFromOutside(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	for _, flags := range []uint8{ack, syn | ack, ack | psh, fin | ack, rst} {
		l.process(third, packettest.TCP(ap(third, 4444), ap(server, 21), flags, 1, 1, nil), false, ReasonNoSession)
		// Not even the client may open a hole with anything but a SYN.
		l.process(client, packettest.TCP(ap(client, 50000), ap(server, 30001), flags, 1, 1, nil), false, ReasonNoSession)
	}
	// A segment of the control session from someone else is not the
	// session's either.
	l.process(third, packettest.TCP(ap(third, 40000), ap(server, 21), ack|psh, f.c.next, f.s.next, []byte("PASV\r\n")), false, ReasonNoSession)
	l.wantHoles("ftp PASV 198.51.100.2:any -> 192.0.2.10:30001")
	l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
}

func TestAdvTFTPThirdParties(t *testing.T) {
	rrq := []byte("\x00\x01c2900.bin\x00octet\x00")
	wrq := []byte("\x00\x02config.txt\x00octet\x00")
	data := []byte("\x00\x03\x00\x01hello")
	ackBlock := []byte("\x00\x04\x00\x01")
	for _, tc := range []struct {
		name string
		req  []byte
		what string
	}{{"RRQ", rrq, "tftp RRQ"}, {"WRQ", wrq, "tftp WRQ"}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			c, s69, s := ap(client, 50000), ap(server, 69), ap(server, 3000)
			req := l.process(client, packettest.UDP(c, s69, tc.req), true, ReasonRule)
			l.wantHoles(tc.what + " 192.0.2.10:any -> 198.51.100.2:50000")
			// Nobody but the server may answer: not a neighbour of the
			// server, not a host outside.
			l.process(lanHost, packettest.UDP(ap(lanHost, 3000), c, data), false, ReasonDenyDefault)
			l.process(third, packettest.UDP(ap(third, 3000), c, data), false, ReasonDenyDefault)
			// The server answers from a new port: the transfer's session.
			v := l.process(server, packettest.UDP(s, c, data), true, ReasonRelated)
			if got := l.parent[v.Session]; got != req.Session {
				t.Fatalf("transfer session %d has parent %d, want %d", v.Session, got, req.Session)
			}
			l.process(client, packettest.UDP(c, s, ackBlock), true, ReasonSession)
			l.wantHoles()
			// The hole is used: the server's other ports, and third
			// parties at the transfer's ports, get nothing.
			l.process(server, packettest.UDP(ap(server, 3001), c, data), false, ReasonDenyDefault)
			l.process(third, packettest.UDP(ap(third, 50000), s, ackBlock), false, ReasonDenyDefault)
			l.process(lanHost, packettest.UDP(ap(lanHost, 3000), c, data), false, ReasonDenyDefault)
			l.process(server, packettest.UDP(s, c, data), true, ReasonSession)
		})
	}
	// A malformed request opens nothing and is dropped.
	l := newLab(t)
	l.process(client, packettest.UDP(ap(client, 50000), ap(server, 69), []byte("\x00\x03\x00\x01data")), false, "tftp: DATA is not a request")
	l.wantHoles()
}

// TestAdvLongTransferKeepsControl: a download that outlasts the control
// connection's idle timeout (an image over a slow link) keeps the silent
// control session alive, so the server's final reply still passes.
func TestAdvLongTransferKeepsControl(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	f.c.send("RETR c8000v-universalk9.17.09.04a.SPA.bin\r\n")
	d := l.dataConn(ap(client, 50000), ap(server, 30001), f.id)
	f.s.send("150 Opening BINARY mode data connection.\r\n")
	for range 61 { // 61 minutes of data against a 1-hour idle timeout
		l.advance(time.Minute)
		d.b.send("xxxxxxxx")
		d.a.ack()
	}
	d.b.close()
	f.s.send("226 Transfer complete.\r\n")
}

// TestAdvBlindResetInWindow: a reset inside the window but not at the
// sender's next sequence number (a blind attacker's guess) passes for the
// endpoint to answer with a challenge ACK, and ends neither the session
// nor its pending hole.
func TestAdvBlindResetInWindow(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.pasv(30001)
	f.c.raw(rst|ack, f.c.next+1000, "", true, ReasonSession)
	l.wantHoles("ftp PASV 198.51.100.2:any -> 192.0.2.10:30001")
	l.advance(11 * time.Second)
	f.c.send("NOOP\r\n")
	// The real reset ends both.
	f.c.raw(rst|ack, f.c.next, "", true, ReasonSession)
	l.wantHoles()
}

// TestAdvReconnectFromSamePort: a router reloads and reconnects from the
// same source port while the firewall still holds its old connection. The
// SYN passes; the server's challenge ACK draws the client's reset, which
// ends the old session, and the retried SYN opens a new one.
func TestAdvReconnectFromSamePort(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 11000, server)
	l.advance(time.Minute)
	c, s := ap(client, 11000), ap(server, 21)
	l.process(client, packettest.TCP(c, s, syn, 777777, 0, nil), true, ReasonSession)
	f.s.raw(ack, f.s.next, "", true, ReasonSession) // the challenge ACK
	l.process(client, packettest.TCP(c, s, rst, f.c.next, 0, nil), true, ReasonSession)
	l.advance(time.Second)
	if v := l.process(client, packettest.TCP(c, s, syn, 777777, 0, nil), true, ReasonRule); v.Session == f.id {
		t.Fatal("the retried SYN kept the old session")
	}
}

// TestAdvPortOnClosingSegment: a PORT carried on the segment that ends
// the control session opens no hole.
func TestAdvPortOnClosingSegment(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.raw(ack|rst|psh, f.c.next, "PORT 198,51,100,2,195,80\r\n", true, ReasonSession)
	l.wantHoles()
	l.syn(ap(server, 20), ap(client, 50000), false, "")
}

// TestAdvDropReasonsBounded: reasons that quote what a peer sent are
// counted under their class, so no peer can grow the drop counters (and
// the metrics' label set) without bound.
func TestAdvDropReasonsBounded(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	for i := range 2000 {
		cmd := "PORT 10," + strconv.Itoa(i>>8) + "," + strconv.Itoa(i&255) + ",1,200,1\r\n"
		f.c.sendWant(cmd, false, "ftp: PORT names 10.")
	}
	c := ap(client, 5555)
	for op := 7; op < 2007; op++ {
		l.process(client, packettest.UDP(c, ap(server, 69), []byte{byte(op >> 8), byte(op), 'x', 0}), false, "tftp: unknown opcode")
	}
	st := l.e.Stats()
	if len(st.Reasons) > 10 || st.Reasons["ftp: PORT names another host than the client"] != 2000 ||
		st.Reasons["tftp: unknown opcode"] != 2000 {
		t.Errorf("drop reasons %v: want the PORTs and the opcodes counted once each by class", st.Reasons)
	}
}

// TestAdvBlindSYNAndResetLeaveInspector: segments that pass tracking
// unchanged (a spoofed SYN on the established control session, with any
// sequence number; an in-window reset carrying text) are not read by the
// FTP inspector, so they neither throw it out of step nor open holes.
func TestAdvBlindSYNAndResetLeaveInspector(t *testing.T) {
	for _, off := range []uint32{100000, -100000 & 0xffffffff} {
		l := newLab(t)
		conn := l.dial(ap(client, 40000), ap(server, 21), ReasonRule)
		f := &ftpSession{tcpConn: conn, c: conn.a, s: conn.b}
		f.s.send("220 (vsFTPd 3.0.3)\r\n")
		l.process(client, packettest.TCP(f.c.addr, f.s.addr, syn, f.c.next+off, 0, nil), true, ReasonSession)
		f.c.raw(rst|ack|psh, f.c.next+1000, "PORT 198,51,100,2,195,80\r\n", true, ReasonSession)
		l.wantHoles()
		f.c.send("USER anonymous\r\n")
		f.s.send("331 Please specify the password.\r\n")
		f.c.send("PASS guest@\r\n")
		f.s.send("230 Login successful.\r\n")
		f.port(50001)
		l.wantHoles("ftp PORT 192.0.2.10:20 -> 198.51.100.2:50001")
	}
}

// outboundFTPRules inspect FTP for the hosts behind lan0 going out, on
// port 2121 as well as 21 (testRules do the same for the servers).
const outboundFTPRules = `
interface wan wan0 net 198.51.100.0/24 2001:db8:1::/64
interface lan lan0 net 192.0.2.0/24 2001:db8:2::/64

in on wan default deny log {
}
in on lan default deny log {
    permit tcp from any to any port { 21 2121 } inspect ftp
}
`

// TestAdvSlipstreamThroughHTTPBody: NAT Slipstreaming against a host
// behind inspectd. A hostile web page makes the browser on 192.0.2.99
// POST to the attacker's 203.0.113.9:2121 (browsers block port 21, not
// 2121); the POST body carries "\r\nPORT 192,0,2,99,13,61\r\n", a line
// of its own in the reassembled stream. An HTTP request is not an FTP
// control channel: the attacker's port 20 must not reach the browser
// host's RDP port (3389), which the rules never allowed.
func TestAdvSlipstreamThroughHTTPBody(t *testing.T) {
	l := &lab{t: t, e: New(mustRules(t, outboundFTPRules), Options{FastPath: true}), now: start, parent: map[uint64]uint64{}}
	browser, attacker := lanHost, third
	conn := l.dial(ap(browser, 51000), ap(attacker, 2121), ReasonRule)
	conn.a.send("POST /x HTTP/1.1\r\n" +
		"Host: 203.0.113.9:2121\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: 25\r\n" +
		"\r\n" +
		"PORT 192,0,2,99,13,61\r\n")
	v := l.e.Process(packettest.TCP(ap(attacker, 20), ap(browser, 3389), syn, 9000, 0, nil), Meta{Time: l.now, In: "wan0"})
	if v.Accept {
		t.Fatalf("the attacker's SYN to the browser host's port 3389 was accepted (%q): "+
			"a PORT line in an HTTP body opened a hole", v.Reason)
	}
}

// TestAdvHoleAfterResetCrossing: the client resets its control
// connection just after PASV (it gave up, or reloaded) while the
// server's 227 is on its way. The reset ends the session and cancels its
// holes (TestAdvHoleAfterControlClosed); the 227 that arrives next, still
// inside the window of the closed session, must not open a passive hole
// that would outlive the control connection for as long as the closed
// session stays in the table (tcp-finwait).
func TestAdvHoleAfterResetCrossing(t *testing.T) {
	l := newLab(t)
	f := l.ftp(client, 40000, server)
	f.c.send("PASV\r\n")
	f.c.raw(rst|ack, f.c.next, "", true, ReasonSession)
	l.wantHoles()
	l.e.Process(f.s.segment(ack|psh, f.s.next, "227 Entering Passive Mode (192,0,2,10,117,49).\r\n"), Meta{Time: l.now, In: "lan0"})
	l.wantHoles()
	l.syn(ap(client, 50000), ap(server, 30001), false, ReasonDenyDefault)
}
