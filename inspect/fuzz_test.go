package inspect

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/packettest"
)

// fuzzPacket is one packet of a FuzzProcess input: the interface it
// enters on, how long after the previous packet it comes, and its bytes.
type fuzzPacket struct {
	lan  bool
	wait time.Duration
	data []byte
}

// encodeFuzz writes packets in FuzzProcess's input format: after a
// leading 1, per packet a control byte (bit 0: entered on lan0; bits 1-7:
// time since the previous packet in half seconds), a 16-bit big-endian
// length and the bytes. An input starting with 0 is one packet on wan0.
func encodeFuzz(pkts ...fuzzPacket) []byte {
	b := []byte{1}
	for _, p := range pkts {
		ctl := byte(p.wait/(500*time.Millisecond)) << 1
		if p.lan {
			ctl |= 1
		}
		b = append(b, ctl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.data)))
		b = append(b, p.data...)
	}
	return b
}

// decodeFuzz splits an input into packets; a length beyond the input's
// end takes what is left.
func decodeFuzz(in []byte) []fuzzPacket {
	if len(in) == 0 {
		return nil
	}
	if in[0] == 0 {
		return []fuzzPacket{{data: in[1:]}}
	}
	in = in[1:]
	var out []fuzzPacket
	for len(in) >= 3 {
		ctl, n := in[0], int(binary.BigEndian.Uint16(in[1:3]))
		in = in[3:]
		n = min(n, len(in))
		out = append(out, fuzzPacket{lan: ctl&1 != 0, wait: time.Duration(ctl>>1) * 500 * time.Millisecond, data: in[:n]})
		in = in[n:]
	}
	return out
}

