// Package iosftp is a small FTP client that behaves like an old Cisco IOS
// `copy ftp: flash:`: it logs in, sets TYPE I, opens a passive data channel
// (PASV or EPSV) and starts a RETR, reads a little, aborts the transfer the
// RFC 959 way (Telnet IAC IP sent normally, IAC DM sent as TCP urgent data,
// then ABOR), and then fetches the whole file on the same control
// connection with a new data channel. End-to-end tests use it to check that
// a firewall opens a data channel per transfer and survives urgent data.
package iosftp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Telnet bytes of the abort sequence (RFC 854).
const (
	telnetIAC = 0xff // interpret as command
	telnetIP  = 0xf4 // interrupt process
	telnetDM  = 0xf2 // data mark
)

// maxReplyLine bounds one reply line; a longer one is a protocol error.
const maxReplyLine = 4096

// Client holds the settings of a session. The zero value dials with
// net.Dialer, logs in as anonymous and probes 4096 bytes.
type Client struct {
	// DialContext opens the control and data connections; nil means
	// (&net.Dialer{}).DialContext. Tests pass one that dials from inside a
	// network namespace.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// User and Password default to "anonymous" and "ios@".
	User, Password string
	// ProbeBytes is how much of the file the probe reads before aborting;
	// 0 means 4096.
	ProbeBytes int
}

