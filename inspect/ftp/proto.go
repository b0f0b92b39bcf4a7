package ftp

import (
	"fmt"
	"net/netip"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// cmdKind is what a command awaiting its reply asked for.
type cmdKind uint8

const (
	cmdOther   cmdKind = iota // anything that opens nothing
	cmdPORT                   // PORT: opens at once, a 4xx/5xx reply cancels
	cmdEPRT                   // EPRT: opens at once, a 4xx/5xx reply cancels
	cmdPASV                   // PASV, answered by 227
	cmdEPSV                   // EPSV, answered by 229
	cmdEPSVAll                // EPSV ALL, accepted by 200
	cmdAUTH                   // AUTH, accepted by 234
	cmdREIN                   // REIN, accepted by 220
	cmdQUIT                   // QUIT, accepted by 221
)

// queueLen is how many commands may await their replies (pipelining).
// Commands beyond it are counted but not tracked: they open nothing.
const queueLen = 8

// pending is a command awaiting its reply.
type pending struct {
	kind cmdKind
	// id numbers a PORT/EPRT whose hole was opened (never 0), so that a
	// refusal cancels that hole only if no later one replaced it.
	id uint8
}

// state is everything an Inspector remembers about its session, as one
// fixed-size value so that Inspect can snapshot and restore it cheaply.
type state struct {
	dir [2]stream // indexed by conntrack.Dir

	q         [queueLen]pending // commands awaiting replies, oldest at head
	head, cnt uint8
	untracked uint16 // commands sent while the queue was full, after q

	lastID uint8 // id given to the last PORT/EPRT that opened a hole
	hole   uint8 // id of the PORT/EPRT whose hole is pending; 0 for none or a passive one

	greeted   bool    // the server's greeting has been seen
	multi     bool    // inside a multi-line reply
	multiCode [3]byte // its code
	epsvAll   bool    // EPSV ALL accepted: other data commands open nothing
	stopped   bool    // AUTH accepted (encrypted), QUIT answered, or the client speaks HTTP
}

// push records a command awaiting its reply; it reports false when the
// command cannot be tracked (too many pipelined commands).
func (st *state) push(p pending) bool {
	if st.untracked > 0 || int(st.cnt) == queueLen {
		if st.untracked < ^uint16(0) {
			st.untracked++
		}
		return false
	}
	st.q[(int(st.head)+int(st.cnt))%queueLen] = p
	st.cnt++
	return true
}

// pop removes and returns the oldest command awaiting a reply; ok is false
// when no tracked command awaits one.
func (st *state) pop() (p pending, ok bool) {
	if st.cnt == 0 {
		if st.untracked > 0 {
			st.untracked--
		}
		return pending{}, false
	}
	p = st.q[st.head]
	st.head = uint8((int(st.head) + 1) % queueLen)
	st.cnt--
	return p, true
}

// popThrough looks for the oldest pending command of kind k; when there is
// one it removes it and every older command (whose replies never came)
// and reports true.
func (st *state) popThrough(k cmdKind) bool {
	for i := 0; i < int(st.cnt); i++ {
		if st.q[(int(st.head)+i)%queueLen].kind == k {
			st.head = uint8((int(st.head) + i + 1) % queueLen)
			st.cnt -= uint8(i + 1)
			return true
		}
	}
	return false
}

// Notes (Result.Reason without Drop).
const (
	noteUntracked = "ftp: too many commands awaiting replies, data command not tracked"
	noteEPSVAll   = "ftp: data command other than EPSV after EPSV ALL, nothing opened"
	noteHTTP      = "ftp: the client speaks HTTP, not FTP: inspection stops, nothing opens"
)

// note sets res.Reason unless an earlier line of the packet already did.
func note(res *conntrack.Result, why string) {
	if res.Reason == "" {
		res.Reason = why
	}
}

// refuse makes res a drop for why and reports true.
func refuse(res *conntrack.Result, why string) bool {
	res.Drop, res.Reason = true, why
	return true
}

// refuseAs is refuse for a reason with specifics a peer chose, counted
// under class (conntrack.Result.Class).
func refuseAs(res *conntrack.Result, class, why string) bool {
	res.Class = class
	return refuse(res, why)
}

// command handles one line the client sent. It reports true when the
// packet must be dropped.
func (in *Inspector) command(c *conntrack.Context, line []byte, long bool, res *conntrack.Result) bool {
	st := &in.st
	if long {
		st.push(pending{kind: cmdOther})
		note(res, in.longCmd)
		return false
	}
	for _, ch := range line {
		if ch == 0 {
			return refuse(res, reasonNUL)
		}
	}
	if len(line) >= 3 && isCode(line[:3]) && (len(line) == 3 || line[3] == ' ' || line[3] == '-') {
		return refuseAs(res, "ftp: client sent a reply, not a command",
			fmt.Sprintf("ftp: client sent reply %s, not a command", line[:3]))
	}
	verb, arg := splitCommand(line)
	if isHTTP(verb, arg) {
		// A browser made to talk to an FTP port (NAT Slipstreaming): its
		// request's body may hold a line "PORT ...", which must not open
		// a hole into the browser's host. The stream is not FTP.
		st.stopped = true
		res.Cancel = true
		note(res, noteHTTP)
		return false
	}
	k := cmdOther
	var (
		port uint16
		id   uint8
	)
	switch {
	case is(verb, "PORT"), is(verb, "EPRT"):
		if st.epsvAll {
			note(res, noteEPSVAll)
			break
		}
		p, class, why, ok := in.activeArg(c, verb, arg)
		if why != "" {
			return refuseAs(res, class, why)
		}
		if !ok {
			note(res, malformed(verb))
			break
		}
		k, port = cmdPORT, p
		if is(verb, "EPRT") {
			k = cmdEPRT
		}
		st.lastID++
		if st.lastID == 0 {
			st.lastID = 1
		}
		id = st.lastID
	case is(verb, "PASV"):
		if st.epsvAll {
			note(res, noteEPSVAll)
			break
		}
		k = cmdPASV
	case is(verb, "EPSV"):
		switch {
		case len(arg) == 0:
			k = cmdEPSV
		case is(arg, "ALL"):
			k = cmdEPSVAll
		case len(arg) == 1 && (arg[0] == '1' || arg[0] == '2'):
			if (arg[0] == '2') != sessionIs6(c) {
				return refuse(res, "ftp: EPSV "+string(arg)+" asks for another address family than the session's")
			}
			k = cmdEPSV
		}
	case is(verb, "AUTH"):
		k = cmdAUTH
	case is(verb, "REIN"):
		k = cmdREIN
	case is(verb, "QUIT"):
		k = cmdQUIT
	}
	if !st.push(pending{kind: k, id: id}) {
		if k != cmdOther {
			note(res, noteUntracked)
		}
		return false
	}
	if k == cmdPORT || k == cmdEPRT {
		in.expectActive(c, k, port, res)
		st.hole = id
	}
	return false
}

// activeArg checks the argument of PORT or EPRT. It returns the data port
// when the argument is well-formed and acceptable; a non-empty why (and
// the class it is counted under) when the command must be refused; ok
// false with an empty why when the argument is malformed (the server will
// refuse it too).
func (in *Inspector) activeArg(c *conntrack.Context, verb, arg []byte) (port uint16, class, why string, ok bool) {
	client := c.Session.Key.Src
	name := "PORT"
	var addr netip.Addr
	if is(verb, "PORT") {
		addr, port, ok = parsePort(arg)
		if !ok {
			return 0, "", "", false
		}
		if client.Is6() {
			return 0, "", "ftp: PORT on an IPv6 session", false
		}
	} else {
		name = "EPRT"
		var fam byte
		fam, addr, port, ok = parseEPRT(arg)
		if !ok {
			return 0, "", "", false
		}
		if (fam == '2') != client.Is6() {
			return 0, "ftp: EPRT names another address family than the session's",
				fmt.Sprintf("ftp: EPRT |%c| names %s on an %s session", fam, addr, family(client)), false
		}
	}
	if addr != client {
		return 0, "ftp: " + name + " names another host than the client",
			fmt.Sprintf("ftp: %s names %s, not the client %s", name, addr, client), false
	}
	if port < in.cfg.MinDataPort {
		return 0, "ftp: " + name + " names a port below min-data-port",
			fmt.Sprintf("ftp: %s names port %d, below %d", name, port, in.cfg.MinDataPort), false
	}
	return port, "", "", true
}

// reply handles one line the server sent. It reports true when the packet
// must be dropped.
func (in *Inspector) reply(c *conntrack.Context, line []byte, long bool, res *conntrack.Result) bool {
	st := &in.st
	if len(line) < 3 || !isCode(line[:3]) {
		return false // text inside a multi-line reply, or not a reply at all
	}
	if st.multi {
		if line[0] != st.multiCode[0] || line[1] != st.multiCode[1] || line[2] != st.multiCode[2] ||
			(len(line) > 3 && line[3] != ' ') {
			return false // text of the multi-line reply, whatever it says
		}
		st.multi = false
	} else if len(line) > 3 {
		switch line[3] {
		case '-':
			st.multi = true
			copy(st.multiCode[:], line[:3])
			return false
		case ' ':
		default:
			return false
		}
	}
	// line is a final reply: "NNN text" (or the last line of a multi-line
	// reply).
	if line[0] == '1' {
		return false // preliminary: the command still awaits its reply
	}
	if !st.greeted {
		st.greeted = true // the greeting answers no command
		return false
	}
	usable := !long
	if long {
		note(res, in.longReply)
	} else {
		for _, ch := range line {
			if ch == 0 {
				note(res, reasonNULReply)
				usable = false
				break
			}
		}
	}
	code := line[:3]
	var cmd pending
	switch {
	case string(code) == "227" || string(code) == "229":
		// These codes answer nothing but PASV/EPSV: a pending one is the
		// command answered even if replies to older commands went missing.
		want := cmdPASV
		if code[2] == '9' {
			want = cmdEPSV
		}
		if !st.popThrough(want) {
			st.pop()
			note(res, "ftp: "+string(code)+" reply without a pending "+passiveName(want)+", nothing opened")
			return false
		}
		cmd = pending{kind: want}
	default:
		var ok bool
		if cmd, ok = st.pop(); !ok {
			return false
		}
	}
	if !usable {
		return false
	}
	switch {
	case (cmd.kind == cmdPORT || cmd.kind == cmdEPRT) && (code[0] == '4' || code[0] == '5'):
		if cmd.id == st.hole {
			// The server refused the address: the hole opened for it goes.
			st.hole = 0
			res.Cancel = true
			note(res, refusedNote(cmd.kind, code))
		}
	case cmd.kind == cmdPASV && string(code) == "227":
		return in.expectPASV(c, line[3:], res)
	case cmd.kind == cmdEPSV && string(code) == "229":
		return in.expectEPSV(c, line[3:], res)
	case cmd.kind == cmdEPSVAll && string(code) == "200":
		st.epsvAll = true
	case cmd.kind == cmdAUTH && string(code) == "234":
		st.stopped = true
		note(res, reasonTLS)
	case cmd.kind == cmdREIN && string(code) == "220":
		st.epsvAll = false
	case cmd.kind == cmdQUIT && string(code) == "221":
		st.stopped = true
	}
	return false
}

// expectActive asks for the server's data connection to the client port
// named by a valid PORT or EPRT (kind). The hole opens with the command,
// before the server answers: some servers (pyftpdlib) connect first and
// confirm after. Only the server can use it, from its data port, to the
// client's own address.
func (in *Inspector) expectActive(c *conntrack.Context, kind cmdKind, port uint16, res *conntrack.Result) {
	k := c.Session.Key
	var sport uint16 // any
	if !in.cfg.ActiveSourcePortAny {
		sport = DataPort
	}
	what := "ftp PORT"
	if kind == cmdEPRT {
		what = "ftp EPRT"
	}
	in.expect(res, k.Dst, sport, k.Src, port, what)
}

// refusedNote is the note for a PORT or EPRT the server refused with
// code, whose hole is cancelled.
func refusedNote(kind cmdKind, code []byte) string {
	verb := "PORT"
	if kind == cmdEPRT {
		verb = "EPRT"
	}
	return "ftp: " + verb + " refused by the server (" + string(code) + "), hole cancelled"
}

// expectPASV checks a 227 reply's address and asks for the client's data
// connection to it. It reports true when the packet must be dropped.
func (in *Inspector) expectPASV(c *conntrack.Context, text []byte, res *conntrack.Result) bool {
	addr, port, ok := parse227(text)
	if !ok {
		note(res, "ftp: 227 reply without an address and port, nothing opened")
		return false
	}
	server := c.Session.Key.Dst
	if server.Is6() {
		return refuseAs(res, "ftp: 227 names an IPv4 address on an IPv6 session",
			fmt.Sprintf("ftp: 227 names IPv4 address %s on an IPv6 session", addr))
	}
	if addr != server {
		return refuseAs(res, "ftp: 227 names another host than the server",
			fmt.Sprintf("ftp: 227 names %s, not the server %s", addr, server))
	}
	if port < in.cfg.MinDataPort {
		return refuseAs(res, "ftp: 227 names a port below min-data-port",
			fmt.Sprintf("ftp: 227 names port %d, below %d", port, in.cfg.MinDataPort))
	}
	in.expect(res, c.Session.Key.Src, 0, server, port, "ftp PASV")
	return false
}

// expectEPSV checks a 229 reply's port and asks for the client's data
// connection to it. It reports true when the packet must be dropped.
func (in *Inspector) expectEPSV(c *conntrack.Context, text []byte, res *conntrack.Result) bool {
	port, ok := parse229(text)
	if !ok {
		note(res, "ftp: 229 reply without a port, nothing opened")
		return false
	}
	if port < in.cfg.MinDataPort {
		return refuseAs(res, "ftp: 229 names a port below min-data-port",
			fmt.Sprintf("ftp: 229 names port %d, below %d", port, in.cfg.MinDataPort))
	}
	in.expect(res, c.Session.Key.Src, 0, c.Session.Key.Dst, port, "ftp EPSV")
	return false
}

func (in *Inspector) expect(res *conntrack.Result, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, what string) {
	in.st.hole = 0 // the new hole replaces any pending one (Replace)
	res.HasExpect = true
	res.Expect = conntrack.Expect{
		Proto: decode.ProtoTCP, Src: src, SrcPort: sport, Dst: dst, DstPort: dport,
		Timeout: in.cfg.ExpectTimeout, Replace: true, What: what,
	}
}

func sessionIs6(c *conntrack.Context) bool { return c.Session.Key.Src.Is6() }

func family(a netip.Addr) string {
	if a.Is6() {
		return "IPv6"
	}
	return "IPv4"
}

func passiveName(k cmdKind) string {
	if k == cmdEPSV {
		return "EPSV"
	}
	return "PASV"
}

func malformed(verb []byte) string {
	if is(verb, "PORT") {
		return "ftp: malformed PORT argument, nothing opened"
	}
	return "ftp: malformed EPRT argument, nothing opened"
}
