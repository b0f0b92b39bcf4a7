package rules

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/inspectd/inspectd/internal/decode"
)

// Parse parses and checks the rule file src; filename is used in errors
// and positions. When the file has any problem the error is an ErrorList
// holding all of them, and the Ruleset is nil.
func Parse(filename string, src []byte) (*Ruleset, error) {
	// A byte order mark, which some editors write first, is not part of
	// the text (columns count from after it, as editors show them).
	src = bytes.TrimPrefix(src, []byte("\ufeff"))
	p := newParser(filename, src)
	p.parse()
	rs := p.resolve()
	if len(p.errs) > 0 {
		return nil, p.errorList()
	}
	return rs, nil
}

// errorList returns the errors found, in file order, at most maxErrors of
// them and a last one that counts the rest.
func (p *parser) errorList() ErrorList {
	l := p.errs.sortDedup()
	if more := len(l) - maxErrors + p.unkept; more > 0 && len(l) > maxErrors {
		next := l[maxErrors]
		l = append(l[:maxErrors], &Error{File: p.file, Line: next.Line, Col: next.Col,
			Msg: fmt.Sprintf("%d more errors not shown", more)})
	} else if p.unkept > 0 {
		last := l[len(l)-1]
		l = append(l, &Error{File: p.file, Line: last.Line, Col: last.Col, Msg: fmt.Sprintf("%d more errors not shown", p.unkept)})
	}
	return l
}

// maxExpanded bounds the prefixes and port ranges that the sets and rules
// of one file expand to, in all: nested sets are copied into every set and
// rule that uses them, so a short file can ask for a great many.
const maxExpanded = 1 << 20

// spend counts n more expanded prefixes or port ranges, reporting at t
// when the file runs past maxExpanded (once). It reports whether the file
// is still within it.
func (p *parser) spend(t token, n int) bool {
	if !p.fits(t, n) {
		return false
	}
	p.expanded += n
	return true
}

// fits reports whether n more prefixes or port ranges fit in what the
// file may still expand to, reporting at t (once) when they do not.
func (p *parser) fits(t token, n int) bool {
	if p.expanded+n <= maxExpanded {
		return true
	}
	if !p.overBudget {
		p.overBudget = true
		p.errorf(t, "the sets and rules expand to more than %d prefixes and port ranges in all "+
			"(nested sets are copied into each set and rule that uses them): use fewer, larger prefixes or flatter sets", maxExpanded)
	}
	return false
}

// newParser returns a parser for src, the settings at their defaults.
func newParser(filename string, src []byte) *parser {
	return &parser{
		file:      filename,
		src:       src,
		toks:      lex(src),
		sets:      map[string]*setDecl{},
		blockSeen: map[string]token{},
		timeouts:  DefaultTimeouts(),
		limits:    DefaultLimits(),
		ftp:       DefaultFTPOptions(),
		limitSet:  map[string]setting{},
		lost:      map[string]bool{},
	}
}

// resolve checks the declarations against each other and builds the Ruleset.
func (p *parser) resolve() *Ruleset {
	p.checkLimits()
	rs := &Ruleset{
		File:     p.file,
		AddrSets: map[string][]netip.Prefix{},
		PortSets: map[string][]PortRange{},
		Timeouts: p.timeouts,
		Limits:   p.limits,
		FTP:      p.ftp,
	}
	for _, d := range p.setOrder {
		p.resolveSet(d, nil)
		if d.bad {
			continue
		}
		if d.kind == addrSetKind {
			rs.AddrSets[d.name] = d.resAddrs
		} else {
			rs.PortSets[d.name] = d.resPorts
		}
	}

	// Interfaces and their networks.
	owner := map[netip.Prefix]*ifaceDecl{}
	byName := map[string]*Interface{}
	for i, d := range p.ifaces {
		nets, _ := p.addrs(d.nets)
		for _, n := range nets {
			if o := owner[n]; o != nil && o != d {
				p.errorf(d.nameTok, "net %s of interface %s already belongs to interface %s", n, d.name, o.name)
			}
			owner[n] = d
		}
		itf := &Interface{Name: d.name, Device: d.dev, Nets: nets, Index: i}
		rs.Interfaces = append(rs.Interfaces, itf)
		byName[d.name] = itf
	}

	// Blocks and rules.
	firstBlock := map[string]*blockDecl{}
	var strays []*blockDecl // blocks for undeclared interfaces
	for _, bd := range p.blocks {
		itf := byName[bd.nameTok.text]
		switch {
		case itf == nil && p.lost[bd.nameTok.text]:
			// The interface's broken statement has its error.
		case itf == nil && nameProblem(bd.nameTok.text) != "":
			p.errorf(bd.nameTok, "interface name %q %s", bd.nameTok.text, nameProblem(bd.nameTok.text))
			p.headerLost = true // which interface was meant is unknown
		case itf == nil:
			strays = append(strays, bd)
		case firstBlock[itf.Name] != nil:
			p.errorf(bd.inTok, "second block for interface %s (the first is at %s)", itf.Name, p.where(firstBlock[itf.Name].inTok))
			itf = nil
		default:
			firstBlock[itf.Name] = bd
		}
		b := &Block{
			Interface:  itf,
			Default:    bd.def,
			DefaultLog: bd.log,
			Pos:        Pos{File: p.file, Line: bd.inTok.line, Col: bd.inTok.col},
		}
		for _, rd := range bd.rules {
			r, ok := p.resolveRule(rd)
			if !ok {
				continue
			}
			r.Index = len(rs.Rules)
			rs.Rules = append(rs.Rules, r)
			b.Rules = append(b.Rules, r)
		}
		if itf != nil {
			itf.Block = b
			rs.Blocks = append(rs.Blocks, b)
		}
	}
	p.checkBlockless(firstBlock, strays)
	for _, b := range rs.Blocks {
		b.compile()
	}
	return rs
}

