package conntrack

import (
	"net/netip"
	"testing"
)

// TestPickUpNonTCPKeepsSketch: a session picked up in the middle of its
// life is not counted per host, whatever its protocol (the engine adopts
// UDP and ICMP flows offloaded before a restart too): its removal must
// not take it off the host's count, which would then read low and let
// the host open more than sessions-per-host.
func TestPickUpNonTCPKeepsSketch(t *testing.T) {
	tb := New(Config{Limits: Limits{Sessions: 64, SessionsPerHost: 1}})
	s, err := tb.Create(udpPkt(cli, 5000, srv, 53), t0, true)
	if err != nil {
		t.Fatal(err)
	}
	tb.Remove(s, "cleared by the operator")
	if n := tb.hosts.sessions(hostOf(cli)); n != 0 {
		t.Errorf("host's session count %d after the picked-up UDP session left, want 0", n)
	}
	admitted := 0
	for i := range 3 {
		if _, err := tb.Create(udpPkt(cli, uint16(6000+i), srv, 53), t0, false); err == nil {
			admitted++
		}
	}
	if admitted > 1 {
		t.Errorf("host admitted %d sessions with sessions-per-host 1", admitted)
	}
}

// TestSmallPerHostLimitIsExact: with a small sessions-per-host (1 here,
// as the rules allow), a sketch would refuse many hosts their first
// session (hosts at their limit share its counters); below sketchFrom
// sessions are counted exactly, so no host without sessions is refused
// while the table has room.
func TestSmallPerHostLimitIsExact(t *testing.T) {
	tb := New(Config{Limits: Limits{Sessions: 1024, SessionsPerHost: 1}, HashSeed: 12345})
	refused := 0
	for i := range 400 {
		h := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if _, err := tb.Create(udpPkt(h, 1000, srv, 53), t0, false); err != nil {
			refused++
		}
	}
	if refused > 0 {
		t.Errorf("%d of 400 hosts refused their first session (sessions-per-host 1); table holds %d of 1024", refused, tb.Len())
	}
}
