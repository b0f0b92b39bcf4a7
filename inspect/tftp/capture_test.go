package tftp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// TestCaptures replays public captures: every request to port 69 must
// yield an expectation that the server's first answer matches.
func TestCaptures(t *testing.T) {
	for _, tc := range []struct {
		file string
		what string
	}{
		{"tftp.pcap", "tftp RRQ"},
		{"output-eve-tftp-01.pcap", "tftp RRQ"},
		{"tftp-tx-handling-wrq.pcap", "tftp WRQ"},
	} {
		f, err := os.Open(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := decode.NewDecoder()
		in := New(Config{})
		var (
			exp              conntrack.Expect
			pending          bool
			requests, answer int
		)
		for {
			data, _, err := r.ReadPacketData()
			if err != nil {
				break
			}
			var p decode.Packet
			if dec.Frame(r.LinkType(), data, &p) != nil || p.Proto != decode.ProtoUDP {
				continue
			}
			if p.DstPort == 69 {
				s := &conntrack.Session{Key: conntrack.KeyOf(&p)}
				res := in.Inspect(&conntrack.Context{Session: s}, &p)
				if !res.HasExpect || res.Expect.What != tc.what {
					t.Fatalf("%s: request gave %+v", tc.file, res)
				}
				exp, pending = res.Expect, true
				requests++
				continue
			}
			if pending && p.Src == exp.Src && p.Dst == exp.Dst && p.DstPort == exp.DstPort {
				pending = false
				answer++
			}
		}
		f.Close()
		if requests != 1 || answer != 1 {
			t.Errorf("%s: %d requests, %d answers matched", tc.file, requests, answer)
		}
	}
}