// checkBlockless reports the blocks for undeclared interfaces (strays) and
// the interfaces without a block. A stray block is likely meant for an
// interface without one (a misspelt name): its error names those
// interfaces, which are then not reported on their own; nor are they when
// a broken block header hides which interface it was for.
func (p *parser) checkBlockless(firstBlock map[string]*blockDecl, strays []*blockDecl) {
	var blockless []*ifaceDecl
	var names []string
	for _, d := range p.ifaces {
		if firstBlock[d.name] == nil && !p.lost[d.name] {
			blockless = append(blockless, d)
			names = append(names, d.name)
		}
	}
	for _, bd := range strays {
		name := bd.nameTok.text
		hint := ""
		for _, d := range p.ifaces {
			if d.dev == name {
				hint = fmt.Sprintf(" (%s is the device of interface %s)", d.dev, d.name)
			}
		}
		switch {
		case hint != "":
		case len(names) == 1:
			hint = fmt.Sprintf(" (interface %s has no block)", names[0])
		case len(names) > 1:
			hint = fmt.Sprintf(" (interfaces %s have no block)", strings.Join(names, ", "))
		}
		p.errorf(bd.nameTok, "in on %s: no interface %s is declared%s", name, name, hint)
	}
	if len(strays) > 0 || p.headerLost {
		return
	}
	for _, d := range blockless {
		p.errorf(d.nameTok, "interface %s has no `in on %s` block", d.name, d.name)
	}
}

// checkLimits checks the limits the file sets against each other, and
// fits the defaults of the keys it leaves out to them: half-open may not
// exceed sessions, nor half-open-per-host half-open, nor
// sessions-per-host sessions, nor expectations-per-host expectations. A
// default moves only
// as far as the keys given require (`sessions 100` lowers half-open to
// 100, `half-open 300000` raises sessions to 300000), so only values the
// file gives can conflict; the error stands at the key that must be the
// smaller and quotes both values as written.
func (p *parser) checkLimits() {
	s, sSet := p.limitSet["sessions"]
	h, hSet := p.limitSet["half-open"]
	ph, phSet := p.limitSet["half-open-per-host"]
	sp, spSet := p.limitSet["sessions-per-host"]
	e, eSet := p.limitSet["expectations"]
	ep, epSet := p.limitSet["expectations-per-host"]
	l := &p.limits
	bad := sSet && !s.ok || hSet && !h.ok || phSet && !ph.ok || spSet && !sp.ok || eSet && !e.ok || epSet && !ep.ok
	// conflict reports small above big when both values are valid (a bad
	// value has its error already; comparing with it says nothing).
	conflict := func(small, big setting, above bool) {
		if !above || !small.ok || !big.ok {
			return
		}
		p.errorf(small.key, "%s %s exceeds %s %s (set at %d:%d)",
			small.key.text, small.val.text, big.key.text, big.val.text, big.key.line, big.key.col)
		bad = true
	}
	if sSet && hSet {
		conflict(h, s, l.HalfOpen > l.Sessions)
	}
	if hSet && phSet {
		conflict(ph, h, l.HalfOpenPerHost > l.HalfOpen)
	}
	if sSet && !hSet && phSet {
		conflict(ph, s, l.HalfOpenPerHost > l.Sessions) // no half-open fits between
	}
	if sSet && spSet {
		conflict(sp, s, l.SessionsPerHost > l.Sessions)
	}
	if eSet && epSet {
		conflict(ep, e, l.ExpectationsPerHost > l.Expectations)
	}
	if bad {
		return // the file is refused: nothing to fit
	}
	if !sSet {
		if hSet {
			l.Sessions = max(l.Sessions, l.HalfOpen)
		}
		if phSet {
			l.Sessions = max(l.Sessions, l.HalfOpenPerHost)
		}
		if spSet {
			l.Sessions = max(l.Sessions, l.SessionsPerHost)
		}
	}
	if !spSet {
		l.SessionsPerHost = min(l.SessionsPerHost, l.Sessions)
	}
	if !eSet && epSet {
		l.Expectations = max(l.Expectations, l.ExpectationsPerHost)
	}
	if !epSet {
		l.ExpectationsPerHost = min(l.ExpectationsPerHost, l.Expectations)
	}
	if !hSet {
		l.HalfOpen = min(l.HalfOpen, l.Sessions)
		if phSet {
			l.HalfOpen = max(l.HalfOpen, l.HalfOpenPerHost)
		}
	}
	if !phSet {
		l.HalfOpenPerHost = min(l.HalfOpenPerHost, l.HalfOpen)
	}
}

