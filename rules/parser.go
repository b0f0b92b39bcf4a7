package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/inspectd/inspectd/internal/decode"
)

// Syntax tree built by the parser and checked by resolve.

// addrItem is one address, prefix or @set in a list.
type addrItem struct {
	tok token
	pfx netip.Prefix
	ref string // set name when the item is @ref
}

// addrSpec is the address part of `from` or `to`.
type addrSpec struct {
	any, not bool
	items    []addrItem
}

// portItem is one port, range or @set in a list.
type portItem struct {
	tok token
	r   PortRange
	ref string
}

// portSpec is the part after `port`.
type portSpec struct {
	not   bool
	items []portItem
}

// ruleDecl is a parsed rule, its sets not yet expanded.
type ruleDecl struct {
	tok       token // first token (permit or deny)
	text      string
	action    Action
	proto     uint8
	protoName string
	src, dst  addrSpec
	sport     *portSpec
	dport     *portSpec
	types     []uint8
	inspect   string
	log       bool
}

// setKind tells address sets from port sets.
type setKind uint8

const (
	addrSetKind setKind = iota
	portSetKind
)

// withArticle returns "an address set" or "a port set".
func (k setKind) withArticle() string {
	if k == portSetKind {
		return "a port set"
	}
	return "an address set"
}

// setDecl is a `set` or `ports` definition.
type setDecl struct {
	name  string
	tok   token // the name
	kind  setKind
	addrs []addrItem
	ports []portItem

	state    uint8 // resolution: 0 new, 1 in progress, 2 done
	bad      bool  // resolution failed (error already reported)
	resAddrs []netip.Prefix
	resPorts []PortRange
}

// ifaceDecl is an `interface` statement.
type ifaceDecl struct {
	name, dev       string
	nameTok, devTok token
	nets            []addrItem
}

// blockDecl is an `in on` block.
type blockDecl struct {
	inTok   token
	nameTok token
	def     Action
	log     bool
	rules   []*ruleDecl
}

// parser turns tokens into declarations, collecting every error.
type parser struct {
	file string
	src  []byte
	toks []token
	i    int
	errs ErrorList
	// unkept counts the errors found after maxKeptErrors were kept.
	unkept int
	// lostTo is the index of the token that ends the line loseLine last
	// walked: it never walks a line twice.
	lostTo int
	// expanded counts the prefixes and port ranges that sets and rules
	// expand to (spend); overBudget is set once that ran past the bound.
	expanded   int
	overBudget bool

	ifaces    []*ifaceDecl
	sets      map[string]*setDecl
	setOrder  []*setDecl
	blocks    []*blockDecl
	blockSeen map[string]token // settings blocks seen (timeouts, limits, ftp)

	timeouts Timeouts
	limits   Limits
	ftp      FTPOptions
	limitSet map[string]setting // limits keys the file sets (first block only)

	// lost holds the words of statements too broken to declare anything:
	// an interface or set of one of these names may be what the statement
	// meant, so its absence is not reported again.
	lost map[string]bool
	// headerLost is set when an `in on` header broke before its name or
	// gave a malformed one: any interface may be the one it meant, so
	// none is said to lack a block.
	headerLost bool
}

// setting is a key of a settings block as written, and whether its value
// was valid (and so is in force).
type setting struct {
	key, val token
	ok       bool
}

// topKeywords start top-level statements.
var topKeywords = map[string]bool{
	"interface": true, "set": true, "ports": true, "in": true,
	"timeouts": true, "limits": true, "ftp": true,
}

const topExpected = "interface, set, ports, in, timeouts, limits or ftp"

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

// nextInLine returns the next token, consuming it unless it ends the line,
// so that list parsers never run past the end of a rule.
func (p *parser) nextInLine() token {
	t := p.toks[p.i]
	if t.kind != tokEOF && t.kind != tokNewline {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) {
	if len(p.errs) >= maxKeptErrors {
		p.unkept++
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: t.line, Col: t.col, Msg: fmt.Sprintf(format, args...)})
}

// Bounds on what a broken file costs: errors kept while parsing, and
// errors reported (the rest are counted in one last line).
const (
	maxKeptErrors = 10000
	maxErrors     = 100
)

func (p *parser) expected(t token, what string) {
	p.errorf(t, "expected %s, found %s", what, t.describe())
}

func (p *parser) where(t token) string { return fmt.Sprintf("line %d", t.line) }