// Reply is one FTP reply: its code and its text (lines joined by "\n").
type Reply struct {
	Code int
	Text string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s", r.Code, r.Text) }

// ReplyError is an unexpected reply to a command.
type ReplyError struct {
	Cmd   string
	Reply Reply
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("iosftp: %s: unexpected reply %s", e.Cmd, e.Reply)
}

// ProbeThenFetch runs the IOS sequence against the FTP server at addr
// (host:port with a literal IP) with a zero Client and returns the file.
// passive is "PASV" or "EPSV".
func ProbeThenFetch(ctx context.Context, addr, file, passive string) ([]byte, error) {
	var c Client
	return c.ProbeThenFetch(ctx, addr, file, passive)
}

// ProbeThenFetch logs in, starts a RETR of file, reads ProbeBytes of it,
// aborts with urgent data and ABOR, then fetches the whole file on the same
// control connection and quits.
func (cl *Client) ProbeThenFetch(ctx context.Context, addr, file, passive string) ([]byte, error) {
	c, err := cl.Login(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	probe := cl.ProbeBytes
	if probe <= 0 {
		probe = 4096
	}
	data, err := c.Retr(ctx, passive, file)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, probe)
	n, err := io.ReadFull(data, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		data.Close()
		return nil, fmt.Errorf("iosftp: probe read: %w", err)
	}
	if n < probe {
		// The whole file fitted into the probe: the transfer is over,
		// so collect its reply before aborting (ABOR then finds no transfer).
		data.Close()
		if _, err := c.Expect("RETR", 2); err != nil {
			return nil, err
		}
		if _, err := c.Abort(); err != nil {
			return nil, err
		}
	} else {
		_, err := c.Abort()
		data.Close()
		if err != nil {
			return nil, err
		}
	}
	body, err := c.Fetch(ctx, passive, file)
	if err != nil {
		return nil, err
	}
	if err := c.Quit(); err != nil {
		return nil, err
	}
	return body, nil
}

// Conn is a logged-in control connection.
type Conn struct {
	cl   *Client
	conn net.Conn
	r    *bufio.Reader
	stop func() bool // ends the context watch
}

// Login connects to addr, reads the greeting, logs in and sets TYPE I. The
// context bounds the whole session: when it ends, pending reads and writes
// fail.
func (cl *Client) Login(ctx context.Context, addr string) (*Conn, error) {
	nc, err := cl.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{cl: cl, conn: nc, r: bufio.NewReaderSize(nc, maxReplyLine)}
	c.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	if err := c.login(); err != nil {
		c.stop()
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) login() error {
	if _, err := c.Expect("greeting", 2); err != nil {
		return err
	}
	user, pass := c.cl.User, c.cl.Password
	if user == "" {
		user = "anonymous"
	}
	if pass == "" {
		pass = "ios@"
	}
	r, err := c.Cmd("USER " + user)
	if err != nil {
		return err
	}
	switch r.Code / 100 {
	case 2:
	case 3:
		if _, err := c.CmdExpect("PASS "+pass, 2); err != nil {
			return err
		}
	default:
		return &ReplyError{Cmd: "USER", Reply: r}
	}
	_, err = c.CmdExpect("TYPE I", 2)
	return err
}

func (cl *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := cl.DialContext
	if d == nil {
		d = (&net.Dialer{}).DialContext
	}
	c, err := d(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("iosftp: dial %s: %w", addr, err)
	}
	return c, nil
}

// ReadReply reads one reply, joining the lines of a multi-line reply.
func (c *Conn) ReadReply() (Reply, error) {
	line, err := c.readLine()
	if err != nil {
		return Reply{}, err
	}
	code, sep, err := parseReplyStart(line)
	if err != nil {
		return Reply{}, err
	}
	r := Reply{Code: code, Text: line[4:]}
	if sep == ' ' {
		return r, nil
	}
	end := line[:3] + " "
	for {
		line, err := c.readLine()
		if err != nil {
			return Reply{}, err
		}
		if strings.HasPrefix(line, end) {
			r.Text += "\n" + line[4:]
			return r, nil
		}
		r.Text += "\n" + line
	}
}

func parseReplyStart(line string) (int, byte, error) {
	if len(line) < 4 || (line[3] != ' ' && line[3] != '-') {
		return 0, 0, fmt.Errorf("iosftp: malformed reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil || code < 100 || code > 599 {
		return 0, 0, fmt.Errorf("iosftp: malformed reply code in %q", line)
	}
	return code, line[3], nil
}

func (c *Conn) readLine() (string, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("iosftp: reply line longer than %d bytes", maxReplyLine)
	}
	if err != nil {
		return "", fmt.Errorf("iosftp: read reply: %w", err)
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// Cmd sends one command line and reads its reply.
func (c *Conn) Cmd(line string) (Reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return Reply{}, fmt.Errorf("iosftp: command %q contains a line break", line)
	}
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return Reply{}, fmt.Errorf("iosftp: send %s: %w", verb(line), err)
	}
	return c.ReadReply()
}

// CmdExpect sends a command and fails unless the reply's first digit is
// class.
func (c *Conn) CmdExpect(line string, class int) (Reply, error) {
	r, err := c.Cmd(line)
	if err != nil {
		return r, err
	}
	if r.Code/100 != class {
		return r, &ReplyError{Cmd: verb(line), Reply: r}
	}
	return r, nil
}

// Expect reads a reply and fails unless its first digit is class; what
// names the reply in the error.
func (c *Conn) Expect(what string, class int) (Reply, error) {
	r, err := c.ReadReply()
	if err != nil {
		return r, err
	}
	if r.Code/100 != class {
		return r, &ReplyError{Cmd: what, Reply: r}
	}
	return r, nil
}

func verb(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}

// Passive sends PASV or EPSV and returns the data address the server
// announced. For PASV it is the address in the 227 reply, as IOS uses it;
// for EPSV the control connection's peer address.
func (c *Conn) Passive(passive string) (netip.AddrPort, error) {
	switch passive {
	case "PASV":
		r, err := c.CmdExpect("PASV", 2)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if r.Code != 227 {
			return netip.AddrPort{}, &ReplyError{Cmd: "PASV", Reply: r}
		}
		return ParsePASV(r.Text)
	case "EPSV":
		r, err := c.CmdExpect("EPSV", 2)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if r.Code != 229 {
			return netip.AddrPort{}, &ReplyError{Cmd: "EPSV", Reply: r}
		}
		port, err := ParseEPSV(r.Text)
		if err != nil {
			return netip.AddrPort{}, err
		}
		peer, err := netip.ParseAddrPort(c.conn.RemoteAddr().String())
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("iosftp: control peer address: %w", err)
		}
		return netip.AddrPortFrom(peer.Addr().Unmap(), port), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("iosftp: passive mode %q: want PASV or EPSV", passive)
	}
}

// ParsePASV extracts h1,h2,h3,h4,p1,p2 from the text of a 227 reply.
func ParsePASV(text string) (netip.AddrPort, error) {
	start := strings.IndexAny(text, "0123456789")
	if start < 0 {
		return netip.AddrPort{}, fmt.Errorf("iosftp: no address in 227 reply %q", text)
	}
	end := start
	for end < len(text) && (text[end] == ',' || text[end] >= '0' && text[end] <= '9') {
		end++
	}
	f := strings.Split(text[start:end], ",")
	if len(f) != 6 {
		return netip.AddrPort{}, fmt.Errorf("iosftp: 227 reply %q: want six numbers", text)
	}
	var b [6]byte
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("iosftp: 227 reply %q: bad number %q", text, s)
		}
		b[i] = byte(v)
	}
	port := uint16(b[4])<<8 | uint16(b[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("iosftp: 227 reply %q: port 0", text)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port), nil
}

