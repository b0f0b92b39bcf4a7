package iosftp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeServer is a tiny FTP server on loopback that records what it saw.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	file []byte

	mu       sync.Mutex
	cmds     []string // command lines with telnet bytes stripped
	urgent   []byte   // bytes read with MSG_OOB
	abortRaw []byte   // the raw ABOR line as read in band
}

func newFakeServer(t *testing.T, file []byte) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, file: file}
	t.Cleanup(func() { ln.Close() })
	go s.serve()
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.session(c.(*net.TCPConn))
	}
}

func (s *fakeServer) session(c *net.TCPConn) {
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	r := bufio.NewReader(&oobReader{rc: rc, s: s})
	reply := func(format string, a ...any) { fmt.Fprintf(c, format+"\r\n", a...) }
	reply("220-fake server\r\n220 ready")
	var dataLn net.Listener
	var xfer chan struct{} // closed when the running transfer ends
	var dataConn net.Conn
	for {
		raw, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		i := 0
		for i < len(raw) && raw[i] >= 0x80 { // telnet bytes before ABOR
			i++
		}
		line := strings.TrimRight(string(raw[i:]), "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch verb {
		case "USER":
			reply("331 password please")
		case "PASS":
			reply("230 logged in")
		case "TYPE":
			reply("200 binary")
		case "PASV", "EPSV":
			dataLn, err = net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				reply("425 no listener")
				continue
			}
			port := dataLn.Addr().(*net.TCPAddr).Port
			if verb == "PASV" {
				reply("227 Entering Passive Mode (127,0,0,1,%d,%d).", port>>8, port&0xff)
			} else {
				reply("229 Entering Extended Passive Mode (|||%d|)", port)
			}
		case "RETR":
			if arg != "image.bin" || dataLn == nil {
				reply("550 no such file")
				continue
			}
			dataConn, err = dataLn.Accept()
			dataLn.Close()
			dataLn = nil
			if err != nil {
				reply("425 no data connection")
				continue
			}
			reply("150 opening data connection")
			xfer = make(chan struct{})
			go func(dc net.Conn, done chan struct{}) {
				defer close(done)
				_, err := dc.Write(s.file)
				dc.Close()
				if err == nil {
					reply("226 transfer complete")
				}
			}(dataConn, xfer)
		case "ABOR":
			s.mu.Lock()
			s.abortRaw = raw
			s.mu.Unlock()
			if xfer != nil {
				dataConn.Close()
				<-xfer
				xfer = nil
				reply("426 transfer aborted")
			}
			reply("226 abort successful")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not implemented")
		}
	}
}

// oobReader reads a TCP connection in band and collects urgent bytes. It
// looks for an urgent byte before every read: Linux drops the urgent byte
// once a normal read has moved past the urgent mark.
type oobReader struct {
	rc syscall.RawConn
	s  *fakeServer
}

