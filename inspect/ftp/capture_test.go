package ftp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// replay is what replaying a capture through FTP inspectors gave.
type replay struct {
	expects  []string // What of each expectation, in order
	drops    []string // reasons of dropped control packets
	notes    []string // reasons noted without a drop
	matched  int      // data connections whose SYN matched an expectation
	orphaned int      // other TCP SYNs (data connections nothing expected)
}

// replayCapture plays a pcap file through one Inspector per FTP control
// session (TCP port 21), adding and consuming expectations the way the
// engine does (single use, a new one replaces the session's old one, a
// cancel removes it).
func replayCapture(t *testing.T, name string, cfg Config) replay {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out      replay
		dec      = decode.NewDecoder()
		sessions = map[conntrack.Key]*conntrack.Session{}
		pending  = map[uint64]conntrack.Expect{} // by control session ID
	)
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		var p decode.Packet
		if dec.Frame(r.LinkType(), data, &p) != nil || p.Proto != decode.ProtoTCP {
			continue
		}
		if p.SrcPort != 21 && p.DstPort != 21 {
			if p.Flags&(decode.TCPSyn|decode.TCPAck) != decode.TCPSyn {
				continue
			}
			matched := false
			for id, e := range pending {
				if e.Src == p.Src && (e.SrcPort == 0 || e.SrcPort == p.SrcPort) && e.Dst == p.Dst && e.DstPort == p.DstPort {
					delete(pending, id)
					matched = true
					break
				}
			}
			if matched {
				out.matched++
			} else {
				out.orphaned++
			}
			continue
		}
		k := conntrack.KeyOf(&p)
		dir := conntrack.Original
		if p.SrcPort == 21 {
			k, dir = k.Reverse(), conntrack.Reply
		}
		s := sessions[k]
		if s == nil {
			s = &conntrack.Session{ID: uint64(len(sessions) + 1), Key: k, PickedUp: p.Flags&decode.TCPSyn == 0}
			s.Inspector = New(cfg)
			sessions[k] = s
		}
		res := s.Inspector.Inspect(&conntrack.Context{Session: s, Dir: dir}, &p)
		switch {
		case res.Drop:
			out.drops = append(out.drops, res.Reason)
		case res.Reason != "":
			out.notes = append(out.notes, res.Reason)
		}
		if res.Cancel {
			delete(pending, s.ID)
		}
		if res.HasExpect {
			pending[s.ID] = res.Expect
			out.expects = append(out.expects, res.Expect.What)
		}
	}
	return out
}

func TestCaptures(t *testing.T) {
	for _, tc := range []struct {
		file            string
		cfg             Config
		expects         []string
		drops, notes    []string
		matched, orphan int
	}{
		{file: "ftp_ftp-download-active.pcap", expects: []string{"ftp PORT", "ftp PORT", "ftp PORT"}, matched: 3},
		{file: "ftp_ftp-upload-active.pcap", expects: []string{"ftp PORT", "ftp PORT", "ftp PORT"}, matched: 3},
		{file: "ftp_ftp-download-passive.pcap", expects: []string{"ftp PASV", "ftp PASV", "ftp PASV"}, matched: 3},
		{file: "ftp_ftp-upload-passive.pcap", expects: []string{"ftp PASV", "ftp PASV", "ftp PASV"}, matched: 3},
		// A real session whose server connects back from ephemeral ports:
		// with the default policy (port 20) the two active data
		// connections find no expectation; with ActiveSourcePortAny they do.
		{file: "ftp_ipv4.pcap", expects: []string{"ftp PASV", "ftp PASV", "ftp PORT", "ftp PORT"}, matched: 2, orphan: 2},
		{file: "ftp_ipv4.pcap", cfg: Config{ActiveSourcePortAny: true},
			expects: []string{"ftp PASV", "ftp PASV", "ftp PORT", "ftp PORT"}, matched: 4},
		{file: "ftp-epsv.pcap", expects: []string{"ftp EPSV", "ftp EPSV", "ftp EPSV", "ftp EPSV"}},
		{file: "ftp_ipv6-multiline-reply.pcap", expects: []string{"ftp EPSV"}},
		// In a capture a dropped segment still went through, so the
		// client's next segment comes after bytes the inspector never
		// accepted: it is a gap.
		{file: "ftp_ftp-bounce.pcap", expects: []string{"ftp PORT"},
			drops: []string{"ftp: PORT names 2.2.2.3, not the client 1.1.1.2", reasonGap}},
		{file: "ftp_ftp-auth-tls.pcap", notes: []string{reasonTLS}},
		{file: "ftp_ftp-too-long-command.pcap", expects: []string{"ftp PASV"},
			notes: []string{"ftp: command line longer than 512 bytes discarded"}},
		{file: "ftp_fake-long-commands.pcap",
			notes: []string{"ftp: 227 reply without an address and port, nothing opened", "ftp: malformed PORT argument, nothing opened"}},
	} {
		got := replayCapture(t, tc.file, tc.cfg)
		if !equal(got.expects, tc.expects) || !equal(got.drops, tc.drops) || !equal(got.notes, tc.notes) ||
			got.matched != tc.matched || got.orphaned != tc.orphan {
			t.Errorf("%s %+v:\n got %+v\nwant expects %q drops %q notes %q matched %d orphaned %d",
				tc.file, tc.cfg, got, tc.expects, tc.drops, tc.notes, tc.matched, tc.orphan)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
