package ftp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

var (
	client4 = netip.MustParseAddr("198.51.100.2")
	server4 = netip.MustParseAddr("192.0.2.10")
	other4  = netip.MustParseAddr("203.0.113.9")
	client6 = netip.MustParseAddr("2001:db8:1::2")
	server6 = netip.MustParseAddr("2001:db8:2::10")
)

const (
	cli = conntrack.Original
	srv = conntrack.Reply
)

// conv drives one Inspector through a control session whose handshake it
// has seen: ISN 1000 for the client, 5000 for the server.
type conv struct {
	t    *testing.T
	in   *Inspector
	sess *conntrack.Session
	next [2]uint32 // next sequence number each side sends
	now  time.Time
}

func newConv(t *testing.T, cfg Config, client, server netip.Addr) *conv {
	t.Helper()
	c := &conv{
		t:  t,
		in: New(cfg),
		sess: &conntrack.Session{ID: 1, Key: conntrack.Key{
			Src: client, Dst: server, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP}},
		now: time.Unix(1700000000, 0),
	}
	c.sess.Inspector = c.in
	c.packet(cli, 1000, decode.TCPSyn, "")
	c.packet(srv, 5000, decode.TCPSyn|decode.TCPAck, "")
	c.next = [2]uint32{1001, 5001}
	return c
}

// packet hands one segment to the inspector.
func (c *conv) packet(d conntrack.Dir, seq uint32, flags uint8, data string) conntrack.Result {
	c.t.Helper()
	k := c.sess.Key
	if d == srv {
		k = k.Reverse()
	}
	p := &decode.Packet{Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort,
		Proto: decode.ProtoTCP, Seq: seq, Flags: flags | decode.TCPAck, Payload: []byte(data)}
	r := c.in.Inspect(&conntrack.Context{Session: c.sess, Dir: d, Now: c.now}, p)
	if !r.NoOffload {
		c.t.Fatalf("result %+v does not set NoOffload", r)
	}
	if r.Drop && r.HasExpect {
		c.t.Fatalf("result %+v drops and expects", r)
	}
	return r
}

// send sends data in order; a dropped segment does not advance the
// sequence (the sender would retransmit it).
func (c *conv) send(d conntrack.Dir, data string) conntrack.Result {
	c.t.Helper()
	r := c.packet(d, c.next[d], decode.TCPPsh, data)
	if !r.Drop {
		c.next[d] += uint32(len(data))
	}
	return r
}

// ok sends data and fails unless it passes without expectation or note.
func (c *conv) ok(d conntrack.Dir, data string) {
	c.t.Helper()
	if r := c.send(d, data); r.Drop || r.HasExpect || r.Reason != "" {
		c.t.Fatalf("%s %q: got %+v, want a plain pass", d, data, r)
	}
}

// login runs the greeting and a login.
func (c *conv) login() {
	c.t.Helper()
	c.ok(srv, "220 (vsFTPd 3.0.3)\r\n")
	c.ok(cli, "USER anonymous\r\n")
	c.ok(srv, "331 Please specify the password.\r\n")
	c.ok(cli, "PASS guest@\r\n")
	c.ok(srv, "230 Login successful.\r\n")
	c.ok(cli, "TYPE I\r\n")
	c.ok(srv, "200 Switching to Binary mode.\r\n")
}

func wantExpect(t *testing.T, r conntrack.Result, want conntrack.Expect) {
	t.Helper()
	if r.Drop || !r.HasExpect {
		t.Fatalf("got %+v, want expectation %+v", r, want)
	}
	if want.Timeout == 0 {
		want.Timeout = DefaultExpectTimeout
	}
	want.Proto, want.Replace = decode.ProtoTCP, true
	if r.Expect != want {
		t.Fatalf("expectation %+v, want %+v", r.Expect, want)
	}
}

func wantDrop(t *testing.T, r conntrack.Result, reason string) {
	t.Helper()
	if !r.Drop || r.HasExpect || r.Reason != reason {
		t.Fatalf("got %+v, want drop %q", r, reason)
	}
}

func wantNothing(t *testing.T, r conntrack.Result) {
	t.Helper()
	if r.Drop || r.HasExpect {
		t.Fatalf("got %+v, want pass without expectation", r)
	}
}

func wantNote(t *testing.T, r conntrack.Result, reason string) {
	t.Helper()
	if r.Drop || r.HasExpect || r.Reason != reason {
		t.Fatalf("got %+v, want pass with note %q", r, reason)
	}
}

func pasv(c *conv, port uint16) {
	c.t.Helper()
	c.ok(cli, "PASV\r\n")
	wantExpect(c.t, c.send(srv, "227 Entering Passive Mode (192,0,2,10,"+itoa(int(port>>8))+","+itoa(int(port&255))+").\r\n"),
		conntrack.Expect{Src: client4, Dst: server4, DstPort: port, What: "ftp PASV"})
}

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	s := ""
	for v > 0 {
		s = string(rune('0'+v%10)) + s
		v /= 10
	}
	return s
}

func TestPassive(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	pasv(c, 0x8a3c)
	c.ok(cli, "RETR image.bin\r\n")
	c.ok(srv, "150 Opening BINARY mode data connection.\r\n")
	c.ok(srv, "226 Transfer complete.\r\n")
}

func TestPassiveWithoutParentheses(t *testing.T) {
	for _, text := range []string{
		"227 Entering Passive Mode 192,0,2,10,19,137\r\n",
		"227 =192,0,2,10,19,137\r\n",
		"227 Entering Passive Mode v2 (192,0,2,10,19,137)\r\n",
	} {
		c := newConv(t, Config{}, client4, server4)
		c.login()
		c.ok(cli, "PASV\r\n")
		wantExpect(t, c.send(srv, text), conntrack.Expect{Src: client4, Dst: server4, DstPort: 19<<8 | 137, What: "ftp PASV"})
	}
}

