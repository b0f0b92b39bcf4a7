package rules

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/inspectd/inspectd/internal/decode"
)

// Protocol classes: each block keeps one compiled rule list per class, so
// Match only looks at rules that can match the flow's protocol.
const (
	classTCP = iota
	classUDP
	classICMP
	classICMPv6
	classOther
	numClasses
)

func protoClass(proto uint8) int {
	switch proto {
	case decode.ProtoTCP:
		return classTCP
	case decode.ProtoUDP:
		return classUDP
	case decode.ProtoICMP:
		return classICMP
	case decode.ProtoICMPv6:
		return classICMPv6
	}
	return classOther
}

// linearMax is the list length up to which ranges are scanned linearly;
// longer lists are binary searched.
const linearMax = 8

// v4Range and v6Range are inclusive address ranges; the lists are sorted
// and do not overlap.
type v4Range struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

type v6Range struct{ lo, hi u128 }

// addrMatcher is a compiled AddrMatch.
type addrMatcher struct {
	any, not bool
	v4       []v4Range
	v6       []v6Range
}

// portMatcher is a compiled PortMatch; the first range is kept inline.
type portMatcher struct {
	any, not bool
	lo, hi   uint16
	more     []PortRange // ranges after the first, sorted
}

// matcher is a compiled rule, laid out so the cheap checks come first.
type matcher struct {
	fam          uint8 // families the rule can match (famV4 | famV6 | famInvalid)
	hasTypes     bool
	dport, sport portMatcher
	src, dst     addrMatcher
	types        [4]uint64 // ICMP type bitmap
	rule         *Rule
}

// prefilter is a compact, necessary condition for a matcher: the families
// it can match and the hulls of its port ranges. Match scans these small
// entries and looks at the full matcher only when one passes.
type prefilter struct {
	dlo, dhi, slo, shi uint16
	fam                uint8
}

func (m *portMatcher) hull() (lo, hi uint16) {
	if m.any || m.not {
		return 0, 65535
	}
	hi = m.hi
	if len(m.more) > 0 {
		hi = m.more[len(m.more)-1].Hi
	}
	return m.lo, hi
}

// compile builds the per-class matcher lists of b.
func (b *Block) compile() {
	for _, r := range b.Rules {
		m := compileRule(r)
		pf := prefilter{fam: m.fam}
		pf.dlo, pf.dhi = m.dport.hull()
		pf.slo, pf.shi = m.sport.hull()
		for c := range numClasses {
			if r.Proto == 0 || protoClass(r.Proto) == c {
				b.m[c] = append(b.m[c], m)
				b.pre[c] = append(b.pre[c], pf)
			}
		}
	}
}

func compileRule(r *Rule) matcher {
	m := matcher{
		fam:   famAll,
		src:   compileAddrs(r.Src),
		dst:   compileAddrs(r.Dst),
		sport: compilePorts(r.SrcPorts),
		dport: compilePorts(r.DstPorts),
		rule:  r,
	}
	switch r.Proto {
	case decode.ProtoICMP:
		m.fam = famV4
	case decode.ProtoICMPv6:
		m.fam = famV6
	}
	if r.Src.Prefixes != nil {
		m.fam &= families(r.Src.Prefixes)
	}
	if r.Dst.Prefixes != nil {
		m.fam &= families(r.Dst.Prefixes)
	}
	for _, t := range r.ICMPTypes {
		m.hasTypes = true
		m.types[t>>6] |= 1 << (t & 63)
	}
	return m
}

func compilePorts(pm PortMatch) portMatcher {
	if pm.Ranges == nil {
		return portMatcher{any: true}
	}
	m := portMatcher{not: pm.Not, lo: pm.Ranges[0].Lo, hi: pm.Ranges[0].Hi}
	if len(pm.Ranges) > 1 {
		m.more = pm.Ranges[1:]
	}
	return m
}