// fuzzSeeds returns conversations built with packettest: FTP passive and
// active, bounce, IPv6, TFTP, ICMP errors, fragments, garbage.
func fuzzSeeds() [][]byte {
	c, s := ap(client, 40000), ap(server, 21)
	w := func(p []byte) fuzzPacket { return fuzzPacket{data: p} }
	ln := func(p []byte) fuzzPacket { return fuzzPacket{lan: true, data: p} }
	ctl := func(seqC, seqS uint32, fromClient bool, text string) fuzzPacket {
		if fromClient {
			return w(packettest.TCP(c, s, ack|psh, seqC, seqS, []byte(text)))
		}
		return ln(packettest.TCP(s, c, ack|psh, seqS, seqC, []byte(text)))
	}
	handshake := []fuzzPacket{
		w(packettest.TCP(c, s, syn, 1000, 0, nil)),
		ln(packettest.TCP(s, c, syn|ack, 5000, 1001, nil)),
		w(packettest.TCP(c, s, ack, 1001, 5001, nil)),
	}
	passive := append(append([]fuzzPacket{}, handshake...),
		ctl(1001, 5001, false, "220 hi\r\n"),
		ctl(1001, 5009, true, "PASV\r\n"),
		ctl(1007, 5009, false, "227 Entering Passive Mode (192,0,2,10,117,49)\r\n"),
		w(packettest.TCP(ap(client, 50000), ap(server, 30001), syn, 7000, 0, nil)),
		ln(packettest.TCP(ap(server, 30001), ap(client, 50000), syn|ack, 9000, 7001, nil)),
		fuzzPacket{wait: 61 * time.Second, data: packettest.TCP(ap(client, 50001), ap(server, 30001), syn, 7000, 0, nil)},
	)
	active := append(append([]fuzzPacket{}, handshake...),
		ctl(1001, 5001, false, "220 hi\r\n"),
		ctl(1001, 5009, true, "NOOP\r\nPORT 198,51,100,2,195,80\r\n"),
		ln(packettest.TCP(ap(server, 20), ap(client, 50000), syn, 7000, 0, nil)),
		ctl(1033, 5009, false, "200 ok\r\n500 no\r\n"),
		ctl(1033, 5025, true, "PORT 203,0,113,9,0,80\r\n"),
		ctl(1033, 5025, true, "\xff\xf4\xff\xf2ABOR\r\n"),
		w(packettest.TCP(c, s, rst|ack, 1043, 5025, nil)),
	)
	c6, s6 := ap(client6, 40000), ap(server6, 21)
	ipv6 := []fuzzPacket{
		w(packettest.TCP(c6, s6, syn, 1000, 0, nil)),
		ln(packettest.TCP(s6, c6, syn|ack, 5000, 1001, nil)),
		w(packettest.TCP(c6, s6, ack|psh, 1001, 5001, []byte("EPSV\r\n"))),
		ln(packettest.TCP(s6, c6, ack|psh, 5001, 1007, []byte("220 hi\r\n229 (|||30001|)\r\n"))),
		w(packettest.TCP(ap(client6, 50000), ap(server6, 30001), syn, 1, 0, nil)),
		w(packettest.TCP(c6, s6, ack|psh, 1007, 5025, []byte("EPRT |2|2001:db8:1::2|50001|\r\n"))),
		ln(packettest.TCP(ap(server6, 20), ap(client6, 50001), syn, 1, 0, nil)),
	}
	tftp := []fuzzPacket{
		w(packettest.UDP(ap(client, 50000), ap(server, 69), []byte("\x00\x01f\x00octet\x00"))),
		ln(packettest.UDP(ap(server, 3000), ap(client, 50000), []byte("\x00\x03\x00\x01data"))),
		w(packettest.UDP(ap(client, 50000), ap(server, 69), []byte("\x00\x03\x00\x01data"))),
	}
	synPkt := packettest.TCP(c, ap(server, 9000), syn, 100, 0, nil)
	router := netip.MustParseAddr("192.0.2.1")
	icmp := []fuzzPacket{
		w(synPkt),
		ln(packettest.ICMPError(router, client, 3, 3, packettest.Quote(synPkt))),
		ln(packettest.ICMPError(router, client, 3, 3, packettest.Quote(packettest.TCP(c, ap(server, 7), syn, 1, 0, nil)))),
		w(packettest.ICMPEcho(client, server, 1, 1, false)),
		ln(packettest.ICMPEcho(server, client, 1, 1, true)),
		w(packettest.ICMPEcho(client6, server6, 1, 1, false)),
	}
	var frags []fuzzPacket
	for _, f := range packettest.Fragment(packettest.UDP(ap(client, 50000), ap(server, 69), make([]byte, 100)), 32, 7) {
		frags = append(frags, w(f))
	}
	for _, f := range packettest.Fragment(packettest.TCP(c6, s6, syn, 1, 0, make([]byte, 64)), 24, 9) {
		frags = append(frags, w(f))
	}
	garbage := []fuzzPacket{w(nil), w([]byte{0x45}), w([]byte{0x60, 0, 0, 0, 0, 8, 6, 64}), ln([]byte("PORT 1,2,3,4,5,6\r\n")),
		w(packettest.TCP(ap(third, 4444), s, ack, 1, 1, nil))}
	return [][]byte{
		encodeFuzz(passive...), encodeFuzz(active...), encodeFuzz(ipv6...), encodeFuzz(tftp...),
		encodeFuzz(icmp...), encodeFuzz(frags...), encodeFuzz(garbage...),
		append([]byte{0}, synPkt...),
	}
}

// acceptReasons are the reasons an accepted packet may give.
var acceptReasons = map[string]bool{
	ReasonRule: true, ReasonDefault: true, ReasonSession: true, ReasonRelated: true, ReasonICMPRelated: true,
}