// atLineStart reports whether the next token is the first of its line.
func (p *parser) atLineStart() bool {
	return p.i == 0 || p.toks[p.i-1].kind == tokNewline
}

// atTopKeyword reports whether the next token is a top-level keyword at the
// start of a line: a forgotten "}" is the likely cause when one shows up
// inside braces.
func (p *parser) atTopKeyword() bool {
	t := p.peek()
	return t.kind == tokWord && topKeywords[t.text] && p.atLineStart()
}

// skipStatement skips to the end of the current statement: the end of the
// line, or past the brace that closes braces opened on the way.
func (p *parser) skipStatement() {
	depth := 0
	for {
		t := p.peek()
		switch t.kind {
		case tokEOF:
			return
		case tokNewline:
			if depth == 0 {
				return
			}
		case tokLBrace:
			depth++
		case tokRBrace:
			depth--
			if depth <= 0 {
				p.next()
				if depth == 0 {
					p.skipStatement()
				}
				return
			}
		case tokWord:
			if depth > 0 && p.atTopKeyword() {
				return
			}
		}
		p.next()
	}
}

// skipRule skips the rest of a rule that started at token index start,
// stopping before a "}" that closes the enclosing block.
func (p *parser) skipRule(start int) {
	depth := 0
	for _, t := range p.toks[start:p.i] {
		switch t.kind {
		case tokLBrace:
			depth++
		case tokRBrace:
			depth--
		}
	}
	for {
		switch p.peek().kind {
		case tokEOF, tokNewline:
			return
		case tokLBrace:
			depth++
		case tokRBrace:
			if depth == 0 {
				return
			}
			depth--
		}
		p.next()
	}
}

// endStatement requires the end of the line (or file) after a statement.
func (p *parser) endStatement() {
	t := p.peek()
	if t.kind == tokNewline || t.kind == tokEOF {
		return
	}
	p.expected(t, "end of line")
	p.skipStatement()
}

// skipBlank skips newlines, and commas when commas is set.
func (p *parser) skipBlank(commas bool) {
	for {
		k := p.peek().kind
		if k != tokNewline && !(commas && k == tokComma) {
			return
		}
		p.next()
	}
}

// parse parses the whole file.
func (p *parser) parse() {
	for {
		t := p.peek()
		switch {
		case t.kind == tokEOF:
			return
		case t.kind == tokNewline:
			p.next()
		case t.is("interface"):
			p.parseInterface()
		case t.is("set"):
			p.parseSet(addrSetKind)
		case t.is("ports"):
			p.parseSet(portSetKind)
		case t.is("in"):
			p.parseBlock()
		case t.is("timeouts"), t.is("limits"), t.is("ftp"):
			p.parseSettings()
		case t.is("permit"), t.is("deny"):
			p.errorf(t, "expected %s, found %s (rules belong inside an `in on` block)", topExpected, t.describe())
			p.skipStatement()
		default:
			p.expected(t, topExpected)
			p.loseLine()
			p.skipStatement()
		}
	}
}

// loseLine records the words from the next token to the end of the line
// as lost: the broken statement they belong to may have meant to declare
// one of them (`interfce lan eth1`, `st servers { ... }`).
func (p *parser) loseLine() {
	for i := max(p.i, p.lostTo); i < len(p.toks); i++ {
		t := p.toks[i]
		if t.kind == tokNewline || t.kind == tokEOF {
			p.lostTo = i
			return
		}
		if t.kind == tokWord {
			p.lost[t.text] = true
		}
	}
}

// maxName is the longest name (of an interface or a set), in bytes.
const maxName = 64

// nameProblem says why s cannot name an interface or a set, quoting the
// rule of docs/RULES.md it breaks; it returns "" for a valid name.
func nameProblem(s string) string {
	switch {
	case s == "":
		return "is empty"
	case len(s) > maxName:
		return fmt.Sprintf("is %d characters long, at most %d are allowed", len(s), maxName)
	}
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i == 0:
			return "must start with a letter or _"
		case c >= '0' && c <= '9', c == '-', c == '.':
		default:
			return fmt.Sprintf("contains %s: names use letters, digits, _, - and .", strconv.Quote(s[i:i+size]))
		}
		i += size
	}
	return ""
}

// validDevice reports whether s can be a Linux network device name.
func validDevice(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '/' || c == ':' || c >= 0x7f {
			return false
		}
	}
	return true
}

