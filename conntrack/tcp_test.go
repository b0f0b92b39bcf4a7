package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

var (
	cli = netip.MustParseAddr("198.51.100.2")
	srv = netip.MustParseAddr("192.0.2.10")
	t0  = time.Unix(1700000000, 0)
)

// seg is one TCP segment of a scripted exchange: from the client (c) or
// the server, with flags, sequence, ack, window and payload length.
type seg struct {
	fromClient bool
	flags      uint8
	seq, ack   uint32
	win        uint16
	n          int    // payload bytes
	wscale     int    // -1: no option
	want       string // "" accepted, else the drop reason
	state      State  // state after the segment (checked when want == "")
}

const (
	S = decode.TCPSyn
	A = decode.TCPAck
	F = decode.TCPFin
	R = decode.TCPRst
	P = decode.TCPPsh
)

func tcpPkt(fromClient bool, flags uint8, seq, ack uint32, win uint16, n, wscale int) *decode.Packet {
	p := &decode.Packet{Proto: decode.ProtoTCP, Flags: flags, Seq: seq, Ack: ack, Window: win, Payload: make([]byte, n), Length: 40 + n}
	if fromClient {
		p.Src, p.Dst, p.SrcPort, p.DstPort = cli, srv, 40000, 21
	} else {
		p.Src, p.Dst, p.SrcPort, p.DstPort = srv, cli, 21, 40000
	}
	if wscale >= 0 {
		p.HasWScale, p.WScale = true, uint8(wscale)
	}
	return p
}

func runScript(t *testing.T, tb *Table, script []seg) *Session {
	t.Helper()
	var s *Session
	for i, sg := range script {
		p := tcpPkt(sg.fromClient, sg.flags, sg.seq, sg.ack, sg.win, sg.n, sg.wscale)
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if s == nil {
			var err error
			s, err = tb.Create(p, now, false)
			if err != nil {
				t.Fatalf("segment %d: create: %v", i, err)
			}
			continue
		}
		got, dir := tb.Lookup(KeyOf(p), now)
		if got != s {
			t.Fatalf("segment %d: lookup found %v", i, got)
		}
		if (dir == Original) != sg.fromClient {
			t.Fatalf("segment %d: direction %v", i, dir)
		}
		why, _ := tb.Track(s, dir, p, now)
		if why != sg.want {
			t.Fatalf("segment %d (%+v): got %q, want %q", i, sg, why, sg.want)
		}
		if why == "" && s.State != sg.state {
			t.Fatalf("segment %d: state %v, want %v", i, s.State, sg.state)
		}
	}
	return s
}

