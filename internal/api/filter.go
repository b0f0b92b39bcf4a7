package api

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/inspect"
)

// SessionFilter selects sessions. Zero fields match everything; a session
// must match every field set.
type SessionFilter struct {
	// Proto is "tcp", "udp", "icmp" or "icmpv6".
	Proto string
	// Addr matches sessions with either endpoint inside it (a single
	// address is a /32 or /128 prefix).
	Addr netip.Prefix
	// Port matches sessions with either endpoint on it; 0 matches any.
	Port uint16
	// ALG is the inspector's name ("ftp", "tftp"), or "none" for sessions
	// nobody inspects.
	ALG string
	// State is a session state as sessions show it, e.g. "established".
	State string
	// Parent selects the children of one session.
	Parent uint64
}

// Filter query parameters, as SessionFilter.Query writes them.
var filterParams = []string{"proto", "addr", "port", "alg", "state", "parent"}

var protos = []string{"tcp", "udp", "icmp", "icmpv6"}

// ParseSessionFilter reads a filter from query parameters proto, addr,
// port, alg, state and parent. Unknown parameters and bad values are
// errors.
func ParseSessionFilter(q url.Values) (SessionFilter, error) {
	var f SessionFilter
	for k, v := range q {
		if !slices.Contains(filterParams, k) {
			return f, fmt.Errorf("unknown filter %q (want one of %s)", k, strings.Join(filterParams, ", "))
		}
		if len(v) != 1 {
			return f, fmt.Errorf("filter %q given %d times", k, len(v))
		}
	}
	if p := q.Get("proto"); p != "" {
		p = strings.ToLower(p)
		if !slices.Contains(protos, p) {
			return f, fmt.Errorf("bad protocol %q (want tcp, udp, icmp or icmpv6)", q.Get("proto"))
		}
		f.Proto = p
	}
	if a := q.Get("addr"); a != "" {
		p, err := parsePrefix(a)
		if err != nil {
			return f, err
		}
		f.Addr = p
	}
	if p := q.Get("port"); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return f, fmt.Errorf("bad port %q (want 1-65535)", p)
		}
		f.Port = uint16(n)
	}
	if a := strings.ToLower(q.Get("alg")); a != "" {
		if a != "ftp" && a != "tftp" && a != "none" {
			return f, fmt.Errorf("bad inspector %q (want ftp, tftp or none)", q.Get("alg"))
		}
		f.ALG = a
	}
	if s := strings.ToLower(q.Get("state")); s != "" {
		if names := conntrack.StateNames(); !slices.Contains(names, s) {
			return f, fmt.Errorf("bad state %q (want one of %s)", q.Get("state"), strings.Join(names, ", "))
		}
		f.State = s
	}
	if p := q.Get("parent"); p != "" {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return f, fmt.Errorf("bad parent session id %q (want a number like 42)", p)
		}
		f.Parent = n
	}
	return f, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("bad address %q (want an address or prefix, e.g. 192.0.2.10 or 2001:db8::/32)", s)
		}
		if a := p.Addr(); a.Is4In6() {
			// Sessions hold IPv4 addresses unmapped, as for a single address.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("bad address %q: an IPv4-mapped prefix shorter than /96 (write the IPv4 prefix)", s)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q (want an address or prefix, e.g. 192.0.2.10 or 2001:db8::/32)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Query encodes the filter as query parameters.
func (f SessionFilter) Query() url.Values {
	q := url.Values{}
	if f.Proto != "" {
		q.Set("proto", f.Proto)
	}
	if f.Addr.IsValid() {
		q.Set("addr", f.Addr.String())
	}
	if f.Port != 0 {
		q.Set("port", strconv.Itoa(int(f.Port)))
	}
	if f.ALG != "" {
		q.Set("alg", f.ALG)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Parent != 0 {
		q.Set("parent", strconv.FormatUint(f.Parent, 10))
	}
	return q
}

// Match reports whether s passes the filter.
func (f SessionFilter) Match(s *inspect.SessionInfo) bool {
	if f.Proto != "" && s.Proto != f.Proto {
		return false
	}
	if f.ALG != "" && s.ALG != f.ALG && (f.ALG != "none" || s.ALG != "") {
		return false
	}
	if f.State != "" && s.State != f.State {
		return false
	}
	if f.Parent != 0 && s.Parent != f.Parent {
		return false
	}
	if !f.Addr.IsValid() && f.Port == 0 {
		return true
	}
	src, err1 := netip.ParseAddrPort(s.Src)
	dst, err2 := netip.ParseAddrPort(s.Dst)
	if err1 != nil || err2 != nil {
		return false
	}
	if f.Addr.IsValid() && !f.Addr.Contains(src.Addr().Unmap()) && !f.Addr.Contains(dst.Addr().Unmap()) {
		return false
	}
	if f.Port != 0 && (s.Proto == "icmp" || s.Proto == "icmpv6" || (src.Port() != f.Port && dst.Port() != f.Port)) {
		return false
	}
	return true
}
