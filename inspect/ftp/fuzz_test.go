package ftp

import (
	"bytes"
	"testing"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

// segments encodes a conversation for FuzzStream: each segment is a
// control byte (bit 0: from the server; bit 1: urgent; bits 2-3: 0 or 3
// in order, 1 resend earlier bytes, 2 skip ahead), a length byte and the
// payload.
func segments(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		ctl := byte(i & 1)
		b = append(b, ctl, byte(len(p)))
		b = append(b, p...)
	}
	return b
}

// FuzzStream feeds an arbitrary conversation, cut into arbitrary
// segments, to an Inspector: it must never panic, keep its buffers
// bounded, leave no trace of a dropped segment, and only ever expect a
// connection between the session's client and server.
func FuzzStream(f *testing.F) {
	f.Add(false, segments("", "220 hi\r\n", "USER a\r\n", "331 p\r\n", "PASS b\r\n", "230 ok\r\n",
		"PASV\r\n", "227 Entering Passive Mode (192,0,2,10,4,1)\r\n", "PORT 198,51,100,2,4,2\r\n", "200 ok\r\n",
		"EPSV\r\n", "229 (|||1027|)\r\n", "EPRT |1|198.51.100.2|1028|\r\n", "200 ok\r\n"))
	f.Add(false, segments("", "220 hi\r\n", "PORT 203,0,113,9,0,80\r\n", "", "PO", "", "RT 198,51,100,2,0,22\r\n", "",
		"\xff\xf4\xff\xf2ABOR\r\n", "226 ok\r\n", "AUTH TLS\r\n", "234 go\r\n"))
	f.Add(true, segments("", "", "EPRT |2|2001:db8:1::2|5000|\r\n", "200 ok\r\n", "EPSV\r\n", "229 (|||5001|)\r\n",
		"PASV\r\n", "227 (192,0,2,10,4,1)\r\n", "\xff\xfb\x18\xff\xfa\x18\x00\xff\xf0EPSV ALL\r\n", "200-x\r\n227 (1,2,3,4,5,6)\r\n200 y\r\n"))
	f.Add(false, []byte("\x00\x05PASV\r\x05\x04\n227\x09\x10 (192,0,2,10,4,1)\r\n\x01\x30x"))
	f.Fuzz(func(t *testing.T, v6 bool, data []byte) {
		client, server := client4, server4
		if v6 {
			client, server = client6, server6
		}
		in := New(Config{})
		sess := &conntrack.Session{ID: 1, Key: conntrack.Key{Src: client, Dst: server, SrcPort: 40000, DstPort: 21, Proto: decode.ProtoTCP}}
		next := [2]uint32{1001, 5001}
		for d := range conntrack.Dir(2) {
			k := sess.Key
			if d == conntrack.Reply {
				k = k.Reverse()
			}
			in.Inspect(&conntrack.Context{Session: sess, Dir: d}, &decode.Packet{Src: k.Src, Dst: k.Dst,
				SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: decode.ProtoTCP, Seq: next[d] - 1, Flags: decode.TCPSyn})
		}
		for len(data) >= 2 {
			ctl, n := data[0], int(data[1])
			data = data[2:]
			n = min(n, len(data))
			payload := data[:n]
			data = data[n:]
			d := conntrack.Dir(ctl & 1)
			seq := next[d]
			switch ctl >> 2 & 3 {
			case 1:
				seq -= uint32(ctl >> 4)
			case 2:
				seq += uint32(ctl>>4) + 1
			}
			flags := decode.TCPAck | decode.TCPPsh
			if ctl&2 != 0 {
				flags |= decode.TCPUrg
			}
			k := sess.Key
			if d == conntrack.Reply {
				k = k.Reverse()
			}
			p := &decode.Packet{Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: decode.ProtoTCP,
				Seq: seq, Flags: flags, Urgent: uint16(len(payload)), Payload: payload}
			before := in.st
			line := bytes.Clone(in.line[d][:in.st.dir[d].n])
			r := in.Inspect(&conntrack.Context{Session: sess, Dir: d}, p)
			if !r.NoOffload {
				t.Fatal("NoOffload not set")
			}
			for i := range 2 {
				if in.st.dir[i].n > len(in.line[i]) || len(in.line[i]) != DefaultMaxLine {
					t.Fatalf("direction %d buffers %d bytes", i, in.st.dir[i].n)
				}
			}
			if r.Drop {
				if r.Reason == "" || r.HasExpect || r.Cancel {
					t.Fatalf("drop %+v", r)
				}
				after := in.st
				after.dir[d].ahead = before.dir[d].ahead
				if after != before || !bytes.Equal(line, in.line[d][:in.st.dir[d].n]) {
					t.Fatalf("drop (%s) changed the state", r.Reason)
				}
			} else if s := uint32(seq + uint32(len(payload)) - next[d]); int32(s) > 0 {
				next[d] += s
			}
			if r.HasExpect {
				e := r.Expect
				passive := e.Src == client && e.Dst == server && e.SrcPort == 0
				active := e.Src == server && e.Dst == client && (e.SrcPort == 20)
				if (!passive && !active) || e.DstPort < DefaultMinDataPort || e.Proto != decode.ProtoTCP || !e.Replace {
					t.Fatalf("expectation %+v", e)
				}
			}
		}
	})
}

// TestFuzzSeedBounce checks that the fuzz seeds reach the refusals.
func TestFuzzSeedBounce(t *testing.T) {
	c := newConv(t, Config{}, client4, server4)
	c.login()
	wantDrop(t, c.send(cli, "PORT "+commas(other4)+",4,1\r\n"), "ftp: PORT names 203.0.113.9, not the client 198.51.100.2")
}

func commas(a interface{ As4() [4]byte }) string {
	b := a.As4()
	return itoa(int(b[0])) + "," + itoa(int(b[1])) + "," + itoa(int(b[2])) + "," + itoa(int(b[3]))
}
