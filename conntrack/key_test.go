package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/inspectd/inspectd/internal/decode"
)

func TestOrient(t *testing.T) {
	k := Key{Src: netip.MustParseAddr("198.51.100.2"), Dst: netip.MustParseAddr("192.0.2.10"), SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP}
	p, b := [2]uint64{1, 2}, [2]uint64{10, 20}
	if gp, gb, ok := k.Orient(k, p, b); !ok || gp != p || gb != b {
		t.Errorf("same key: %v %v %v", gp, gb, ok)
	}
	if gp, gb, ok := k.Orient(k.Reverse(), p, b); !ok || gp != [2]uint64{2, 1} || gb != [2]uint64{20, 10} {
		t.Errorf("reverse: %v %v %v", gp, gb, ok)
	}
	other := k
	other.SrcPort++
	if _, _, ok := k.Orient(other, p, b); ok {
		t.Error("another flow's key accepted")
	}
}

// TestICMPQueryKeys: an echo reply's key is its request's reverse; the
// responder's own request with the same identifier is another flow, in
// the table's canonical form too.
func TestICMPQueryKeys(t *testing.T) {
	a, b := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("192.0.2.10")
	req := Key{Src: a, Dst: b, SrcPort: 7, DstPort: 7, Proto: decode.ProtoICMP, Query: 8}
	reply := Key{Src: b, Dst: a, SrcPort: 7, DstPort: 7, Proto: decode.ProtoICMP, Query: 8, Answer: true}
	theirs := Key{Src: b, Dst: a, SrcPort: 7, DstPort: 7, Proto: decode.ProtoICMP, Query: 8}
	if req.Reverse() != reply || reply.Reverse() != req {
		t.Errorf("Reverse: %+v %+v", req.Reverse(), reply.Reverse())
	}
	if canonical(req) != canonical(reply) {
		t.Error("request and reply have different table keys")
	}
	if canonical(req) == canonical(theirs) || theirs.Reverse() == req {
		t.Error("the responder's request has the initiator's table key")
	}
	udp := Key{Src: a, Dst: b, SrcPort: 7, DstPort: 7, Proto: decode.ProtoUDP}
	if r := udp.Reverse(); r.Answer || r.Reverse() != udp {
		t.Errorf("UDP reverse: %+v", r)
	}
}

// TestSelfEchoReplyFindsSession: an echo request whose source and
// destination are the same address (a LAND-style or self ping in a
// capture) has a reply with the same addresses and identifier. Request and
// reply must have one table key (else the reply would be found only when
// its probe chain passed the request's slot, which depends on the
// table's hash seed: replay would not be deterministic), and the reply's
// direction is Reply.
func TestSelfEchoReplyFindsSession(t *testing.T) {
	found := 0
	const runs = 50
	for range runs {
		tb := New(Config{Limits: Limits{Sessions: 4}})
		req := &decode.Packet{Proto: decode.ProtoICMP, Src: cli, Dst: cli, SrcPort: 7, DstPort: 7, ICMPType: 8, ICMPQuery: 8, Length: 84}
		s, err := tb.Create(req, t0, false)
		if err != nil {
			t.Fatal(err)
		}
		reply := *req
		reply.ICMPType, reply.ICMPAnswer = 0, true
		if canonical(KeyOf(&reply)) != canonical(KeyOf(req)) {
			t.Fatal("request and reply have different table keys")
		}
		if got, d := tb.Lookup(KeyOf(&reply), t0.Add(time.Millisecond)); got == s {
			found++
			if d != Reply {
				t.Errorf("self echo reply found in direction %v, want reply", d)
			}
		}
	}
	if found != runs {
		t.Errorf("self echo reply found its session in %d of %d fresh tables", found, runs)
	}
}