// parseName reads a name; on failure it reports the error, saying which
// naming rule a word breaks, and returns false.
func (p *parser) parseName(what string) (token, bool) {
	t := p.peek()
	if t.kind != tokWord {
		p.expected(t, what)
		return t, false
	}
	if why := nameProblem(t.text); why != "" {
		p.errorf(t, "%s %q %s", what, t.text, why)
		return t, false
	}
	return p.next(), true
}

func (p *parser) parseInterface() {
	p.next()
	name, ok := p.parseName("interface name")
	if !ok {
		p.loseLine()
		p.skipStatement()
		return
	}
	dev := p.peek()
	if dev.kind != tokWord || dev.text == "net" {
		p.expected(dev, "device name")
		p.lost[name.text] = true
		p.skipStatement()
		return
	}
	p.next()
	if !validDevice(dev.text) {
		p.errorf(dev, "invalid device name %q (1 to 15 characters, no blanks, \"/\" or \":\")", dev.text)
	}
	d := &ifaceDecl{name: name.text, dev: dev.text, nameTok: name, devTok: dev}
	if t := p.peek(); t.is("net") {
		p.next()
		given := false
		for {
			t := p.peek()
			if t.kind == tokComma {
				p.next()
				continue
			}
			if t.kind == tokBang {
				// One error for the negation; the rest of the line is
				// not worth reading.
				p.errorf(t, "a net cannot be negated: list the networks behind interface %s", name.text)
				for p.peek().kind != tokNewline && p.peek().kind != tokEOF {
					p.next()
				}
				given = true
				break
			}
			if t.kind != tokWord && t.kind != tokRef {
				break
			}
			p.next()
			given = true
			if it, ok := p.addrItem(t, "address, prefix or @set"); ok {
				d.nets = append(d.nets, it)
			}
		}
		if !given {
			p.expected(p.peek(), "address, prefix or @set")
		}
	}
	for _, o := range p.ifaces {
		if o.name == d.name {
			p.errorf(name, "interface %s already declared at %s", d.name, p.where(o.nameTok))
			p.endStatement()
			return
		}
		if o.dev == d.dev {
			p.errorf(dev, "device %s already used by interface %s at %s", d.dev, o.name, p.where(o.nameTok))
			p.endStatement()
			return
		}
	}
	p.ifaces = append(p.ifaces, d)
	p.endStatement()
}

// checkRef reports a reference without a name. A malformed name is
// reported by lookupSet, unless a broken statement declared it.
func (p *parser) checkRef(t token) bool {
	if t.text == "" {
		p.errorf(t, "expected set name after \"@\", found %s", p.peek().describe())
		return false
	}
	return true
}

// addrItem parses t (already consumed) as an address, prefix or @set.
func (p *parser) addrItem(t token, what string) (addrItem, bool) {
	if t.kind == tokRef {
		if !p.checkRef(t) {
			return addrItem{}, false
		}
		return addrItem{tok: t, ref: t.text}, true
	}
	if t.kind != tokWord {
		p.expected(t, what)
		return addrItem{}, false
	}
	s := t.text
	addrPart, bitsPart, isPrefix := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		p.expected(t, what)
		return addrItem{}, false
	}
	if a.Zone() != "" {
		p.errorf(t, "address %s has a zone; zones are not allowed", s)
		return addrItem{}, false
	}
	if a.Is4In6() {
		p.errorf(t, "IPv4-mapped address %s: write the IPv4 address %s", addrPart, a.Unmap())
		return addrItem{}, false
	}
	bits := a.BitLen()
	if isPrefix {
		n, err := strconv.Atoi(bitsPart)
		if err != nil || n < 0 || n > a.BitLen() || bitsPart == "" || bitsPart[0] == '+' || (len(bitsPart) > 1 && bitsPart[0] == '0') {
			p.errorf(t, "bad prefix %s: length must be 0 to %d", s, a.BitLen())
			return addrItem{}, false
		}
		bits = n
	}
	pfx := netip.PrefixFrom(a, bits)
	if m := pfx.Masked(); m != pfx {
		p.errorf(t, "bad prefix %s: host bits set (the network is %s)", s, m)
		return addrItem{}, false
	}
	return addrItem{tok: t, pfx: pfx}, true
}

