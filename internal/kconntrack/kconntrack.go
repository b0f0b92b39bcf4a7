// Package kconntrack reads and edits the kernel's conntrack table.
//
// Table.Dump lists it, optionally only the entries carrying a connmark bit
// (the kernel filters them), parsing each entry in place: the daemon's
// keep-alive reads the offloaded connections this way every few seconds.
// Delete removes flows, so that clearing a session in inspectd also stops
// a flow the kernel fast path carries: the next packet of a deleted flow
// makes a new, unmarked kernel entry, is queued to inspectd again, and
// meets no session.
//
// inspectd's hooks sit on the forward path, after destination NAT and
// before source NAT, so its sessions are keyed by the addresses a packet
// has there. The kernel keys a NATed connection by its original
// direction before any NAT and by its reply direction after both; this
// package translates (Flow.Forward).
package kconntrack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Delete removes from the kernel's conntrack table, in the calling
// thread's network namespace, every flow that is one of keys (IPv4 and
// IPv6), either way round, as the forward path sees it (see
// Flow.Forward). It returns the number of
// kernel flows removed.
func Delete(keys []conntrack.Key) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	var v4, v6 keySet
	for _, k := range keys {
		if k.Src.Unmap().Is4() {
			v4.add(k)
		} else {
			v6.add(k)
		}
	}
	total := 0
	var errs []error
	for _, fam := range []struct {
		f   netlink.InetFamily
		set *keySet
	}{{unix.AF_INET, &v4}, {unix.AF_INET6, &v6}} {
		if len(fam.set.keys) == 0 {
			continue
		}
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam.f, fam.set)
		total += int(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("kconntrack: delete: %w", err))
		}
	}
	return total, errors.Join(errs...)
}

// keySet is a netlink.CustomConntrackFilter matching kernel flows by key,
// in either direction.
type keySet struct {
	keys map[conntrack.Key]struct{}
}

func (s *keySet) add(k conntrack.Key) {
	if s.keys == nil {
		s.keys = make(map[conntrack.Key]struct{})
	}
	k.Src, k.Dst = k.Src.Unmap(), k.Dst.Unmap()
	if k.Proto != decode.ProtoTCP && k.Proto != decode.ProtoUDP {
		// The kernel's ICMP tuples carry the echo id differently; match
		// ICMP flows on addresses only.
		k.SrcPort, k.DstPort = 0, 0
	}
	s.keys[k] = struct{}{}
	s.keys[k.Reverse()] = struct{}{}
}

// MatchConntrackFlow reports whether f, in its original direction as the
// forward path sees it, is in the set.
func (s *keySet) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	k, ok := flowKey(f)
	if !ok {
		return false
	}
	if k.Proto != decode.ProtoTCP && k.Proto != decode.ProtoUDP {
		k.SrcPort, k.DstPort = 0, 0
	}
	_, ok = s.keys[k]
	return ok
}

// flowKey returns the key of a kernel flow as Flow.Forward does: its
// original direction as the forward path sees it (after destination NAT,
// before source NAT); false when its addresses are unusable.
func flowKey(f *netlink.ConntrackFlow) (conntrack.Key, bool) {
	src, ok1 := addr(f.Forward.SrcIP)
	dst, ok2 := addr(f.Forward.DstIP)
	if !ok1 || !ok2 {
		return conntrack.Key{}, false
	}
	orig := conntrack.Key{Src: src, Dst: dst, SrcPort: f.Forward.SrcPort, DstPort: f.Forward.DstPort, Proto: f.Forward.Protocol}
	var reply conntrack.Key
	if rs, ok := addr(f.Reverse.SrcIP); ok {
		reply.Src, reply.SrcPort = rs, f.Reverse.SrcPort
	}
	return forward(orig, reply), true
}

func addr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}