func (o *oobReader) Read(p []byte) (int, error) {
	var n int
	var rerr error
	err := o.rc.Read(func(fd uintptr) bool {
		var b [8]byte
		if m, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_OOB); err == nil && m > 0 {
			o.s.mu.Lock()
			o.s.urgent = append(o.s.urgent, b[:m]...)
			o.s.mu.Unlock()
		}
		n, rerr = syscall.Read(int(fd), p)
		return !errors.Is(rerr, syscall.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestProbeThenFetch(t *testing.T) {
	for _, passive := range []string{"PASV", "EPSV"} {
		for _, size := range []int{100, 8 << 20} {
			t.Run(fmt.Sprintf("%s/%d", passive, size), func(t *testing.T) {
				file := randomBytes(t, size)
				s := newFakeServer(t, file)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				got, err := ProbeThenFetch(ctx, s.addr(), "image.bin", passive)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, file) {
					t.Fatalf("got %d bytes, want the %d-byte file", len(got), len(file))
				}
				s.mu.Lock()
				defer s.mu.Unlock()
				want := []string{"USER anonymous", "PASS ios@", "TYPE I", passive, "RETR image.bin",
					"ABOR", passive, "RETR image.bin", "QUIT"}
				if strings.Join(s.cmds, "|") != strings.Join(want, "|") {
					t.Errorf("commands %q, want %q", s.cmds, want)
				}
				// In band the server sees IAC IP IAC ABOR: the DM byte
				// went out of band as the urgent byte.
				if !bytes.HasPrefix(s.abortRaw, []byte{0xff, 0xf4, 0xff, 'A'}) {
					t.Errorf("in-band abort line %q, want IAC IP IAC then ABOR", s.abortRaw)
				}
				if !bytes.Equal(s.urgent, []byte{0xf2}) {
					t.Errorf("urgent data %x, want f2 (IAC DM's DM byte)", s.urgent)
				}
			})
		}
	}
}

func TestFetchErrors(t *testing.T) {
	s := newFakeServer(t, []byte("x"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := Client{User: "u", Password: "p"}
	c, err := cl.Login(ctx, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Fetch(ctx, "PASV", "missing.bin")
	var re *ReplyError
	if !errors.As(err, &re) || re.Reply.Code != 550 || re.Cmd != "RETR" {
		t.Fatalf("Fetch of a missing file: %v, want a RETR 550 ReplyError", err)
	}
	if _, err := c.Passive("LPSV"); err == nil {
		t.Fatal("Passive(LPSV) succeeded")
	}
	if _, err := c.Cmd("NOOP\r\nQUIT"); err == nil {
		t.Fatal("Cmd with a line break succeeded")
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := ProbeThenFetch(ctx, addr, "f", "PASV"); err == nil || !strings.Contains(err.Error(), "dial") {
		t.Fatalf("ProbeThenFetch to a closed port: %v, want a dial error", err)
	}
}

func TestContextEndsSession(t *testing.T) {
	// A server that greets and then says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			fmt.Fprint(c, "220 hi\r\n")
			time.Sleep(5 * time.Second)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = ProbeThenFetch(ctx, ln.Addr().String(), "f", "EPSV")
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("ProbeThenFetch against a silent server: err %v after %v", err, time.Since(start))
	}
}

func TestReplyParsing(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
		err  bool
	}{
		{in: "220 ready\r\n", want: Reply{220, "ready"}},
		{in: "220-a\r\nb\r\n220 c\r\n", want: Reply{220, "a\nb\nc"}},
		{in: "22 short\r\n", err: true},
		{in: "abc hello\r\n", err: true},
		{in: "999 bad\r\n", err: true},
		{in: "220xready\r\n", err: true},
		{in: "220 " + strings.Repeat("x", maxReplyLine) + "\r\n", err: true},
		{in: "220-unterminated\r\n", err: true},
	} {
		c := &Conn{r: bufio.NewReaderSize(strings.NewReader(tc.in), maxReplyLine)}
		got, err := c.ReadReply()
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ReadReply(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParsePASV(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"Entering Passive Mode (192,0,2,10,117,48).", "192.0.2.10:30000"},
		{"=192,0,2,10,0,21", "192.0.2.10:21"},
		{"Entering Passive Mode (192,0,2,10,117)", ""},
		{"Entering Passive Mode (192,0,2,256,117,48)", ""},
		{"Entering Passive Mode (192,0,2,10,0,0)", ""},
		{"no numbers", ""},
	} {
		got, err := ParsePASV(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParsePASV(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddrPort(tc.want) {
			t.Errorf("ParsePASV(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestParseEPSV(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint16
	}{
		{"Entering Extended Passive Mode (|||30032|)", 30032},
		{"ok (!!!21!)", 21},
		{"(|||0|)", 0},
		{"(|||70000|)", 0},
		{"(||30032|)", 0},
		{"(|x|30032|)", 0},
		{"(|||)", 0},
		{"none", 0},
	} {
		got, err := ParseEPSV(tc.in)
		if (err == nil) != (tc.want != 0) || got != tc.want {
			t.Errorf("ParseEPSV(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseReplies(f *testing.F) {
	f.Add("Entering Passive Mode (192,0,2,10,117,48).")
	f.Add("Entering Extended Passive Mode (|||30032|)")
	f.Add("220-a\r\n220 b\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParsePASV(s)
		_, _ = ParseEPSV(s)
		c := &Conn{r: bufio.NewReaderSize(strings.NewReader(s), maxReplyLine)}
		_, _ = c.ReadReply()
	})
}