// portItem parses t (already consumed) as a port, a range or an @set.
func (p *parser) portItem(t token) (portItem, bool) {
	if t.kind == tokRef {
		if !p.checkRef(t) {
			return portItem{}, false
		}
		return portItem{tok: t, ref: t.text}, true
	}
	if t.kind != tokWord {
		p.expected(t, "port number or range")
		return portItem{}, false
	}
	loS, hiS, isRange := strings.Cut(t.text, "-")
	lo, ok1 := parsePort(loS)
	hi, ok2 := lo, true
	if isRange {
		hi, ok2 = parsePort(hiS)
	}
	if !ok1 || !ok2 {
		if isDigits(loS) && (!isRange || isDigits(hiS)) {
			p.errorf(t, "port %s out of range (0 to 65535)", t.text)
		} else {
			p.expected(t, "port number or range")
		}
		return portItem{}, false
	}
	if lo > hi {
		p.errorf(t, "reversed port range %s: first port above last", t.text)
		return portItem{}, false
	}
	return portItem{tok: t, r: PortRange{lo, hi}}, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parsePort parses a decimal port number 0 to 65535.
func parsePort(s string) (uint16, bool) {
	if !isDigits(s) || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// parseSet parses `set NAME { ... }` or `ports NAME { ... }`.
func (p *parser) parseSet(kind setKind) {
	kw := p.next()
	name, ok := p.parseName("set name")
	if !ok {
		p.loseLine()
		p.skipStatement()
		return
	}
	lb := p.peek()
	if lb.kind != tokLBrace {
		p.expected(lb, `"{"`)
		p.lost[name.text] = true
		p.skipStatement()
		return
	}
	p.next()
	d := &setDecl{name: name.text, tok: name, kind: kind}
	what := "address, prefix, @set or \"}\""
	if kind == portSetKind {
		what = "port number, range, @set or \"}\""
	}
	for {
		p.skipBlank(true)
		t := p.peek()
		if t.kind == tokRBrace {
			p.next()
			break
		}
		if t.kind == tokEOF || p.atTopKeyword() {
			p.errorf(t, "expected \"}\" to close %s %s opened at %d:%d, found %s", kw.text, name.text, lb.line, lb.col, t.describe())
			d.bad = true
			break
		}
		p.next()
		var ok bool
		switch {
		case t.kind == tokBang:
			p.errorf(t, "a set cannot hold a negation: negate where the set is used (!@%s)", name.text)
		case t.kind != tokWord && t.kind != tokRef:
			p.expected(t, what)
		case kind == addrSetKind:
			var it addrItem
			if it, ok = p.addrItem(t, what); ok {
				d.addrs = append(d.addrs, it)
			}
		default:
			var it portItem
			if it, ok = p.portItem(t); ok {
				d.ports = append(d.ports, it)
			}
		}
		// A set with a broken item is unusable; its users stay quiet.
		d.bad = d.bad || !ok
	}
	if o := p.sets[d.name]; o != nil {
		p.errorf(name, "set %s already defined at %s", d.name, p.where(o.tok))
	} else {
		p.sets[d.name] = d
		p.setOrder = append(p.setOrder, d)
	}
	if t := p.peek(); t.kind != tokEOF && !p.atLineStart() {
		p.endStatement()
	}
}

// parseBlock parses `in on IFACE default ACTION [log] { rules }`.
func (p *parser) parseBlock() {
	in := p.next()
	b := &blockDecl{inTok: in}
	ok := p.blockHeader(b)
	if !ok {
		if b.nameTok.kind == tokWord {
			// Keep the block so that its interface is not reported as
			// lacking one; the file has an error anyway.
			p.blocks = append(p.blocks, b)
		} else {
			p.headerLost = true
		}
		// Skip the rest of the header; still check the rules of the block
		// when the header line opened it, or the next line does, or rules
		// or a lone "}" (the block's end) follow.
		for {
			t := p.peek()
			if t.kind == tokEOF || t.kind == tokNewline || t.kind == tokLBrace {
				break
			}
			p.next()
		}
		p.skipBlank(false)
		t := p.peek()
		switch {
		case t.kind == tokLBrace:
			p.next()
		case !t.is("permit") && !t.is("deny") && t.kind != tokRBrace:
			return
		}
		p.blockBody(b, t)
		return
	}
	lb := p.next()
	p.blockBody(b, lb)
	p.blocks = append(p.blocks, b)
}

// blockHeader parses the header up to and excluding "{".
func (p *parser) blockHeader(b *blockDecl) bool {
	if t := p.peek(); !t.is("on") {
		p.expected(t, "on")
		return false
	}
	p.next()
	// A malformed name is reported by resolve, unless the interface
	// statement that declared it is broken.
	name := p.peek()
	if name.kind != tokWord {
		p.expected(name, "interface name")
		return false
	}
	b.nameTok = p.next()
	if t := p.peek(); !t.is("default") {
		p.expected(t, "default")
		return false
	}
	p.next()
	switch t := p.peek(); {
	case t.is("permit"):
		b.def = Permit
	case t.is("deny"):
		b.def = Deny
	default:
		p.expected(t, "permit or deny")
		return false
	}
	p.next()
	if p.peek().is("log") {
		p.next()
		b.log = true
	}
	if t := p.peek(); t.kind != tokLBrace {
		what := `"{"`
		if !b.log {
			what = `log or "{"`
		}
		p.expected(t, what)
		return false
	}
	return true
}

// blockBody parses rules up to the closing "}"; lb is the opening brace
// (or, after a broken header, the token where the block was assumed).
func (p *parser) blockBody(b *blockDecl, lb token) {
	for {
		p.skipBlank(false)
		t := p.peek()
		switch {
		case t.kind == tokRBrace:
			p.next()
			p.endStatement()
			return
		case t.kind == tokEOF || p.atTopKeyword():
			p.errorf(t, "expected \"}\" to close the block opened at %d:%d, found %s", lb.line, lb.col, t.describe())
			return
		case t.is("permit"), t.is("deny"):
			start := p.i
			if r, ok := p.parseRule(); ok {
				b.rules = append(b.rules, r)
			} else {
				p.skipRule(start)
			}
		default:
			p.expected(t, `permit, deny or "}"`)
			p.skipRule(p.i)
		}
	}
}

var protoNames = map[string]uint8{
	"any": 0, "tcp": decode.ProtoTCP, "udp": decode.ProtoUDP,
	"icmp": decode.ProtoICMP, "icmpv6": decode.ProtoICMPv6,
}

// ruleState tracks which parts of a rule were seen, to say what may come next.
type ruleState struct {
	from, to, port, typ, inspect, log bool
	afterAddr                         bool // just after a from/to address
}

func (p *parser) ruleExpected(r *ruleDecl, st *ruleState) string {
	var w []string
	if !st.from && !st.to && !st.typ && !st.inspect && !st.log {
		w = append(w, "from")
	}
	if !st.to && !st.typ && !st.inspect && !st.log {
		w = append(w, "to")
	}
	tcpudp := r.proto == decode.ProtoTCP || r.proto == decode.ProtoUDP
	if st.afterAddr && !st.port && tcpudp {
		w = append(w, "port")
	}
	icmp := r.proto == decode.ProtoICMP || r.proto == decode.ProtoICMPv6
	if icmp && !st.typ && !st.inspect && !st.log {
		w = append(w, "type")
	}
	if tcpudp && r.action == Permit && !st.inspect && !st.log {
		w = append(w, "inspect")
	}
	if !st.log {
		w = append(w, "log")
	}
	return orList(append(w, "end of line"))
}

// orList joins alternatives as "a, b or c".
func orList(w []string) string {
	if len(w) == 1 {
		return w[0]
	}
	return strings.Join(w[:len(w)-1], ", ") + " or " + w[len(w)-1]
}

// parseRule parses one rule; on error the caller skips the rest of the line.
func (p *parser) parseRule() (*ruleDecl, bool) {
	first := p.next()
	r := &ruleDecl{tok: first, action: Deny}
	if first.is("permit") {
		r.action = Permit
	}
	pt := p.peek()
	proto, ok := protoNames[pt.text]
	if pt.kind != tokWord || !ok {
		p.expected(pt, "protocol (tcp, udp, icmp, icmpv6 or any)")
		return nil, false
	}
	p.next()
	r.proto, r.protoName = proto, pt.text
	r.src.any, r.dst.any = true, true
	var st ruleState
	for {
		t := p.peek()
		afterAddr := st.afterAddr
		st.afterAddr = false
		switch {
		case t.is("from") && !st.from && !st.to && !st.typ && !st.inspect && !st.log:
			p.next()
			st.from, st.afterAddr, st.port = true, true, false
			if !p.addrSpec(&r.src) {
				return nil, false
			}
		case t.is("to") && !st.to && !st.typ && !st.inspect && !st.log:
			p.next()
			st.to, st.afterAddr, st.port = true, true, false
			if !p.addrSpec(&r.dst) {
				return nil, false
			}
		case t.is("port") && afterAddr && !st.port:
			p.next()
			st.port = true
			if r.proto != decode.ProtoTCP && r.proto != decode.ProtoUDP {
				p.errorf(t, "port needs protocol tcp or udp, rule has %s", r.protoName)
				return nil, false
			}
			ps := &portSpec{}
			if !p.portSpec(ps) {
				return nil, false
			}
			if st.to {
				r.dport = ps
			} else {
				r.sport = ps
			}
		case t.is("type") && !st.typ && !st.inspect && !st.log:
			p.next()
			st.typ = true
			if r.proto != decode.ProtoICMP && r.proto != decode.ProtoICMPv6 {
				p.errorf(t, "type needs protocol icmp or icmpv6, rule has %s", r.protoName)
				return nil, false
			}
			if !p.icmpTypes(r) {
				return nil, false
			}
		case t.is("inspect") && !st.inspect && !st.log:
			p.next()
			st.inspect = true
			v := p.peek()
			if !v.is("ftp") && !v.is("tftp") {
				p.expected(v, "ftp or tftp")
				return nil, false
			}
			p.next()
			r.inspect = v.text
			if r.action != Permit {
				p.errorf(t, "inspect on a deny rule: only permitted flows are inspected")
				return nil, false
			}
			want, wantName := decode.ProtoTCP, "tcp"
			if v.text == "tftp" {
				want, wantName = decode.ProtoUDP, "udp"
			}
			if r.proto != want {
				p.errorf(v, "inspect %s needs protocol %s, rule has %s", v.text, wantName, r.protoName)
				return nil, false
			}
		case t.is("log") && !st.log:
			p.next()
			st.log = true
			r.log = true
		case t.kind == tokNewline || t.kind == tokEOF || t.kind == tokRBrace:
			last := p.toks[p.i-1]
			r.text = string(p.src[first.off:last.end])
			return r, true
		default:
			st.afterAddr = afterAddr
			p.expected(t, p.ruleExpected(r, &st))
			return nil, false
		}
	}
}

// addrSpec parses the address after `from` or `to`.
func (p *parser) addrSpec(a *addrSpec) bool {
	const what = "address, prefix, @set or any"
	a.any = false
	if p.peek().kind == tokBang {
		p.next()
		a.not = true
	}
	t := p.nextInLine()
	switch {
	case t.is("any"):
		if a.not {
			p.errorf(t, "!any never matches")
			return false
		}
		a.any = true
		return true
	case t.kind == tokLBrace:
		const want = "address, prefix, @set or \"}\""
		return p.braceList("address", want, isWordOrRef, func(it token) bool {
			if it.is("any") {
				p.errorf(it, "any inside a list: write any alone")
				return false
			}
			item, ok := p.addrItem(it, want)
			if ok {
				a.items = append(a.items, item)
			}
			return ok
		})
	case t.kind == tokWord || t.kind == tokRef:
		item, ok := p.addrItem(t, what)
		if !ok {
			return false
		}
		a.items = append(a.items, item)
		return true
	}
	p.expected(t, what)
	return false
}

// portSpec parses the ports after `port`.
func (p *parser) portSpec(ps *portSpec) bool {
	if p.peek().kind == tokBang {
		p.next()
		ps.not = true
	}
	t := p.nextInLine()
	if t.kind != tokLBrace {
		item, ok := p.portItem(t)
		if ok {
			ps.items = append(ps.items, item)
		}
		return ok
	}
	return p.braceList("port", "port number, range, @set or \"}\"", isWordOrRef, func(it token) bool {
		item, ok := p.portItem(it)
		if ok {
			ps.items = append(ps.items, item)
		}
		return ok
	})
}

// icmpTypes parses the types after `type`.
func (p *parser) icmpTypes(r *ruleDecl) bool {
	one := func(t token) bool {
		names, other, otherName := icmpTypes, icmpv6Types, "icmpv6"
		if r.proto == decode.ProtoICMPv6 {
			names, other, otherName = icmpv6Types, icmpTypes, "icmp"
		}
		if t.kind == tokWord {
			if v, ok := names[t.text]; ok {
				r.types = append(r.types, v)
				return true
			}
			if isDigits(t.text) {
				n, err := strconv.Atoi(t.text)
				if err != nil || n > 255 {
					p.errorf(t, "%s type %s out of range (0 to 255)", r.protoName, t.text)
					return false
				}
				r.types = append(r.types, uint8(n))
				return true
			}
			if _, ok := other[t.text]; ok {
				p.errorf(t, "%s is an %s type, rule has %s", t.text, otherName, r.protoName)
				return false
			}
		}
		p.expected(t, r.protoName+" type name or number")
		return false
	}
	t := p.nextInLine()
	if t.kind == tokBang {
		p.errorf(t, "%s types cannot be negated: list the types to match", r.protoName)
		return false
	}
	if t.kind != tokLBrace {
		return one(t)
	}
	isWord := func(t token) bool { return t.kind == tokWord }
	return p.braceList("type", r.protoName+" type name, number or \"}\"", isWord, one)
}

// braceList parses the items of a list up to its closing "}" (the "{" is
// read), commas between items optional. isItem tells whether a token is an
// item, which item parses (reporting its own errors); a list without items
// is an error, and so is any other token (want says what was expected).
func (p *parser) braceList(noun, want string, isItem, item func(token) bool) bool {
	n := 0
	for {
		it := p.nextInLine()
		switch {
		case it.kind == tokComma:
		case it.kind == tokRBrace:
			if n == 0 {
				p.errorf(it, "empty %s list", noun)
				return false
			}
			return true
		case it.kind == tokBang && noun != "type":
			p.errorf(it, "a negation inside a list: negate the whole list (!{ ... })")
			return false
		case isItem(it):
			if !item(it) {
				return false
			}
			n++
		default:
			p.expected(it, want)
			return false
		}
	}
}

// isWordOrRef tells whether t can start an address or port item.
func isWordOrRef(t token) bool { return t.kind == tokWord || t.kind == tokRef }

// Settings blocks.

// durSetting describes a timeout key: where it goes and its bounds.
type durSetting struct {
	p        func(*Timeouts) *time.Duration
	min, max time.Duration
}

var timeoutKeys = map[string]durSetting{
	"tcp-idle":    {func(t *Timeouts) *time.Duration { return &t.TCPIdle }, time.Second, 7 * 24 * time.Hour},
	"tcp-synwait": {func(t *Timeouts) *time.Duration { return &t.TCPSynWait }, time.Second, time.Hour},
	"tcp-finwait": {func(t *Timeouts) *time.Duration { return &t.TCPFinWait }, time.Second, time.Hour},
	"udp-idle":    {func(t *Timeouts) *time.Duration { return &t.UDPIdle }, time.Second, 24 * time.Hour},
	"icmp-idle":   {func(t *Timeouts) *time.Duration { return &t.ICMPIdle }, time.Second, time.Hour},
	"ftp-expect":  {func(t *Timeouts) *time.Duration { return &t.FTPExpect }, time.Second, 10 * time.Minute},
	"tftp-expect": {func(t *Timeouts) *time.Duration { return &t.TFTPExpect }, time.Second, 10 * time.Minute},
}

// intSetting describes a limit key: where it goes and its bounds.
type intSetting struct {
	p        func(*Limits) *int
	min, max int
}

var limitKeys = map[string]intSetting{
	"sessions":              {func(l *Limits) *int { return &l.Sessions }, 1, 1 << 26},
	"sessions-per-host":     {func(l *Limits) *int { return &l.SessionsPerHost }, 1, 1 << 26},
	"half-open":             {func(l *Limits) *int { return &l.HalfOpen }, 1, 1 << 26},
	"half-open-per-host":    {func(l *Limits) *int { return &l.HalfOpenPerHost }, 1, 1 << 26},
	"expectations":          {func(l *Limits) *int { return &l.Expectations }, 1, 1 << 24},
	"expectations-per-host": {func(l *Limits) *int { return &l.ExpectationsPerHost }, 1, 1 << 24},
	"ftp-line":              {func(l *Limits) *int { return &l.FTPLine }, 128, 8192},
}

// settingNames lists each settings block's keys in documentation order.
var settingNames = map[string][]string{
	"timeouts": {"tcp-idle", "tcp-synwait", "tcp-finwait", "udp-idle", "icmp-idle", "ftp-expect", "tftp-expect"},
	"limits": {"sessions", "sessions-per-host", "half-open", "half-open-per-host", "expectations",
		"expectations-per-host", "ftp-line"},
	"ftp": {"min-data-port", "active-source-port"},
}

// parseSettings parses a timeouts, limits or ftp block. A second block of
// a kind is an error; its keys are checked but neither applied nor
// compared with the first block's.
func (p *parser) parseSettings() {
	kw := p.next()
	first, again := p.blockSeen[kw.text]
	if again {
		p.errorf(kw, "second %s block (the first is at %s)", kw.text, p.where(first))
	} else {
		p.blockSeen[kw.text] = kw
	}
	lb := p.peek()
	if lb.kind != tokLBrace {
		p.expected(lb, `"{"`)
		p.skipStatement()
		return
	}
	p.next()
	keys := settingNames[kw.text]
	names := orList(append(slices.Clone(keys), `"}"`))
	given := map[string]token{}
	for {
		p.skipBlank(true)
		key := p.peek()
		if key.kind == tokRBrace {
			p.next()
			p.endStatement()
			return
		}
		if key.kind == tokEOF || p.atTopKeyword() {
			p.errorf(key, "expected \"}\" to close %s opened at %d:%d, found %s", kw.text, lb.line, lb.col, key.describe())
			return
		}
		p.next()
		if key.kind != tokWord {
			p.expected(key, names)
			continue
		}
		if !slices.Contains(keys, key.text) {
			p.expected(key, names)
			if v := p.peek(); v.kind == tokWord {
				p.next() // its value
			}
			continue
		}
		o, twice := given[key.text]
		if twice {
			p.errorf(key, "%s set twice (first at %d:%d)", key.text, o.line, o.col)
		} else {
			given[key.text] = key
		}
		apply := !again && !twice
		val := p.peek()
		if val.kind != tokWord {
			p.expected(val, "value for "+key.text)
			if apply && kw.text == "limits" {
				p.limitSet[key.text] = setting{key: key, val: val}
			}
			continue
		}
		p.next()
		var ok bool
		switch kw.text {
		case "timeouts":
			ok = p.setTimeout(key, val, apply)
		case "limits":
			ok = p.setLimit(key, val, apply)
		default:
			ok = p.setFTP(key, val, apply)
		}
		if !ok {
			// Skip the rest of a value written in words ("1 hour").
			for t := p.peek(); t.kind == tokWord && !slices.Contains(keys, t.text) && !p.atLineStart(); t = p.peek() {
				p.next()
			}
		}
	}
}

// setTimeout checks the value of a timeouts key, and puts it in force when
// apply is set. It returns false when val is not a duration at all.
func (p *parser) setTimeout(key, val token, apply bool) bool {
	s := timeoutKeys[key.text]
	d, err := time.ParseDuration(val.text)
	if err != nil || val.text[0] == '-' || val.text[0] == '+' {
		p.expected(val, "duration (like 30s, 5m or 1h)")
		return false
	}
	if d < s.min || d > s.max {
		p.errorf(val, "%s %s out of range (%s to %s)", key.text, val.text, fmtDur(s.min), fmtDur(s.max))
		return true
	}
	if apply {
		*s.p(&p.timeouts) = d
	}
	return true
}

// fmtDur prints whole hours and minutes without the zero parts Go adds.
func fmtDur(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// setLimit checks the value of a limits key and, when apply is set, puts
// it in force and records it for checkLimits. It returns false when val is
// not a number at all.
func (p *parser) setLimit(key, val token, apply bool) bool {
	s := limitKeys[key.text]
	if !isDigits(val.text) {
		p.expected(val, "number")
		if apply {
			p.limitSet[key.text] = setting{key: key, val: val}
		}
		return false
	}
	n, err := strconv.Atoi(val.text)
	ok := err == nil && n >= s.min && n <= s.max
	if !ok {
		p.errorf(val, "%s %s out of range (%d to %d)", key.text, val.text, s.min, s.max)
	}
	if apply {
		p.limitSet[key.text] = setting{key: key, val: val, ok: ok}
		if ok {
			*s.p(&p.limits) = n
		}
	}
	return true
}

// setFTP checks the value of an ftp key, and puts it in force when apply
// is set. It returns false when the value is not valid.
func (p *parser) setFTP(key, val token, apply bool) bool {
	o := p.ftp
	if key.text == "active-source-port" {
		switch val.text {
		case "20":
			o.ActiveSourcePortAny = false
		case "any":
			o.ActiveSourcePortAny = true
		default:
			p.expected(val, "20 or any")
			return false
		}
	} else {
		n, ok := parsePort(val.text)
		if !ok || n == 0 {
			p.expected(val, "port number 1 to 65535")
			return false
		}
		o.MinDataPort = n
	}
	if apply {
		p.ftp = o
	}
	return true
}