// handshake: client ISN 1000, server ISN 5000, windows 65535, no scaling.
var handshake = []seg{
	{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
	{false, S | A, 5000, 1001, 65535, 0, -1, "", StateSynRecv},
	{true, A, 1001, 5001, 65535, 0, -1, "", StateEstablished},
}

func with(base []seg, more ...seg) []seg {
	return append(append([]seg(nil), base...), more...)
}

func TestTCPTracking(t *testing.T) {
	tests := []struct {
		name   string
		script []seg
	}{
		{"handshake and data", with(handshake,
			seg{true, A | P, 1001, 5001, 65535, 100, -1, "", StateEstablished},
			seg{false, A | P, 5001, 1101, 65535, 1000, -1, "", StateEstablished},
		)},
		{"retransmitted SYN", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, S | A, 5000, 1001, 65535, 0, -1, "", StateSynRecv},
			{false, S | A, 5000, 1001, 65535, 0, -1, "", StateSynRecv},
			{true, A, 1001, 5001, 65535, 0, -1, "", StateEstablished},
		}},
		{"SYN-ACK with a wrong ack", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, S | A, 5000, 7777, 65535, 0, -1, whySynAckAck, 0},
		}},
		{"ACK for an older connection from the server, the client's reset, a new SYN", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, A, 5000, 777, 65535, 0, -1, "", StateSynSent},
			{true, R, 777, 0, 0, 0, -1, "", StateSynSent},
			{true, S, 3000, 0, 65535, 0, -1, "", StateSynSent},
			{false, S | A, 9000, 3001, 65535, 0, -1, "", StateSynRecv},
		}},
		{"the client gives up its attempt", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{true, R, 1001, 0, 0, 0, -1, "", StateClosed},
		}},
		{"data from the server during the handshake", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, A | P, 5000, 1001, 65535, 10, -1, whyHandshake, 0},
		}},
		{"FIN from the server during the handshake", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, F | A, 5000, 1001, 65535, 0, -1, whyHandshake, 0},
		}},
		{"connection refused", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, R | A, 0, 1001, 0, 0, -1, "", StateClosed},
		}},
		{"reset that does not ack the SYN", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, R | A, 0, 999, 0, 0, -1, whyResetSynAck, 0},
		}},
		{"simultaneous open", []seg{
			{true, S, 1000, 0, 65535, 0, -1, "", StateSynSent},
			{false, S, 5000, 0, 65535, 0, -1, "", StateSynRecv},
			{true, S | A, 1000, 5001, 65535, 0, -1, "", StateSynRecv},
			{false, S | A, 5000, 1001, 65535, 0, -1, "", StateSynRecv},
			{true, A, 1001, 5001, 65535, 0, -1, "", StateEstablished},
		}},
		{"RST in window", with(handshake,
			seg{false, R, 5001, 0, 0, 0, -1, "", StateClosed},
		)},
		{"RST far beyond the window", with(handshake,
			seg{false, R, 5001 + 10_000_000, 0, 0, 0, -1, whyAhead, 0},
		)},
		{"RST far before the window", with(handshake,
			seg{false, R, 4_284_977_297, 0, 0, 0, -1, whyOld, 0},
		)},
		{"FIN from the client first", with(handshake,
			seg{true, F | A, 1001, 5001, 65535, 0, -1, "", StateFinWait},
			seg{false, A, 5001, 1002, 65535, 0, -1, "", StateFinWait},
			seg{false, F | A, 5001, 1002, 65535, 0, -1, "", StateClosing},
			seg{true, A, 1002, 5002, 65535, 0, -1, "", StateTimeWait},
		)},
		{"FIN from the server first", with(handshake,
			seg{false, F | A, 5001, 1001, 65535, 0, -1, "", StateFinWait},
			seg{true, F | A, 1001, 5002, 65535, 0, -1, "", StateClosing},
			seg{false, A, 5002, 1002, 65535, 0, -1, "", StateTimeWait},
		)},
		{"retransmitted data is accepted", with(handshake,
			seg{true, A | P, 1001, 5001, 65535, 100, -1, "", StateEstablished},
			seg{true, A | P, 1001, 5001, 65535, 100, -1, "", StateEstablished},
		)},
		{"data beyond the receiver's window", with(handshake,
			seg{true, A | P, 1001 + 70000, 5001, 65535, 100, -1, whyAhead, 0},
		)},
		{"ack of data never sent", with(handshake,
			seg{true, A, 1001, 5001 + 5000, 65535, 0, -1, whyAckAhead, 0},
		)},
		{"client's SYN on an established session passes and changes nothing", with(handshake,
			seg{true, S, 9999, 0, 65535, 0, -1, "", StateEstablished},
			seg{true, A, 1001, 5001, 65535, 0, -1, "", StateEstablished},
		)},
		{"challenge ACK, then the client's reset ends it", with(handshake,
			seg{true, S, 9999, 0, 65535, 0, -1, "", StateEstablished},
			seg{false, A, 5001, 1001, 65535, 0, -1, "", StateEstablished},
			seg{true, R, 1001, 0, 65535, 0, -1, "", StateClosed},
		)},
		{"server's SYN on an established session", with(handshake,
			seg{false, S, 9999, 0, 65535, 0, -1, whySynOpen, 0},
		)},
		{"reset where the receiver last acknowledged ends it (data in flight)", with(handshake,
			seg{true, A | P, 1001, 5001, 65535, 100, -1, "", StateEstablished},
			seg{true, R | A, 1001, 5001, 65535, 0, -1, "", StateClosed},
		)},
		{"reset in the window, not at the next sequence number, ends nothing", with(handshake,
			seg{true, R | A, 1001 + 1000, 5001, 65535, 0, -1, "", StateEstablished},
			seg{true, R | A, 1001, 5001, 65535, 0, -1, "", StateClosed},
		)},
		{"window scaling: large scaled window accepted", []seg{
			{true, S, 1000, 0, 65535, 0, 7, "", StateSynSent},
			{false, S | A, 5000, 1001, 65535, 0, 7, "", StateSynRecv},
			{true, A, 1001, 5001, 1024, 0, -1, "", StateEstablished}, // client window 1024<<7 = 128 KiB
			{false, A | P, 5001, 1001, 1024, 100000, -1, "", StateEstablished},
			{false, A | P, 105001, 1001, 1024, 20000, -1, "", StateEstablished},
		}},
		{"window scaling only on one side is ignored", []seg{
			{true, S, 1000, 0, 65535, 0, 7, "", StateSynSent},
			{false, S | A, 5000, 1001, 65535, 0, -1, "", StateSynRecv},
			{true, A, 1001, 5001, 1024, 0, -1, "", StateEstablished}, // 1024 unscaled
			{false, A | P, 5001, 1001, 1024, 1000, -1, "", StateEstablished},
			{false, A | P, 6100, 1001, 1024, 100, -1, whyAhead, 0}, // past 5001+1024
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, New(Config{}), tc.script)
		})
	}
}

func TestHalfOpenCountedUntilEstablished(t *testing.T) {
	tb := New(Config{})
	runScript(t, tb, handshake[:2])
	if tb.HalfOpen() != 1 {
		t.Fatalf("half-open %d, want 1", tb.HalfOpen())
	}
	tb2 := New(Config{})
	runScript(t, tb2, handshake)
	if tb2.HalfOpen() != 0 {
		t.Fatalf("half-open %d after handshake, want 0", tb2.HalfOpen())
	}
}

func TestGapRecovery(t *testing.T) {
	script := with(handshake,
		seg{true, A | P, 1001 + 200000, 5001, 65535, 10, -1, whyAhead, 0},
		seg{true, A | P, 1001 + 200010, 5001, 65535, 10, -1, whyAhead, 0},
		seg{true, A | P, 1001 + 200020, 5001, 65535, 10, -1, "", StateEstablished},
		seg{true, A | P, 1001 + 200030, 5001, 65535, 10, -1, "", StateEstablished},
	)
	runScript(t, New(Config{GapRecovery: 3}), script)
}

func TestPickUpIsLiberal(t *testing.T) {
	tb := New(Config{})
	p := tcpPkt(true, A|P, 777777, 888888, 512, 20, -1)
	s, err := tb.Create(p, t0, true)
	if err != nil {
		t.Fatal(err)
	}
	if !s.PickedUp || s.State != StateEstablished || tb.HalfOpen() != 0 {
		t.Fatalf("picked-up session %+v", s)
	}
	r := tcpPkt(false, A|P, 888888, 777797, 512, 100, -1)
	got, dir := tb.Lookup(KeyOf(r), t0)
	if got != s || dir != Reply {
		t.Fatal("reply not found")
	}
	if why, _ := tb.Track(s, dir, r, t0); why != "" {
		t.Fatalf("reply dropped: %s", why)
	}
}
