package conntrack

import (
	"net/netip"
	"testing"

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