// lookupSet finds the set a reference names, reporting undefined sets and
// sets of the wrong kind. It returns nil when the reference is unusable.
func (p *parser) lookupSet(t token, kind setKind) *setDecl {
	d := p.sets[t.text]
	switch {
	case d == nil && p.lost[t.text]:
		return nil // the set's broken statement has its error
	case d == nil:
		if why := nameProblem(t.text); why != "" {
			p.errorf(t, "set name %q %s", t.text, why)
		} else {
			p.errorf(t, "undefined set @%s", t.text)
		}
		return nil
	case d.kind != kind:
		p.errorf(t, "@%s is %s, expected %s", t.text, d.kind.withArticle(), kind.withArticle())
		return nil
	}
	return d
}

// resolveSet expands d's nested sets, detecting cycles. path holds the
// sets being expanded, outermost first.
func (p *parser) resolveSet(d *setDecl, path []*setDecl) {
	if d.state == 2 {
		return
	}
	d.state = 1
	path = append(path, d)
	visit := func(t token) *setDecl {
		n := p.lookupSet(t, d.kind)
		if n == nil {
			d.bad = true
			return nil
		}
		if n.state == 1 {
			i := slices.Index(path, n)
			names := make([]string, 0, len(path)-i+1)
			for _, s := range path[i:] {
				names = append(names, "@"+s.name)
				s.bad = true
			}
			names = append(names, "@"+n.name)
			p.errorf(t, "set cycle: %s", strings.Join(names, " -> "))
			return nil
		}
		p.resolveSet(n, path)
		if n.bad {
			d.bad = true
			return nil
		}
		return n
	}
	if d.kind == addrSetKind {
		for _, it := range d.addrs {
			if it.ref == "" {
				d.resAddrs = append(d.resAddrs, it.pfx)
			} else if n := visit(it.tok); n != nil {
				// Check the copy before making it: a set may name a big
				// one many times. (What is kept, without repeats, is
				// counted below.)
				if !p.fits(it.tok, len(d.resAddrs)+len(n.resAddrs)) {
					d.resAddrs, d.bad = nil, true
					break
				}
				d.resAddrs = append(d.resAddrs, n.resAddrs...)
			}
		}
		d.resAddrs = dedupPrefixes(d.resAddrs)
		if !d.bad && !p.spend(d.tok, len(d.resAddrs)) {
			d.resAddrs, d.bad = nil, true
		}
		if len(d.resAddrs) == 0 && !d.bad {
			p.errorf(d.tok, "set %s is empty", d.name)
			d.bad = true
		}
	} else {
		for _, it := range d.ports {
			if it.ref == "" {
				d.resPorts = append(d.resPorts, it.r)
			} else if n := visit(it.tok); n != nil {
				if !p.fits(it.tok, len(d.resPorts)+len(n.resPorts)) {
					d.resPorts, d.bad = nil, true
					break
				}
				d.resPorts = append(d.resPorts, n.resPorts...)
			}
		}
		d.resPorts = mergeRanges(d.resPorts)
		if !d.bad && !p.spend(d.tok, len(d.resPorts)) {
			d.resPorts, d.bad = nil, true
		}
		if len(d.resPorts) == 0 && !d.bad {
			p.errorf(d.tok, "set %s is empty", d.name)
			d.bad = true
		}
	}
	d.state = 2
}