func addrU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func compileAddrs(am AddrMatch) addrMatcher {
	if am.Prefixes == nil {
		return addrMatcher{any: true}
	}
	m := addrMatcher{not: am.Not}
	for _, p := range am.Prefixes {
		a := p.Addr()
		if a.Is4() {
			b := a.As4()
			lo := binary.BigEndian.Uint32(b[:])
			hi := lo
			if p.Bits() < 32 {
				hi = lo | (1<<(32-p.Bits()) - 1)
			}
			m.v4 = append(m.v4, v4Range{lo, hi})
			continue
		}
		lo := addrU128(a)
		hi := lo
		switch n := p.Bits(); {
		case n == 0:
			hi = u128{^uint64(0), ^uint64(0)}
		case n < 64:
			hi = u128{lo.hi | (1<<(64-n) - 1), ^uint64(0)}
		case n < 128:
			hi.lo = lo.lo | (1<<(128-n) - 1)
		}
		m.v6 = append(m.v6, v6Range{lo, hi})
	}
	m.v4 = mergeV4(m.v4)
	m.v6 = mergeV6(m.v6)
	return m
}

func mergeV4(rs []v4Range) []v4Range {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b v4Range) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi || r.lo == last.hi+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func mergeV6(rs []v6Range) []v6Range {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b v6Range) int {
		if c := cmp.Compare(a.lo.hi, b.lo.hi); c != 0 {
			return c
		}
		return cmp.Compare(a.lo.lo, b.lo.lo)
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// Prefixes either nest or are disjoint, so overlap means nesting.
		if !last.hi.less(r.lo) {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func (m *portMatcher) match(p uint16) bool {
	if m.any {
		return true
	}
	in := p >= m.lo && p <= m.hi
	if !in && len(m.more) > 0 && p > m.hi {
		in = inPortRanges(m.more, p)
	}
	return in != m.not
}

func inPortRanges(rs []PortRange, p uint16) bool {
	if len(rs) <= linearMax {
		for _, r := range rs {
			if p < r.Lo {
				return false
			}
			if p <= r.Hi {
				return true
			}
		}
		return false
	}
	lo, hi := 0, len(rs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if rs[mid].Hi < p {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo < len(rs) && rs[lo].Lo <= p
}

func (m *addrMatcher) match4(x uint32) bool {
	rs := m.v4
	in := false
	if len(rs) <= linearMax {
		for _, r := range rs {
			if x >= r.lo && x <= r.hi {
				in = true
				break
			}
		}
	} else {
		lo, hi := 0, len(rs)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if rs[mid].hi < x {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		in = lo < len(rs) && rs[lo].lo <= x
	}
	return in != m.not
}

func (m *addrMatcher) match6(x u128) bool {
	rs := m.v6
	in := false
	if len(rs) <= linearMax {
		for _, r := range rs {
			if !x.less(r.lo) && !r.hi.less(x) {
				in = true
				break
			}
		}
	} else {
		lo, hi := 0, len(rs)
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if rs[mid].hi.less(x) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		in = lo < len(rs) && !x.less(rs[lo].lo)
	}
	return in != m.not
}

// Match returns the first rule of the block that matches f, or nil when
// none does (the block default then applies). It does not count hits and
// does not allocate; it is safe for concurrent use.
func (b *Block) Match(f *Flow) *Rule {
	c := protoClass(f.Proto)
	ms, pre := b.m[c], b.pre[c]
	dp, sp := f.DstPort, f.SrcPort
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	fam := famInvalid
	var s4, d4 uint32
	var s6, d6 u128
	switch {
	case src.Is4() && dst.Is4():
		fam = famV4
		sb, db := src.As4(), dst.As4()
		s4, d4 = binary.BigEndian.Uint32(sb[:]), binary.BigEndian.Uint32(db[:])
	case src.Is6() && dst.Is6():
		fam = famV6
		s6, d6 = addrU128(src), addrU128(dst)
	}
	for i := range pre {
		p := &pre[i]
		if p.fam&fam == 0 || dp < p.dlo || dp > p.dhi || sp < p.slo || sp > p.shi {
			continue
		}
		m := &ms[i]
		if !m.dport.match(dp) ||
			!m.sport.match(sp) ||
			m.hasTypes && m.types[f.ICMPType>>6]&(1<<(f.ICMPType&63)) == 0 {
			continue
		}
		switch fam {
		case famV4:
			if !m.dst.any && !m.dst.match4(d4) || !m.src.any && !m.src.match4(s4) {
				continue
			}
		case famV6:
			if !m.dst.any && !m.dst.match6(d6) || !m.src.any && !m.src.match6(s6) {
				continue
			}
		}
		// Flows of no valid family reach here only for rules without
		// addresses: m.fam holds famInvalid only then.
		return m.rule
	}
	return nil
}