// ParseEPSV extracts the port from the text of a 229 reply: "(|||port|)",
// where '|' may be any delimiter character (RFC 2428).
func ParseEPSV(text string) (uint16, error) {
	open := strings.IndexByte(text, '(')
	closing := strings.LastIndexByte(text, ')')
	if open < 0 || closing < open+5 {
		return 0, fmt.Errorf("iosftp: 229 reply %q: no (|||port|)", text)
	}
	inner := text[open+1 : closing]
	d := inner[0]
	if inner[1] != d || inner[2] != d || inner[len(inner)-1] != d {
		return 0, fmt.Errorf("iosftp: 229 reply %q: bad delimiters", text)
	}
	port, err := strconv.ParseUint(inner[3:len(inner)-1], 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("iosftp: 229 reply %q: bad port", text)
	}
	return uint16(port), nil
}

// Retr opens a passive data channel, sends RETR file and returns the data
// connection once the server answered 125 or 150. The caller reads it and
// then collects the final reply (Expect) or aborts (Abort).
func (c *Conn) Retr(ctx context.Context, passive, file string) (net.Conn, error) {
	ap, err := c.Passive(passive)
	if err != nil {
		return nil, err
	}
	data, err := c.cl.dial(ctx, ap.String())
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = data.SetDeadline(dl)
	}
	if _, err := c.CmdExpect("RETR "+file, 1); err != nil {
		data.Close()
		return nil, err
	}
	return data, nil
}

// Fetch retrieves the whole file on a new data channel and checks the
// final reply.
func (c *Conn) Fetch(ctx context.Context, passive, file string) ([]byte, error) {
	data, err := c.Retr(ctx, passive, file)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = data.SetDeadline(time.Unix(1, 0)) })
	body, err := io.ReadAll(data)
	stop()
	data.Close()
	if err != nil {
		return nil, fmt.Errorf("iosftp: read %s: %w", file, err)
	}
	if _, err := c.Expect("RETR", 2); err != nil {
		return nil, err
	}
	return body, nil
}

// Abort interrupts the running transfer like IOS: IAC IP as normal data,
// IAC DM as TCP urgent data (the DM byte carries the urgent mark), then
// "ABOR". It returns the replies up to the one that ends the abort: an
// optional 426 or 451 for the broken transfer, then 225 or 226.
func (c *Conn) Abort() ([]Reply, error) {
	if _, err := c.conn.Write([]byte{telnetIAC, telnetIP}); err != nil {
		return nil, fmt.Errorf("iosftp: send IAC IP: %w", err)
	}
	if err := SendUrgent(c.conn, []byte{telnetIAC, telnetDM}); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c.conn, "ABOR\r\n"); err != nil {
		return nil, fmt.Errorf("iosftp: send ABOR: %w", err)
	}
	var replies []Reply
	for {
		r, err := c.ReadReply()
		if err != nil {
			return replies, err
		}
		replies = append(replies, r)
		switch {
		case r.Code == 426 || r.Code == 451:
			continue
		case r.Code == 225 || r.Code == 226:
			return replies, nil
		default:
			return replies, &ReplyError{Cmd: "ABOR", Reply: r}
		}
	}
}

// SendUrgent sends b with MSG_OOB on a TCP connection: Linux marks the last
// byte of b as urgent (the urgent pointer points past it).
func SendUrgent(conn net.Conn, b []byte) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("iosftp: %T cannot send urgent data", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("iosftp: urgent data: %w", err)
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = syscall.Sendto(int(fd), b, syscall.MSG_OOB, nil)
		return !errors.Is(serr, syscall.EAGAIN)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("iosftp: send urgent data: %w", err)
	}
	return nil
}

// Quit sends QUIT and reads its reply.
func (c *Conn) Quit() error {
	_, err := c.CmdExpect("QUIT", 2)
	return err
}

// Close closes the control connection without QUIT.
func (c *Conn) Close() error {
	c.stop()
	return c.conn.Close()
}