func TestActive(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	// The hole opens with the command: the server may connect before it
	// confirms (pyftpdlib does), and only the server can use it.
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,156,64\r\n"),
		conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 156<<8 | 64, What: "ftp PORT"})
	c.ok(srv, "200 PORT command successful.\r\n")

	// A server on port 2121 connects from port 20 too (vsftpd's
	// ftp_data_port); with
	// ActiveSourcePortAny, from any port.
	for _, anyPort := range []bool{false, true} {
		c = newConv(t, Config{ActiveSourcePortAny: anyPort}, client4, server4)
		c.sess.Key.DstPort = 2121
		c.login()
		want := conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"}
		if anyPort {
			want.SrcPort = 0
		}
		wantExpect(t, c.send(cli, "port 198,51,100,2,4,1\r\n"), want) // commands are case-insensitive
		c.ok(srv, "200 OK\r\n")
	}
}

func TestBounce(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantDrop(t, c.send(cli, "PORT 203,0,113,9,0,80\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	// The retransmission is judged the same way.
	wantDrop(t, c.send(cli, "PORT 203,0,113,9,0,80\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	// Nothing of it was queued: the next PASV works.
	pasv(c, 5000)

	c = newConv(t, Config{}, client6, server6)
	c.login()
	wantDrop(t, c.send(cli, "EPRT |2|2001:db8:9::9|4000|\r\n"), "ftp: EPRT names 2001:db8:9::9, not the client 2001:db8:1::2")
}

func TestPrivilegedPort(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantDrop(t, c.send(cli, "PORT 198,51,100,2,0,22\r\n"), "ftp: PORT names port 22, below 1024")
	c.ok(cli, "PASV\r\n")
	wantDrop(t, c.send(srv, "227 Entering Passive Mode (192,0,2,10,0,25).\r\n"), "ftp: 227 names port 25, below 1024")
	// The drop kept PASV pending: a retransmission is refused again.
	wantDrop(t, c.send(srv, "227 Entering Passive Mode (192,0,2,10,0,25).\r\n"), "ftp: 227 names port 25, below 1024")

	// A configured lower bound.
	c = newConv(t, Config{MinDataPort: 1}, client4, server4)
	c.login()
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,0,22\r\n"), conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 22, What: "ftp PORT"})
}

func TestPASVForeignAddress(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "PASV\r\n")
	wantDrop(t, c.send(srv, "227 Entering Passive Mode (203,0,113,9,4,1).\r\n"), "ftp: 227 names 203.0.113.9, not the server 192.0.2.10")
}

// wantCancel checks that r passes, cancels the session's holes and says
// why.
func wantCancel(t *testing.T, r conntrack.Result, reason string) {
	t.Helper()
	if r.Drop || r.HasExpect || !r.Cancel || r.Reason != reason {
		t.Fatalf("got %+v, want cancel with note %q", r, reason)
	}
}

func TestPortRefusedByServer(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	port := conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"}
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,1\r\n"), port)
	wantCancel(t, c.send(srv, "500 Illegal PORT command.\r\n"), "ftp: PORT refused by the server (500), hole cancelled")
	// A later 200 answers a later command, not the refused PORT.
	c.ok(cli, "NOOP\r\n")
	c.ok(srv, "200 NOOP ok.\r\n")

	// Any 4xx or 5xx refuses; EPRT likewise.
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,1\r\n"), port)
	wantCancel(t, c.send(srv, "421 Service not available.\r\n"), "ftp: PORT refused by the server (421), hole cancelled")
	port.What = "ftp EPRT"
	wantExpect(t, c.send(cli, "EPRT |1|198.51.100.2|1025|\r\n"), port)
	wantCancel(t, c.send(srv, "522 Network protocol not supported, use (2)\r\n"), "ftp: EPRT refused by the server (522), hole cancelled")

	// A refusal of a PORT whose hole a later command replaced cancels
	// nothing: the later hole stays.
	port.What = "ftp PORT"
	port.DstPort = 1026
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,1\r\nPORT 198,51,100,2,4,2\r\n"), port)
	wantNothing(t, c.send(srv, "500 Illegal PORT command.\r\n"))
	c.ok(srv, "200 PORT command successful.\r\n")

	// A refused PORT and a PASV answered in one segment: the engine
	// cancels first, then adds the passive hole.
	port.DstPort = 1027
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,3\r\nPASV\r\n"), port)
	r := c.send(srv, "500 Illegal PORT command.\r\n227 (192,0,2,10,4,4)\r\n")
	if !r.Cancel || r.Reason != "ftp: PORT refused by the server (500), hole cancelled" {
		t.Fatalf("got %+v, want cancel", r)
	}
	r.Cancel, r.Reason = false, ""
	wantExpect(t, r, conntrack.Expect{Src: client4, Dst: server4, DstPort: 1028, What: "ftp PASV"})

	// A refusal after a passive hole replaced the PORT's cancels nothing.
	port.DstPort = 1029
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,5\r\nPASV\r\n"), port)
	wantExpect(t, c.send(srv, "200 PORT ok.\r\n227 (192,0,2,10,4,6)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1030, What: "ftp PASV"})
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,7\r\nPASV\r\n"), conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1031, What: "ftp PORT"})
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,8)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1032, What: "ftp PASV"})
	wantNothing(t, c.send(srv, "500 late refusal\r\n"))
}

func TestReplyFromClient(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantDrop(t, c.send(cli, "227 Entering Passive Mode (198,51,100,2,4,1)\r\n"), "ftp: client sent reply 227, not a command")
	// A server never sends commands: PORT from it opens nothing.
	c.ok(srv, "PORT 192,0,2,10,4,1\r\n")
	c.ok(srv, "200 PORT command successful.\r\n")
}

func TestUnsolicited227InMultiLineReply(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.ok(srv, "220 hello\r\n")
	c.ok(cli, "USER anonymous\r\n")
	c.ok(srv, "331 Please specify the password.\r\n")
	c.ok(cli, "PASS x\r\n")
	c.ok(srv, "230-Welcome\r\n227 Entering Passive Mode (192,0,2,10,4,1)\r\n229 Entering Extended Passive Mode (|||1025|)\r\n230 Logged in\r\n")
	// Outside a multi-line reply, a 227 that answers no PASV opens nothing.
	wantNote(t, c.send(srv, "227 Entering Passive Mode (192,0,2,10,4,1)\r\n"), "ftp: 227 reply without a pending PASV, nothing opened")
}

func TestMultiLine227(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "PASV\r\n")
	// The final line of a multi-line reply carries the reply.
	wantExpect(t, c.send(srv, "227-Entering Passive Mode\r\n227 =192,0,2,10,4,1\r\n"),
		conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
}

func TestPortSplitInThree(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "PO")
	c.ok(cli, "RT 198,51,1")
	wantExpect(t, c.send(cli, "00,2,4,1\r\n"), conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"})
	c.ok(srv, "200 OK\r\n")
}

func Test227OneBytePerSegment(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "PASV\r\n")
	reply := "227 Entering Passive Mode (192,0,2,10,4,1).\r\n"
	for i := 0; i < len(reply)-1; i++ {
		c.ok(srv, reply[i:i+1])
	}
	wantExpect(t, c.send(srv, "\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
}

func TestPipelined(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantExpect(t, c.send(cli, "NOOP\r\nPORT 198,51,100,2,4,1\r\n"),
		conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"})
	// The 500 answering NOOP does not refuse the PORT ...
	c.ok(srv, "500 NOOP not understood.\r\n")
	// ... which the server then refuses.
	wantCancel(t, c.send(srv, "500 no.\r\n"), "ftp: PORT refused by the server (500), hole cancelled")

	wantExpect(t, c.send(cli, "NOOP\r\nPORT 198,51,100,2,4,2\r\n"),
		conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1026, What: "ftp PORT"})
	c.ok(srv, "200 NOOP ok.\r\n200 PORT ok.\r\n")

	// A bounce pipelined behind a harmless command drops the whole
	// segment, and leaves no trace: the NOOP was not queued.
	wantDrop(t, c.send(cli, "NOOP\r\nPORT 203,0,113,9,4,1\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	c.ok(cli, "PASV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,3)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1027, What: "ftp PASV"})
}

func TestPortMidLine(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	// NAT Slipstreaming: a segment starting with PORT in the middle of a
	// line (here a long HTTP-ish line) is no command.
	c.ok(cli, "SITE "+strings.Repeat("x", 40))
	c.ok(cli, "PORT 198,51,100,2,4,1\r\n")
	c.ok(srv, "200 SITE ok\r\n")
	// A PORT after spaces is not at the start of the line either.
	c.ok(cli, " PORT 198,51,100,2,4,1\r\n")
	c.ok(srv, "200 ok\r\n")
}

func TestConflictingRetransmission(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	seq := c.next[cli]
	c.ok(cli, "NOOP\r\n")
	// The same bytes again, with different content: first seen wins.
	wantNothing(t, c.packet(cli, seq, decode.TCPPsh, "PORT 1"))
	// A longer retransmission: only its new bytes count, and they start
	// a new line after "NOOP\r\n".
	wantNothing(t, c.packet(cli, seq, decode.TCPPsh, "PORT 198,51,100,2,4,1\r\n"))
	c.next[cli] = seq + uint32(len("PORT 198,51,100,2,4,1\r\n"))
	c.ok(srv, "200 NOOP ok.\r\n")
	c.ok(srv, "500 Unknown command.\r\n")
	// A retransmission overlapping a partial line: the known prefix is
	// skipped, the rest completes the line.
	seq = c.next[cli]
	c.ok(cli, "PASV")
	c.ok(cli, "")
	wantNothing(t, c.packet(cli, seq, decode.TCPPsh, "XXXX\r\n"))
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
}

func TestUrgentAbortThenNewTransfer(t *testing.T) {
	abor := "\xff\xf4\xff\xf2ABOR\r\n"
	// Every way of splitting the Synch + ABOR into up to three segments.
	for i := 0; i <= len(abor); i++ {
		for j := i; j <= len(abor); j++ {
			c := newConv(t, Config{}, client4, server4)
			c.login()
			pasv(c, 5000)
			c.ok(cli, "RETR c2900-image.bin\r\n")
			c.ok(srv, "150 Opening BINARY mode data connection.\r\n")
			for _, part := range []string{abor[:i], abor[i:j], abor[j:]} {
				if part == "" {
					continue
				}
				// IAC IP and IAC DM go as TCP urgent data.
				r := c.packet(cli, c.next[cli], decode.TCPPsh|decode.TCPUrg, part)
				wantNothing(t, r)
				c.next[cli] += uint32(len(part))
			}
			c.ok(srv, "426 Failure writing network stream.\r\n")
			c.ok(srv, "226 Abort successful.\r\n")
			pasv(c, 5001)
			c.ok(cli, "RETR c2900-image.bin\r\n")
		}
	}
}

func TestAbortWithSingleReply(t *testing.T) {
	// Some servers answer ABOR during a transfer with one reply, not
	// two: the next 227 still answers the PASV.
	c := newConv(t, Config{}, client4, server4)
	c.login()
	pasv(c, 5000)
	c.ok(cli, "RETR f\r\n")
	c.ok(srv, "150 Opening.\r\n")
	c.ok(cli, "\xff\xf4\xff\xf2ABOR\r\n")
	c.ok(srv, "226 Abort successful.\r\n")
	pasv(c, 5001)
}

func TestAbortWithSingleReplyActive(t *testing.T) {
	// The same in active mode: the 200 to the next PORT answers the ABOR
	// in the inspector's books, but the PORT's hole opened with the
	// command, so every transfer after the abort still gets its hole.
	c := newConv(t, Config{}, client4, server4)
	c.login()
	active := func(port uint16) {
		t.Helper()
		wantExpect(t, c.send(cli, "PORT 198,51,100,2,"+itoa(int(port>>8))+","+itoa(int(port&255))+"\r\n"),
			conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: port, What: "ftp PORT"})
		c.ok(srv, "200 PORT command successful.\r\n")
	}
	active(5000)
	c.ok(cli, "RETR f\r\n")
	c.ok(srv, "150 Opening.\r\n")
	c.ok(cli, "\xff\xf4\xff\xf2ABOR\r\n")
	c.ok(srv, "226 Abort successful.\r\n")
	for i := range 3 {
		active(uint16(5001 + i))
		c.ok(cli, "RETR f\r\n")
		c.ok(srv, "150 Opening.\r\n")
		c.ok(srv, "226 Transfer complete.\r\n")
	}
	// The books are one reply behind: a refusal of the RETR after a PORT
	// is taken for the PORT's and cancels its hole. That fails closed, and
	// costs nothing here: the refused RETR opens no data connection.
	active(5010)
	c.ok(cli, "RETR missing\r\n")
	wantCancel(t, c.send(srv, "550 No such file.\r\n"), "ftp: PORT refused by the server (550), hole cancelled")
	active(5011)
}

func TestRefusalInDroppedSegment(t *testing.T) {
	// A segment dropped for a later line leaves no cancel behind: its
	// retransmission is judged the same way.
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,1\r\nPASV\r\n"),
		conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"})
	for range 2 {
		wantDrop(t, c.send(srv, "500 no\r\n227 (203,0,113,9,4,1)\r\n"), "ftp: 227 names 203.0.113.9, not the server 192.0.2.10")
	}
	// A valid PORT pipelined before a bounce opens nothing either.
	wantDrop(t, c.send(cli, "PORT 198,51,100,2,4,2\r\nPORT 203,0,113,9,0,80\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
}

func TestCloseCancels(t *testing.T) {
	// The second FIN ends the control session: its pending hole goes.
	c := newConv(t, Config{}, client4, server4)
	c.login()
	pasv(c, 5000)
	c.ok(cli, "QUIT\r\n")
	if r := c.packet(cli, c.next[cli], decode.TCPFin, ""); r.Cancel || r.Drop {
		t.Fatalf("client FIN: %+v, want a plain pass", r)
	}
	c.next[cli]++
	r := c.packet(srv, c.next[srv], decode.TCPFin|decode.TCPPsh, "221 Goodbye.\r\n")
	if !r.Cancel || r.Drop || r.HasExpect || r.Reason != "" {
		t.Fatalf("server FIN: %+v, want cancel", r)
	}

	// A reset that ends the session (the tracker closed it) cancels at
	// once, from either side; one the tracker let pass without ending
	// the session (in the window, not at the next sequence number: the
	// receiver answers with a challenge ACK) cancels nothing.
	for _, d := range []conntrack.Dir{cli, srv} {
		c = newConv(t, Config{}, client4, server4)
		c.login()
		pasv(c, 5000)
		c.sess.State = conntrack.StateEstablished
		if r := c.packet(d, c.next[d]+1000, decode.TCPRst, ""); r.Cancel || r.Drop {
			t.Fatalf("%s RST that did not end the session: %+v, want a plain pass", d, r)
		}
		c.sess.State = conntrack.StateClosed
		if r := c.packet(d, c.next[d], decode.TCPRst, ""); !r.Cancel || r.Drop {
			t.Fatalf("%s RST: %+v, want cancel", d, r)
		}
	}
	// A command on the segment that ends the session opens nothing.
	c = newConv(t, Config{}, client4, server4)
	c.login()
	c.sess.State = conntrack.StateClosed
	if r := c.packet(cli, c.next[cli], decode.TCPRst|decode.TCPPsh, "PORT 198,51,100,2,195,80\r\n"); !r.Cancel || r.HasExpect {
		t.Fatalf("PORT on the closing RST: %+v, want cancel and no hole", r)
	}

	// A FIN on a dropped segment counts for nothing: the session is not
	// over until the retransmission passes.
	c = newConv(t, Config{}, client4, server4)
	c.login()
	if r := c.packet(srv, c.next[srv], decode.TCPFin, ""); r.Cancel {
		t.Fatalf("server FIN: %+v", r)
	}
	c.next[srv]++
	wantDrop(t, c.packet(cli, c.next[cli], decode.TCPFin|decode.TCPPsh, "PORT 203,0,113,9,0,80\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
	if c.in.st.dir[cli].fin {
		t.Fatal("dropped FIN recorded")
	}
}

func TestTelnet(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	// Option negotiation and subnegotiation vanish; IAC IAC is 0xFF.
	c.ok(cli, "P\xff\xfb\x01A\xff\xfa\x18\x01\xff\xff\xff\xf0SV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
	c.ok(cli, "P\xff\xffSV\r\n") // "P\xffSV": not PASV
	wantNote(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), "ftp: 227 reply without a pending PASV, nothing opened")
}

func TestLongLine(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	long := "PORT 198,51,100,2,4,1" + strings.Repeat(" ", 40<<10) + "\r\n"
	var notes int
	for i := 0; i < len(long); i += 1400 {
		r := c.send(cli, long[i:min(i+1400, len(long))])
		wantNothing(t, r)
		if r.Reason != "" {
			notes++
			if r.Reason != "ftp: command line longer than 512 bytes discarded" {
				t.Fatalf("note %q", r.Reason)
			}
		}
		if n := c.in.st.dir[cli].n; n > DefaultMaxLine {
			t.Fatalf("%d bytes buffered", n)
		}
	}
	if notes != 1 {
		t.Fatalf("%d notes, want 1", notes)
	}
	// The server's answer to the long line does not confirm anything.
	wantNothing(t, c.send(srv, "200 ok\r\n"))
	// Over-long replies open nothing either.
	c.ok(cli, "PASV\r\n")
	wantNote(t, c.send(srv, "227 ("+strings.Repeat("1", 600)+")\r\n"), "ftp: reply line longer than 512 bytes discarded")
	pasv(c, 1025)
}

func TestNUL(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantDrop(t, c.send(cli, "PORT 198,51,100,2,4,1\x00\r\n"), "ftp: NUL byte in a command line")
	c.ok(cli, "PASV\r\n")
	wantNote(t, c.send(srv, "227 (192,0,2,10,4,1)\x00\r\n"), "ftp: NUL byte in a reply line, ignored")
}

func TestIPv6(t *testing.T) {
	c := newConv(t, Config{}, client6, server6)
	c.login()
	c.ok(cli, "EPSV\r\n")
	wantExpect(t, c.send(srv, "229 Entering Extended Passive Mode (|||50000|)\r\n"),
		conntrack.Expect{Src: client6, Dst: server6, DstPort: 50000, What: "ftp EPSV"})
	wantExpect(t, c.send(cli, "EPRT |2|2001:db8:1::2|50001|\r\n"),
		conntrack.Expect{Src: server6, SrcPort: 20, Dst: client6, DstPort: 50001, What: "ftp EPRT"})
	c.ok(srv, "200 EPRT command successful.\r\n")
	c.ok(cli, "EPSV 2\r\n")
	wantExpect(t, c.send(srv, "229 (!!!50002!)\r\n"),
		conntrack.Expect{Src: client6, Dst: server6, DstPort: 50002, What: "ftp EPSV"})

	// Wrong family.
	wantDrop(t, c.send(cli, "EPRT |1|198.51.100.2|4000|\r\n"), "ftp: EPRT |1| names 198.51.100.2 on an IPv6 session")
	wantDrop(t, c.send(cli, "PORT 198,51,100,2,4,1\r\n"), "ftp: PORT on an IPv6 session")
	wantDrop(t, c.send(cli, "EPSV 1\r\n"), "ftp: EPSV 1 asks for another address family than the session's")
	c.ok(cli, "PASV\r\n")
	wantDrop(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), "ftp: 227 names IPv4 address 192.0.2.10 on an IPv6 session")
}

func TestEPSVAndEPRTOnIPv4(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "EPSV\r\n")
	wantExpect(t, c.send(srv, "229 Entering Extended Passive Mode (|||1025|)\r\n"),
		conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp EPSV"})
	wantExpect(t, c.send(cli, "EPRT |1|198.51.100.2|1026|\r\n"),
		conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1026, What: "ftp EPRT"})
	c.ok(srv, "200 OK\r\n")
	wantDrop(t, c.send(cli, "EPRT |2|2001:db8:1::2|1026|\r\n"), "ftp: EPRT |2| names 2001:db8:1::2 on an IPv4 session")
	wantDrop(t, c.send(cli, "EPSV 2\r\n"), "ftp: EPSV 2 asks for another address family than the session's")
	c.ok(cli, "EPSV\r\n")
	wantDrop(t, c.send(srv, "229 (|||21|)\r\n"), "ftp: 229 names port 21, below 1024")
}

func TestEPSVAll(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "EPSV ALL\r\n")
	c.ok(srv, "200 EPSV ALL ok.\r\n")
	for _, cmd := range []string{"PASV\r\n", "PORT 198,51,100,2,4,1\r\n", "EPRT |1|198.51.100.2|1025|\r\n"} {
		wantNote(t, c.send(cli, cmd), noteEPSVAll)
		wantNothing(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"))
	}
	c.ok(cli, "EPSV\r\n")
	wantExpect(t, c.send(srv, "229 (|||1025|)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp EPSV"})
	// REIN resets the session, EPSV ALL included.
	c.ok(cli, "REIN\r\n")
	c.ok(srv, "220 Service ready for new user.\r\n")
	pasv(c, 1026)
}

func TestEPSVAllRefused(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "EPSV ALL\r\n")
	c.ok(srv, "500 not understood\r\n")
	pasv(c, 1026)
}

func TestAuthTLS(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.ok(srv, "220 hello\r\n")
	c.ok(cli, "AUTH TLS\r\n")
	wantNote(t, c.send(srv, "234 Proceed with negotiation.\r\n"), reasonTLS)
	// From now on the stream is TLS: nothing is parsed or opened, and
	// nothing is said again.
	c.ok(cli, "\x16\x03\x01\x02\x00PASV\r\n")
	c.ok(srv, "227 (192,0,2,10,4,1)\r\n")
	c.ok(cli, "PORT 203,0,113,9,0,80\r\n")

	// AUTH refused: inspection goes on.
	c = newConv(t, Config{}, client4, server4)
	c.ok(srv, "220 hello\r\n")
	c.ok(cli, "AUTH TLS\r\n")
	c.ok(srv, "530 Please login with USER and PASS.\r\n")
	pasv(c, 1025)
}

func TestQuit(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "QUIT\r\nPASV\r\n")
	c.ok(srv, "221 Goodbye.\r\n")
	c.ok(srv, "227 (192,0,2,10,4,1)\r\n")
}

func TestManyTransfers(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	pasv(c, 1025)
	c.ok(cli, "LIST\r\n")
	c.ok(srv, "150 Here comes the directory listing.\r\n226 Directory send OK.\r\n")
	for i := range 5 {
		pasv(c, uint16(2000+i))
		c.ok(cli, "RETR f\r\n")
		c.ok(srv, "150 Opening.\r\n")
		c.ok(srv, "226 Transfer complete.\r\n")
	}
	wantExpect(t, c.send(cli, "PORT 198,51,100,2,4,1\r\n"), conntrack.Expect{Src: server4, SrcPort: 20, Dst: client4, DstPort: 1025, What: "ftp PORT"})
	c.ok(srv, "200 ok\r\n")
	c.ok(cli, "STOR f\r\n")
	c.ok(srv, "150 Ok to send data.\r\n226 Transfer complete.\r\n")
}

func TestGapAndResync(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	// A lost segment: the segments after it are dropped until it comes.
	lost := c.next[cli]
	c.next[cli] += uint32(len("NOOP\r\n"))
	wantDrop(t, c.send(cli, "PASV\r\n"), reasonGap)
	// Retransmission of the missing bytes, then of the dropped segment.
	wantNothing(t, c.packet(cli, lost, decode.TCPPsh, "NOOP\r\n"))
	c.ok(cli, "PASV\r\n")
	c.ok(srv, "200 NOOP ok.\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})

	// A gap that never fills (the capture missed it): after three
	// segments beyond it the stream resynchronises at the next line end.
	c.next[srv] += 100
	seq := c.next[srv]
	wantDrop(t, c.send(srv, "xt of a lost line\r\n"), reasonGap)
	wantDrop(t, c.packet(srv, seq, decode.TCPPsh, "xt of a lost line\r\n"), reasonGap)
	c.ok(srv, "xt of a lost line\r\n") // accepted, discarded up to the line end
	c.ok(cli, "PASV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,2)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1026, What: "ftp PASV"})

	// After a resync in the middle of a would-be command, the line's
	// tail is no command.
	c.next[cli] += 3
	for range 2 {
		wantDrop(t, c.packet(cli, c.next[cli], decode.TCPPsh, "T 198,51,100,2,4,1\r\nPASV\r\n"), reasonGap)
	}
	c.ok(cli, "T 198,51,100,2,4,1\r\nPASV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,3)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1027, What: "ftp PASV"})
}

func TestPickedUp(t *testing.T) {
	c := &conv{t: t, in: New(Config{}), sess: &conntrack.Session{ID: 2, PickedUp: true, Key: conntrack.Key{
		Src: client4, Dst: server4, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP}}}
	c.next = [2]uint32{777777, 99}
	// The first bytes seen may be the middle of a line: discarded.
	c.ok(cli, "RT 198,51,100,2,4,1\r\n")
	c.ok(srv, "7 (192,0,2,10,4,1)\r\n")
	// No greeting is waited for.
	c.ok(cli, "PASV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
}

func TestGreeting(t *testing.T) {
	// A client that sends USER before the greeting arrives: the greeting
	// answers nothing, so PASV still gets its 227.
	c := newConv(t, Config{}, client4, server4)
	c.ok(cli, "USER anonymous\r\n")
	c.ok(srv, "120 wait\r\n220-Welcome\r\n220 ready\r\n")
	c.ok(srv, "331 password\r\n")
	c.ok(cli, "PASS x\r\nPASV\r\n")
	c.ok(srv, "230 ok\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV"})
}

func TestMalformed(t *testing.T) {
	for _, cmd := range []string{
		"PORT 198,51,100,2,4\r\n", "PORT 198,51,100,2,4,1,1\r\n", "PORT 198,51,100,256,4,1\r\n",
		"PORT 198,51,100,2,0,0\r\n", "PORT\r\n", "PORT 0198,51,100,2,4,1\r\n",
	} {
		c := newConv(t, Config{}, client4, server4)
		c.login()
		wantNote(t, c.send(cli, cmd), "ftp: malformed PORT argument, nothing opened")
		wantNothing(t, c.send(srv, "200 ok\r\n"))
	}
	for _, cmd := range []string{
		"EPRT |1|198.51.100.2|\r\n", "EPRT |3|198.51.100.2|1025|\r\n", "EPRT |1|198.51.100.2|1025\r\n",
		"EPRT |1|198.51.100.2|70000|\r\n", "EPRT |2|fe80::1%eth0|1025|\r\n", "EPRT |1|2001:db8::1|1025|\r\n",
		"EPRT 1|198.51.100.2|1025|\r\n", "EPRT |1|198.51.100.2|1025|x\r\n",
	} {
		c := newConv(t, Config{}, client4, server4)
		c.login()
		wantNote(t, c.send(cli, cmd), "ftp: malformed EPRT argument, nothing opened")
		wantNothing(t, c.send(srv, "200 ok\r\n"))
	}
	for _, reply := range []string{"227 Entering Passive Mode\r\n", "227 (192,0,2,10,4)\r\n", "227 (192,0,2,10,4,1,7)\r\n", "227 (192,0,2,10,0,0)\r\n"} {
		c := newConv(t, Config{}, client4, server4)
		c.login()
		c.ok(cli, "PASV\r\n")
		wantNote(t, c.send(srv, reply), "ftp: 227 reply without an address and port, nothing opened")
	}
	for _, reply := range []string{"229 (|||)\r\n", "229 (||1025|)\r\n", "229 |||1025|\r\n", "229 (|||1025|\r\n", "229 (1111025|)\r\n", "229 (|||0|)\r\n"} {
		c := newConv(t, Config{}, client4, server4)
		c.login()
		c.ok(cli, "EPSV\r\n")
		wantNote(t, c.send(srv, reply), "ftp: 229 reply without a port, nothing opened")
	}
}

func TestPipelineOverflow(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, strings.Repeat("NOOP\r\n", queueLen))
	wantNote(t, c.send(cli, "PASV\r\n"), noteUntracked)
	c.ok(srv, strings.Repeat("200 ok\r\n", queueLen))
	wantNote(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"), "ftp: 227 reply without a pending PASV, nothing opened")
	// Drained: tracking resumes.
	pasv(c, 1025)
}

func TestNotTCP(t *testing.T) {
	in := New(Config{})
	sess := &conntrack.Session{Key: conntrack.Key{Src: client4, Dst: server4, SrcPort: 1, DstPort: 21, Proto: decode.ProtoUDP}}
	r := in.Inspect(&conntrack.Context{Session: sess}, &decode.Packet{Proto: decode.ProtoUDP, Payload: []byte("PASV\r\n")})
	if r != (conntrack.Result{NoOffload: true}) {
		t.Fatalf("got %+v", r)
	}
	if in.Name() != "ftp" {
		t.Fatal(in.Name())
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{ExpectTimeout: -1}, {MaxLine: 10}, {MaxLine: 1 << 20}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if n := len(New(Config{MaxLine: 10}).line[0]); n != MinLine {
		t.Errorf("line buffer %d, want %d", n, MinLine)
	}
	if n := len(New(Config{MaxLine: 1 << 20}).line[1]); n != MaxLineLimit {
		t.Errorf("line buffer %d, want %d", n, MaxLineLimit)
	}
	c := newConv(t, Config{ExpectTimeout: 5 * time.Second}, client4, server4)
	c.login()
	c.ok(cli, "PASV\r\n")
	wantExpect(t, c.send(srv, "227 (192,0,2,10,4,1)\r\n"),
		conntrack.Expect{Src: client4, Dst: server4, DstPort: 1025, What: "ftp PASV", Timeout: 5 * time.Second})
}

func TestAllocs(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	p := [2]decode.Packet{
		{Src: client4, Dst: server4, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP, Flags: decode.TCPAck | decode.TCPPsh,
			Payload: []byte("NOOP\r\nCWD /images\r\nSIZE c2900.bin\r\nRETR c2900.bin\r\n")},
		{Src: server4, Dst: client4, SrcPort: 21, DstPort: 40000, Proto: decode.ProtoTCP, Flags: decode.TCPAck | decode.TCPPsh,
			Payload: []byte("200 NOOP ok.\r\n250-Directory\r\n 227 (1,2,3,4,5,6)\r\n250 changed.\r\n213 1234\r\n150 Opening.\r\n226 Done.\r\n")},
	}
	ctx := [2]conntrack.Context{{Session: c.sess, Dir: cli}, {Session: c.sess, Dir: srv}}
	allocs := testing.AllocsPerRun(100, func() {
		for d := range 2 {
			p[d].Seq = c.next[d]
			if r := c.in.Inspect(&ctx[d], &p[d]); r.Drop || r.HasExpect || r.Reason != "" {
				t.Fatalf("got %+v", r)
			}
			c.next[d] += uint32(len(p[d].Payload))
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per exchange", allocs)
	}
}

func BenchmarkInspect(b *testing.B) {
	in := New(Config{})
	sess := &conntrack.Session{Key: conntrack.Key{Src: client4, Dst: server4, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP}, PickedUp: true}
	p := decode.Packet{Src: client4, Dst: server4, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP, Flags: decode.TCPAck,
		Payload: []byte("RETR images/c2900-universalk9-mz.SPA.157-3.M8.bin\r\n")}
	ctx := conntrack.Context{Session: sess}
	b.ReportAllocs()
	for b.Loop() {
		in.Inspect(&ctx, &p)
		p.Seq += uint32(len(p.Payload))
	}
}

// TestSynNewISN checks that a SYN sent again with a new initial sequence
// number before any data (a client that gave up on its first attempt and
// retried from the same port; the tracker re-initialises the side)
// re-synchronises the stream: the commands that follow are read.
func TestSynNewISN(t *testing.T) {
	c := newConv(t, Config{}, client4, server4) // client ISN 1000
	c.packet(cli, 70000, decode.TCPSyn, "")
	c.next[cli] = 70001
	c.login()
	pasv(c, 5000)
	// Once data has flowed, a SYN (a retransmitted SYN-ACK the tracker
	// let pass) moves nothing.
	c.packet(srv, 5000, decode.TCPSyn|decode.TCPAck, "")
	pasv(c, 5001)
}

// TestHTTPBodyIsNotACommand: NAT Slipstreaming without any segment
// trick. An HTTP body may itself contain CR LF: the line "PORT ..." then
// starts a line of the reassembled stream, and since an active hole opens
// on the command itself (before any reply), a hostile web page could make
// the victim's browser POST to attacker:2121 (2121 is not on the
// browsers' blocked-port list, 21 is) and open a hole from the attacker's
// port 20 to any port >= 1024 of the victim. A stream whose client speaks
// HTTP (a request line "... HTTP/1.1", header lines such as "Host:") is
// not an FTP control connection: inspection stops and nothing opens.
func TestHTTPBodyIsNotACommand(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	r := c.send(cli, "POST /x HTTP/1.1\r\n"+
		"Host: 192.0.2.10:2121\r\n"+
		"Content-Type: text/plain\r\n"+
		"Content-Length: 26\r\n"+
		"\r\n"+
		"PORT 198,51,100,2,13,61\r\n")
	if r.HasExpect || !r.Cancel || r.Reason != noteHTTP {
		t.Fatalf("an HTTP request whose body holds a PORT line: %+v, want nothing opened and the note %q", r, noteHTTP)
	}
	if r := c.send(cli, "PORT 198,51,100,2,13,62\r\n"); r.HasExpect {
		t.Fatalf("a PORT after the HTTP request opened %+v", r.Expect)
	}
}

func TestIsHTTP(t *testing.T) {
	for line, want := range map[string]bool{
		"POST /x HTTP/1.1":        true,
		"GET / HTTP/1.0":          true,
		"Host: 192.0.2.10:2121":   true,
		"Content-Length: 26":      true,
		"PORT 198,51,100,2,13,61": false,
		"HOST ftp.example.com":    false, // RFC 7151
		"CWD HTTP/1.1":            false,
		"RETR a b HTTP/1.1":       false,
		"retr /x HTTP/1.1":        false, // HTTP methods are upper case
		"USER anonymous":          false,
		":":                       false,
		"POST /x HTTP/x.1":        false,
	} {
		verb, arg := splitCommand([]byte(line))
		if got := isHTTP(verb, arg); got != want {
			t.Errorf("isHTTP(%q) = %v, want %v", line, got, want)
		}
	}
}

// TestResyncEndsMultiLineReply: a gap must not wedge the session for
// ever (docs/INSPECTION.md, "Gaps"). If the lost bytes held the last line
// of a multi-line reply (RFC 959 section 4.2; here the "230 " that ends a
// "230-" login banner), a parser still inside that reply would take every
// later reply for its text, and no 227 would open anything again. The
// resync point cannot be known to lie inside a multi-line reply: the
// reply parser starts afresh there.
func TestResyncEndsMultiLineReply(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.ok(srv, "220 (vsFTPd 3.0.3)\r\n")
	c.ok(cli, "USER anonymous\r\n")
	c.ok(srv, "331 Please specify the password.\r\n")
	c.ok(cli, "PASS guest@\r\n")
	c.ok(srv, "230-Welcome to the image server.\r\n")
	// The segment with the rest of the banner and its final line is lost
	// before inspectd (a capture that missed it, a drop upstream).
	c.next[srv] += uint32(len("230-Images are in /pub.\r\n230 Login successful.\r\n"))
	c.ok(cli, "TYPE I\r\n")
	for range maxAhead - 1 {
		wantDrop(t, c.packet(srv, c.next[srv], decode.TCPPsh, "200 Switching to Binary mode.\r\n"), reasonGap)
	}
	c.send(srv, "200 Switching to Binary mode.\r\n") // accepted: the stream resynchronises
	var r conntrack.Result
	for i := range 3 {
		c.ok(cli, "PASV\r\n")
		r = c.send(srv, "227 Entering Passive Mode (192,0,2,10,4,"+itoa(i+1)+").\r\n")
	}
	if !r.HasExpect {
		t.Fatalf("after a resync inside a multi-line reply (multi=%v), 227 replies open nothing for the rest of the session: got %+v",
			c.in.st.multi, r)
	}
}

// TestNoHoleAfterControlEnded: once the control session is reset or both
// sides have sent their FIN, nothing opens, also from bytes that arrive
// after the closing segment, in the window: a reply that crossed the
// client's reset (the server's 227 was already on its way), or a command
// whose segment the FIN overtook (the FIN, beyond a gap, is recorded
// before the bytes before it are parsed). A data connection belongs to a
// live control session.
func TestNoHoleAfterControlEnded(t *testing.T) {
	// 1. A 227 that crosses the client's reset.
	c := newConv(t, Config{}, client4, server4)
	c.login()
	c.ok(cli, "PASV\r\n")
	c.sess.State = conntrack.StateClosed // the tracker took the reset as ending the session
	if r := c.packet(cli, c.next[cli], decode.TCPRst, ""); !r.Cancel {
		t.Fatalf("reset: %+v, want cancel", r)
	}
	if r := c.send(srv, "227 Entering Passive Mode (192,0,2,10,4,1).\r\n"); r.HasExpect {
		t.Errorf("227 after the control session was reset opened %+v", r.Expect)
	}

	// 2. A FIN that overtook the PORT before it.
	c = newConv(t, Config{}, client4, server4)
	c.login()
	cmd := "PORT 198,51,100,2,4,1\r\n"
	c.packet(cli, c.next[cli]+uint32(len(cmd)), decode.TCPFin, "")
	if r := c.packet(srv, c.next[srv], decode.TCPFin, ""); !r.Cancel {
		t.Fatalf("second FIN: %+v, want cancel", r)
	}
	if r := c.send(cli, cmd); r.HasExpect {
		t.Errorf("PORT parsed after both FINs opened %+v", r.Expect)
	}
}
