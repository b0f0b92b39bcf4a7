package conntrack

import (
	"encoding/binary"
	"net/netip"
)

// host is what the per-host limits count under: an IPv4 address, or an
// IPv6 /64, in 16-byte form (a plain array hashes faster than a
// netip.Addr and holds no pointer). An IPv4-mapped IPv6 source counts as
// its IPv4 address (Linux drops such packets before netfilter; replay
// may meet them).
type host [16]byte

// hostOf returns the host an address counts under.
func hostOf(a netip.Addr) host {
	h := host(a.As16())
	if !a.Is4() && !a.Is4In6() {
		clear(h[8:])
	}
	return h
}

// hostCounts counts what each host uses of a table: its half-open
// sessions and expectations exactly, in maps bounded by the global
// half-open and expectation limits (a host using none has no entry), and
// its sessions, by one of two means chosen by the per-host limit.
//
// Below sketchFrom sessions per host they are counted exactly, in a map
// with an entry (about 70 bytes) per host that has sessions. From
// sketchFrom up they are counted in a count-min sketch: sessionRows rows
// of counters, the host's counter in each chosen by a seeded hash, its
// count the smaller. The sketch's memory is fixed, about a byte per
// session of the table's limit, however many hosts there are: a flood
// from spoofed sources, each with a session, grows no map. A host's count
// never reads low; it reads high by the sessions of the other hosts that
// share its counter in the row where they have fewest, about
// sessionsPerCounter on a full table. A host is refused before its limit
// only if hosts near their own limits share its counters in both rows:
// at sketchFrom sessions per host, with the table 90 % full of hosts at
// their limit, 3 to 6 fresh hosts in 100 000 (measured, docs/RULES.md). The hash is seeded (Config.HashSeed): the live
// daemon's seed is random, so no peer can aim at another host's counters.
type hostCounts struct {
	halfOpen map[host]int32
	expects  map[host]int32

	exact map[host]int32 // sessions per host, below sketchFrom

	seed uint64
	mask uint64
	rows [sessionRows][]int32
}

const (
	sessionRows        = 2
	sessionsPerCounter = 8
	sketchFrom         = 1024
)

func newHostCounts(l Limits, seed uint64) hostCounts {
	c := hostCounts{halfOpen: map[host]int32{}, expects: map[host]int32{}, seed: seed}
	c.fit(l)
	return c
}

// fit makes the session counts fit limits l. It reports whether it made
// new, empty counts: the caller counts the sessions again.
func (c *hostCounts) fit(l Limits) bool {
	if l.SessionsPerHost < sketchFrom {
		if c.exact != nil {
			return false
		}
		c.exact, c.rows, c.mask = map[host]int32{}, [sessionRows][]int32{}, 0
		return true
	}
	w := 64
	for w < l.Sessions/sessionsPerCounter {
		w <<= 1
	}
	if c.exact == nil && w <= len(c.rows[0]) {
		return false
	}
	c.exact = nil
	for i := range c.rows {
		c.rows[i] = make([]int32, w)
	}
	c.mask = uint64(w - 1)
	return true
}

// counters returns host h's counter in each row.
func (c *hostCounts) counters(h host) (*int32, *int32) {
	x := mix(binary.LittleEndian.Uint64(h[:8]) ^ c.seed)
	x = mix(x ^ binary.LittleEndian.Uint64(h[8:]))
	return &c.rows[0][x&c.mask], &c.rows[1][(x>>32)&c.mask]
}

// mix is SplitMix64's finaliser: every input bit moves every output bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// sessions returns host h's sessions (from the sketch, an upper bound).
func (c *hostCounts) sessions(h host) int32 {
	if c.exact != nil {
		return c.exact[h]
	}
	a, b := c.counters(h)
	return min(*a, *b)
}

// addSession adds d to host h's sessions.
func (c *hostCounts) addSession(h host, d int32) {
	if c.exact != nil {
		add(c.exact, h, d)
		return
	}
	a, b := c.counters(h)
	*a += d
	*b += d
}

// decHalfOpen and decExpects take one half-open session or expectation
// off host h, forgetting a host that is left with none.
func (c *hostCounts) decHalfOpen(h host) { add(c.halfOpen, h, -1) }
func (c *hostCounts) decExpects(h host)  { add(c.expects, h, -1) }

// add adds d to host h's count in m, forgetting a host left with none.
func add(m map[host]int32, h host, d int32) {
	if n := m[h] + d; n > 0 {
		m[h] = n
	} else {
		delete(m, h)
	}
}