// dedupPrefixes removes repeated prefixes, keeping the first of each.
func dedupPrefixes(ps []netip.Prefix) []netip.Prefix {
	seen := make(map[netip.Prefix]bool, len(ps))
	out := ps[:0]
	for _, x := range ps {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// mergeRanges sorts port ranges and merges overlapping or adjacent ones.
func mergeRanges(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if uint32(r.Lo) <= uint32(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// addrs expands a list of address items; ok is false when a set reference
// was unusable (the error is reported).
func (p *parser) addrs(items []addrItem) ([]netip.Prefix, bool) {
	var out []netip.Prefix
	ok := true
	for _, it := range items {
		if it.ref == "" {
			out = append(out, it.pfx)
			continue
		}
		d := p.lookupSet(it.tok, addrSetKind)
		if d == nil || d.bad {
			ok = false
			continue
		}
		if !p.spend(it.tok, len(d.resAddrs)) {
			return nil, false
		}
		out = append(out, d.resAddrs...)
	}
	return dedupPrefixes(out), ok
}

// ports expands a port spec.
func (p *parser) ports(ps *portSpec) (PortMatch, bool) {
	if ps == nil {
		return PortMatch{}, true
	}
	var out []PortRange
	ok := true
	for _, it := range ps.items {
		if it.ref == "" {
			out = append(out, it.r)
			continue
		}
		d := p.lookupSet(it.tok, portSetKind)
		if d == nil || d.bad {
			ok = false
			continue
		}
		if !p.spend(it.tok, len(d.resPorts)) {
			return PortMatch{}, false
		}
		out = append(out, d.resPorts...)
	}
	return PortMatch{Ranges: mergeRanges(out), Not: ps.not}, ok
}

// Address families as bits.
const (
	famV4      uint8 = 1
	famV6      uint8 = 2
	famInvalid uint8 = 4 // the zero netip.Addr
	famAll           = famV4 | famV6 | famInvalid
)

// families returns the families present in ps.
func families(ps []netip.Prefix) uint8 {
	var f uint8
	for _, x := range ps {
		if x.Addr().Is4() {
			f |= famV4
		} else {
			f |= famV6
		}
	}
	return f
}

func famName(f uint8) string {
	if f == famV4 {
		return "IPv4"
	}
	return "IPv6"
}

// resolveRule expands a rule's sets and checks its address families.
func (p *parser) resolveRule(rd *ruleDecl) (*Rule, bool) {
	r := &Rule{
		Pos:       Pos{File: p.file, Line: rd.tok.line, Col: rd.tok.col},
		Text:      rd.text,
		Action:    rd.action,
		Proto:     rd.proto,
		ICMPTypes: rd.types,
		Inspect:   rd.inspect,
		Log:       rd.log,
	}
	ok := true
	for _, x := range []struct {
		spec *addrSpec
		m    *AddrMatch
	}{{&rd.src, &r.Src}, {&rd.dst, &r.Dst}} {
		if x.spec.any {
			continue
		}
		ps, good := p.addrs(x.spec.items)
		ok = ok && good
		*x.m = AddrMatch{Prefixes: ps, Not: x.spec.not}
	}
	sp, good1 := p.ports(rd.sport)
	dp, good2 := p.ports(rd.dport)
	r.SrcPorts, r.DstPorts = sp, dp
	if !ok || !good1 || !good2 {
		return nil, false
	}
	// The families the rule can match, and why.
	fam := famAll
	var why []string
	switch rd.proto {
	case decode.ProtoICMP:
		fam &= famV4
		why = append(why, "icmp is IPv4 only")
	case decode.ProtoICMPv6:
		fam &= famV6
		why = append(why, "icmpv6 is IPv6 only")
	}
	for _, x := range []struct {
		kw string
		m  *AddrMatch
	}{{"from", &r.Src}, {"to", &r.Dst}} {
		if x.m.Prefixes == nil {
			continue
		}
		f := families(x.m.Prefixes)
		fam &= f
		if f != famV4|famV6 {
			why = append(why, x.kw+" is "+famName(f)+" only")
		}
	}
	if fam == 0 {
		p.errorf(rd.tok, "rule never matches: %s", strings.Join(why, ", "))
		return nil, false
	}
	return r, true
}