// FuzzProcess runs arbitrary packets through an engine with the test
// rules. Whatever the bytes, the engine must not panic, every verdict has
// a reason, an accepted packet always belongs to a session (the one
// exception, an ICMP error quoting nothing tracked that a rule lets in,
// cannot happen with these rules) and gives one of the accept reasons, only accepted
// packets are offloaded, the counters add up, a related session always
// has a parent, and every pending expectation belongs to a live session
// and joins that session's two hosts.
func FuzzProcess(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	// A small table: the index is allocated for the limit on every run.
	rs := testRules + "limits { sessions 4096 }\n"
	f.Fuzz(func(t *testing.T, in []byte) {
		e := New(mustRules(t, rs), Options{FastPath: true})
		var bad string
		e.Subscribe(func(ev Event) {
			if ev.Kind == SessionOpen && (ev.Session == nil || (ev.Reason == ReasonRelated) != (ev.Session.Parent != 0)) {
				bad = "session-open event " + ev.Reason + " with a wrong parent"
			}
		})
		now := start
		pkts := decodeFuzz(in)
		for i, p := range pkts {
			now = now.Add(p.wait + time.Millisecond)
			m := Meta{Time: now, In: "wan0"}
			if p.lan {
				m.In = "lan0"
			}
			v := e.Process(p.data, m)
			switch {
			case v.Reason == "":
				t.Fatalf("packet %d: verdict %+v without a reason", i+1, v)
			case v.Accept && (v.Session == 0 || !acceptReasons[v.Reason]):
				t.Fatalf("packet %d: accepted %+v", i+1, v)
			case v.Offload && !v.Accept:
				t.Fatalf("packet %d: offloads a drop %+v", i+1, v)
			case bad != "":
				t.Fatalf("packet %d: %s", i+1, bad)
			}
		}
		st := e.Stats()
		if st.Accepted+st.Dropped != uint64(len(pkts)) || st.Packets != uint64(len(pkts)) {
			t.Fatalf("stats %+v for %d packets", st, len(pkts))
		}
		e.Tick(now) // reap what expired, as the daemon does every second
		live := map[uint64]SessionInfo{}
		for _, s := range e.Sessions() {
			live[s.ID] = s
		}
		for _, x := range e.Expectations() {
			p, ok := live[x.Parent]
			if !ok {
				t.Fatalf("expectation %+v outlives its session", x)
			}
			if !sameHosts(x.Src, x.Dst, p.Src, p.Dst) {
				t.Fatalf("expectation %+v does not join the hosts of its session %+v", x, p)
			}
		}
	})
}

// sameHosts reports whether two flows (as "addr:port" strings, a port
// "any" allowed) join the same two addresses.
func sameHosts(a1, a2, b1, b2 string) bool {
	x1, x2, y1, y2 := hostOf(a1), hostOf(a2), hostOf(b1), hostOf(b2)
	return (x1 == y1 && x2 == y2) || (x1 == y2 && x2 == y1)
}

func hostOf(s string) netip.Addr {
	i := len(s) - 1
	for i >= 0 && s[i] != ':' {
		i--
	}
	if i < 0 {
		return netip.Addr{}
	}
	h := s[:i]
	if len(h) > 1 && h[0] == '[' {
		h = h[1 : len(h)-1]
	}
	a, _ := netip.ParseAddr(h)
	return a
}

// TestFuzzSeedsReachTheEngine checks that the seeds decode to what they
// were built as and exercise the paths the fuzzer should start from.
func TestFuzzSeedsReachTheEngine(t *testing.T) {
	reasons := map[string]bool{}
	var related int
	for _, seed := range fuzzSeeds() {
		e := New(mustRules(t, testRules), Options{})
		now := start
		for _, p := range decodeFuzz(seed) {
			now = now.Add(p.wait + time.Millisecond)
			in := "wan0"
			if p.lan {
				in = "lan0"
			}
			v := e.Process(p.data, Meta{Time: now, In: in})
			reasons[v.Reason] = true
			if v.Reason == ReasonRelated {
				related++
			}
		}
	}
	for _, want := range []string{
		ReasonRule, ReasonSession, ReasonRelated, ReasonICMPRelated, ReasonICMPOrphan, ReasonFragment,
		ReasonDenyDefault, ReasonNoSession, "ftp: PORT names 203.0.113.9, not the client 198.51.100.2",
		"tftp: DATA is not a request",
	} {
		if !reasons[want] {
			t.Errorf("no seed reaches %q", want)
		}
	}
	// Passive, active, EPSV, EPRT and TFTP holes are all used.
	if related != 5 {
		t.Errorf("%d related packets in the seeds, want 5", related)
	}
	if got := decodeFuzz(encodeFuzz(fuzzPacket{lan: true, wait: 3 * time.Second, data: []byte{1, 2}})); len(got) != 1 ||
		!got[0].lan || got[0].wait != 3*time.Second || string(got[0].data) != "\x01\x02" {
		t.Errorf("round trip: %+v", got)
	}
}
