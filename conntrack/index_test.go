package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/inspectd/inspectd/internal/decode"
)

// TestIndexAgainstMap drives the open-addressing index with random inserts
// and removals in a small table (long probe chains, wrap-around) and
// checks every lookup against a plain map.
func TestIndexAgainstMap(t *testing.T) {
	x := newIndex(8) // 16 slots
	ref := map[Key]*Session{}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() Key {
		return Key{Src: netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.IntN(4))}), Dst: srv,
			SrcPort: uint16(rng.IntN(4)), DstPort: 21, Proto: decode.ProtoTCP}
	}
	for range 20000 {
		k := key()
		if s := ref[k]; s != nil {
			if rng.IntN(2) == 0 {
				if !x.remove(s) {
					t.Fatal("remove lost a session")
				}
				delete(ref, k)
			}
		} else if len(ref) < 8 {
			s := &Session{Key: k}
			x.insert(s)
			ref[k] = s
		}
		if x.n != len(ref) {
			t.Fatalf("n %d, want %d", x.n, len(ref))
		}
		for k, s := range ref {
			if x.get(k) != s || x.get(k.Reverse()) != s {
				t.Fatalf("lookup of %v failed", k)
			}
		}
		if probe := key(); ref[probe] == nil && x.get(probe) != nil {
			t.Fatalf("found %v, which is not there", probe)
		}
	}
}
