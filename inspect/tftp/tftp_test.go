package tftp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
)

var (
	client = netip.MustParseAddr("198.51.100.2")
	server = netip.MustParseAddr("192.0.2.10")
	sess   = &conntrack.Session{ID: 7, Key: conntrack.Key{Src: client, Dst: server, SrcPort: 40001, DstPort: 69, Proto: decode.ProtoUDP}}
)

func request(in *Inspector, d conntrack.Dir, payload string) conntrack.Result {
	k := sess.Key
	if d == conntrack.Reply {
		k = k.Reverse()
	}
	return in.Inspect(&conntrack.Context{Session: sess, Dir: d},
		&decode.Packet{Src: k.Src, Dst: k.Dst, SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: decode.ProtoUDP, Payload: []byte(payload)})
}

func TestRequests(t *testing.T) {
	in := New(Config{})
	for _, tc := range []struct{ payload, what string }{
		{"\x00\x01c2900.bin\x00octet\x00", "tftp RRQ"},
		{"\x00\x01c2900.bin\x00OCTET\x00", "tftp RRQ"},
		{"\x00\x02running-config\x00netascii\x00", "tftp WRQ"},
		{"\x00\x02user\x00mail\x00", "tftp WRQ"},
		{"\x00\x01f\x00octet\x00blksize\x001428\x00tsize\x000\x00timeout\x001\x00", "tftp RRQ"},
		{"\x00\x01f\x00octet\x00x\x00\x00", "tftp RRQ"}, // empty option value
	} {
		r := request(in, conntrack.Original, tc.payload)
		want := conntrack.Expect{Proto: decode.ProtoUDP, Src: server, Dst: client, DstPort: 40001,
			Timeout: DefaultExpectTimeout, Replace: true, What: tc.what}
		if r.Drop || !r.HasExpect || r.Expect != want || !r.NoOffload {
			t.Errorf("%q: got %+v, want %+v", tc.payload, r, want)
		}
	}
}

func TestMalformed(t *testing.T) {
	in := New(Config{})
	for _, tc := range []struct{ payload, why string }{
		{"", "tftp: packet too short for a request"},
		{"\x00", "tftp: packet too short for a request"},
		{"\x00\x01", "tftp: file name not NUL-terminated"},
		{"\x00\x01c2900.bin", "tftp: file name not NUL-terminated"},
		{"\x00\x01\x00octet\x00", "tftp: empty file name"},
		{"\x00\x01f\x00octet", "tftp: transfer mode missing or not NUL-terminated"},
		{"\x00\x01f\x00", "tftp: transfer mode missing or not NUL-terminated"},
		{"\x00\x01f\x00binary\x00", "tftp: unknown transfer mode"},
		{"\x00\x01f\x00\x00", "tftp: unknown transfer mode"},
		{"\x00\x01f\x00octet\x00blksize", "tftp: option not NUL-terminated"},
		{"\x00\x01f\x00octet\x00blksize\x00", "tftp: option without a NUL-terminated value"},
		{"\x00\x01f\x00octet\x00blksize\x001428", "tftp: option without a NUL-terminated value"},
		{"\x00\x01f\x00octet\x00\x001428\x00", "tftp: empty option name"},
		{"\x00\x03\x00\x01data", "tftp: DATA is not a request"},
		{"\x00\x04\x00\x01", "tftp: ACK is not a request"},
		{"\x00\x05\x00\x01oops\x00", "tftp: ERROR is not a request"},
		{"\x00\x06blksize\x001428\x00", "tftp: OACK is not a request"},
		{"\x00\x00f\x00octet\x00", "tftp: unknown opcode 0"},
		{"\x01\x01f\x00octet\x00", "tftp: unknown opcode 257"},
		{"\x00\x01" + strings.Repeat("a", 510) + "\x00octet\x00", "tftp: request longer than 512 bytes"},
	} {
		r := request(in, conntrack.Original, tc.payload)
		if !r.Drop || r.HasExpect || r.Reason != tc.why {
			t.Errorf("%q: got %+v, want drop %q", tc.payload, r, tc.why)
		}
	}
}

func TestServerOnRequestSession(t *testing.T) {
	// Whatever the server sends from port 69 opens nothing.
	in := New(Config{})
	for _, payload := range []string{"\x00\x05\x00\x01File not found\x00", "\x00\x01f\x00octet\x00", "junk"} {
		if r := request(in, conntrack.Reply, payload); r != (conntrack.Result{NoOffload: true}) {
			t.Errorf("%q: got %+v", payload, r)
		}
	}
	// Not UDP: nothing.
	r := in.Inspect(&conntrack.Context{Session: sess}, &decode.Packet{Proto: decode.ProtoTCP, Payload: []byte("\x00\x01f\x00octet\x00")})
	if r != (conntrack.Result{NoOffload: true}) {
		t.Errorf("tcp: got %+v", r)
	}
}

func TestConfig(t *testing.T) {
	if err := (Config{ExpectTimeout: -time.Second}).Validate(); err == nil {
		t.Error("negative timeout accepted")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Error(err)
	}
	in := New(Config{ExpectTimeout: 5 * time.Second})
	if r := request(in, conntrack.Original, "\x00\x01f\x00octet\x00"); r.Expect.Timeout != 5*time.Second {
		t.Errorf("timeout %v", r.Expect.Timeout)
	}
	if in.Name() != "tftp" {
		t.Error(in.Name())
	}
}

func TestAllocs(t *testing.T) {
	in := New(Config{})
	ctx := &conntrack.Context{Session: sess}
	p := &decode.Packet{Proto: decode.ProtoUDP, Payload: []byte("\x00\x01c2900.bin\x00octet\x00blksize\x001428\x00")}
	if n := testing.AllocsPerRun(100, func() { in.Inspect(ctx, p) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// FuzzRequest checks that no request panics the inspector and that an
// expectation only ever names the session's server and client.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"\x00\x01c2900.bin\x00octet\x00", "\x00\x02f\x00netascii\x00", "\x00\x01f\x00octet\x00blksize\x001428\x00",
		"\x00\x03\x00\x01data", "\x00\x01\x00octet\x00", "\x00\x01f", "",
	} {
		f.Add([]byte(s))
	}
	in := New(Config{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := in.Inspect(&conntrack.Context{Session: sess}, &decode.Packet{Proto: decode.ProtoUDP, Payload: b})
		if r.Drop == r.HasExpect || (r.Drop && r.Reason == "") {
			t.Fatalf("got %+v", r)
		}
		if r.HasExpect {
			e := r.Expect
			if e.Src != server || e.Dst != client || e.DstPort != 40001 || e.SrcPort != 0 || e.Proto != decode.ProtoUDP || len(b) < 4 || b[0] != 0 || (b[1] != 1 && b[1] != 2) {
				t.Fatalf("%q: expectation %+v", b, e)
			}
		}
	})
}
