package nfq

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"golang.org/x/sys/unix"
)

// fakeHandler decides by the UDP payload: "drop…" drops, "offload…"
// accepts with offload, anything else is accepted.
type fakeHandler struct {
	mu      sync.Mutex
	metas   []inspect.Meta
	n       atomic.Int64
	ticks   atomic.Int64
	collect bool
}

func (f *fakeHandler) Process(data []byte, m inspect.Meta) inspect.Verdict {
	f.n.Add(1)
	if f.collect {
		f.mu.Lock()
		f.metas = append(f.metas, m)
		f.mu.Unlock()
	}
	payload := udpPayload(data)
	switch {
	case bytes.HasPrefix(payload, []byte("drop")):
		return inspect.Verdict{Reason: "test drop"}
	case bytes.HasPrefix(payload, []byte("offload")):
		return inspect.Verdict{Accept: true, Offload: true}
	}
	return inspect.Verdict{Accept: true}
}

func (f *fakeHandler) Tick(time.Time) { f.ticks.Add(1) }

// udpPayload returns the UDP payload of a raw IPv4 or IPv6 packet without
// options or extension headers.
func udpPayload(p []byte) []byte {
	if len(p) < 1 {
		return nil
	}
	h := 40
	if p[0]>>4 == 4 {
		h = int(p[0]&0xf) * 4
	}
	if len(p) < h+8 {
		return nil
	}
	return p[h+8:]
}

type namesMap map[uint32]string

func (n namesMap) Name(i uint32) string { return n[i] }

// setupQueue enters a new network namespace, queues local UDP traffic to
// port 9999 (IPv4 and IPv6) to queue 7, and counts marked packets in
// mangle POSTROUTING.
func setupQueue(t *testing.T) {
	t.Helper()
	nstest.Enter(t)
	nstest.Need(t, "iptables-restore", "ip6tables-restore")
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		restore(t, cmd, `*mangle
-A OUTPUT -p udp --dport 9999 -m string --algo bm --string premarked -j MARK --set-mark 0x5
-A POSTROUTING -p udp --dport 9999 -m mark --mark 0x10000000/0x10000000
-A POSTROUTING -p udp --dport 9999 -m mark --mark 0x10000005
COMMIT
*filter
-A OUTPUT -o lo -p udp --dport 9999 -j NFQUEUE --queue-num 7
COMMIT
`)
	}
}

func restore(t *testing.T, cmd, rules string) {
	t.Helper()
	c := exec.Command(cmd, "--noflush")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}

// postroutingCounts returns the packet counters of the two mangle
// POSTROUTING rules of setupQueue: (offload bit set, 0x10000005 exactly).
func postroutingCounts(t *testing.T, save string) (marked, both uint64) {
	t.Helper()
	out := nstest.Run(t, save, "-c", "-t", "mangle")
	re := regexp.MustCompile(`\[(\d+):\d+\] -A POSTROUTING .*--mark (\S+)`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		switch m[2] {
		case "0x10000000/0x10000000":
			marked = n
		case "0x10000005":
			both = n
		}
	}
	return marked, both
}

func startQueue(t *testing.T, cfg Config, h Handler) (*Queue, func()) {
	t.Helper()
	q, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, h) }()
	return q, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not stop after cancel")
		}
		q.Close()
	}
}

// How long a test waits for a packet that must pass, and for one that
// must not.
const (
	passWait  = 5 * time.Second
	blockWait = 300 * time.Millisecond
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	a, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP(network, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg to the listener and reports whether it arrived
// within wait: long for what must pass (a loaded machine may be slow),
// short for what must not.
func exchange(t *testing.T, l *net.UDPConn, msg string, wait time.Duration) bool {
	t.Helper()
	c, err := net.DialUDP(l.LocalAddr().Network(), nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	l.SetReadDeadline(time.Now().Add(wait))
	n, err := l.Read(buf)
	if err != nil {
		return false
	}
	if string(buf[:n]) != msg {
		t.Fatalf("received %q, sent %q", buf[:n], msg)
	}
	return true
}

// TestQueueVerdicts queues real UDP packets through NFQUEUE and checks
// that accept, drop and offload verdicts take effect, for IPv4 and IPv6.
func TestQueueVerdicts(t *testing.T) {
	setupQueue(t)
	h := &fakeHandler{collect: true}
	q, stop := startQueue(t, Config{Queue: 7, GSO: true, Tick: 50 * time.Millisecond,
		Names: namesMap{1: "lo"}}, h)
	for _, tc := range []struct{ network, addr, save string }{
		{"udp4", "127.0.0.1:9999", "iptables-save"},
		{"udp6", "[::1]:9999", "ip6tables-save"},
	} {
		l := listen(t, tc.network, tc.addr)
		if !exchange(t, l, "hello", passWait) {
			t.Errorf("%s: accepted packet did not arrive", tc.network)
		}
		if exchange(t, l, "drop me", blockWait) {
			t.Errorf("%s: dropped packet arrived", tc.network)
		}
		if !exchange(t, l, "offload", passWait) {
			t.Errorf("%s: offloaded packet did not arrive", tc.network)
		}
		if !exchange(t, l, "offload premarked", passWait) {
			t.Errorf("%s: offloaded premarked packet did not arrive", tc.network)
		}
		marked, both := postroutingCounts(t, tc.save)
		if marked != 2 || both != 1 {
			t.Errorf("%s: POSTROUTING saw %d packets with the offload bit, %d with it and the old mark 0x5; want 2 and 1",
				tc.network, marked, both)
		}
	}
	time.Sleep(120 * time.Millisecond)
	stop()
	s := q.Stats()
	want := Stats{Packets: 8, Accepted: 6, Dropped: 2, Offloaded: 4}
	s.Batches = 0
	if s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
	if h.ticks.Load() == 0 {
		t.Error("Tick never ran")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.metas {
		if m.Out != "lo" || m.In != "" || m.Time.IsZero() {
			t.Errorf("Meta = %+v, want Out lo, In empty, a time", m)
		}
	}
}

// TestQueueBurst sends a burst faster than one packet per read and
// checks that every packet gets its own verdict.
func TestQueueBurst(t *testing.T) {
	setupQueue(t)
	h := &fakeHandler{}
	q, stop := startQueue(t, Config{Queue: 7, GSO: true}, h)
	defer stop()
	l := listen(t, "udp4", "127.0.0.1:9999")
	l.SetReadBuffer(4 << 20)
	c, err := net.DialUDP("udp4", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 2000
	for i := range n {
		msg := "accept"
		if i%2 == 1 {
			msg = "drop"
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	got := 0
	l.SetReadDeadline(time.Now().Add(2 * time.Second))
	for got < n/2 {
		m, err := l.Read(buf)
		if err != nil {
			break
		}
		if string(buf[:m]) != "accept" {
			t.Fatalf("received %q", buf[:m])
		}
		got++
	}
	// The last packet is a drop: nothing tells when it was judged but
	// the counters.
	s := q.Stats()
	for deadline := time.Now().Add(2 * time.Second); s.Packets < n && time.Now().Before(deadline); s = q.Stats() {
		time.Sleep(time.Millisecond)
	}
	if got != n/2 || s.Packets != n || s.Dropped != n/2 || s.VerdictErrors != 0 {
		t.Fatalf("received %d of %d accepted packets; stats %+v", got, n/2, s)
	}
	t.Logf("%d packets in %d reads", s.Packets, s.Batches)
}

// TestOpenBusy checks that a queue held by another reader is refused with
// a clear error.
func TestOpenBusy(t *testing.T) {
	nstest.Enter(t)
	q, err := Open(Config{Queue: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	_, err = Open(Config{Queue: 3})
	if err == nil || !strings.Contains(err.Error(), "another") {
		t.Fatalf("second Open of queue 3: %v, want an error naming another reader", err)
	}
}

func TestOpenBadBatch(t *testing.T) {
	if _, err := Open(Config{Batch: maxBatch + 1}); err == nil {
		t.Fatal("Open accepted an oversized batch")
	}
}

// packetMsg builds an NFQNL_MSG_PACKET body as the kernel sends it.
func packetMsg(id, mark, in, out uint32, payload []byte) []byte {
	b := []byte{unix.AF_INET, 0, 0, 7}
	attr := func(typ uint16, v []byte) {
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(attrPacketHdr, []byte{byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id), 0x08, 0x00, 3})
	if mark != 0 {
		attr(attrMark, binary.BigEndian.AppendUint32(nil, mark))
	}
	if in != 0 {
		attr(attrInDev, binary.BigEndian.AppendUint32(nil, in))
	}
	if out != 0 {
		attr(attrOutDev, binary.BigEndian.AppendUint32(nil, out))
	}
	attr(attrPayload, payload)
	return b
}

func TestParsePacket(t *testing.T) {
	payload := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	p := parsePacket(packetMsg(0x01020304, 0x5, 2, 3, payload))
	if !p.hasID || p.cut || p.id != 0x01020304 || p.mark != 5 || p.in != 2 || p.out != 3 || !bytes.Equal(p.payload, payload) {
		t.Fatalf("parsePacket = %+v", p)
	}
	full := packetMsg(9, 0, 0, 0, payload)
	p = parsePacket(full[:len(full)-10])
	if !p.hasID || !p.cut || p.id != 9 {
		t.Fatalf("cut message: parsePacket = %+v, want id 9 and cut", p)
	}
	if p := parsePacket([]byte{2, 0}); p.hasID {
		t.Fatalf("short body: parsePacket = %+v", p)
	}
}

// TestMessageVerdicts checks the verdict messages built for each kind of
// decision, and that the decision path does not allocate.
func TestMessageVerdicts(t *testing.T) {
	q := &Queue{cfg: Config{Queue: 7, Mark: DefaultMark, Names: namesMap{2: "wan0"}}, out: make([]byte, 0, maxVerdictsBytes)}
	h := &fakeHandler{}
	ipUDP := func(s string) []byte {
		p := make([]byte, 28, 28+len(s))
		p[0] = 0x45
		return append(p, s...)
	}
	var s Stats
	q.message(h, time.Unix(1, 0), msgPacket, packetMsg(1, 0, 2, 0, ipUDP("hi")), false, &s)
	q.message(h, time.Unix(1, 0), msgPacket, packetMsg(2, 0, 2, 0, ipUDP("drop")), false, &s)
	q.message(h, time.Unix(1, 0), msgPacket, packetMsg(3, 0x5, 2, 0, ipUDP("offload")), false, &s)
	q.message(h, time.Unix(1, 0), msgPacket, packetMsg(4, DefaultMark, 2, 0, ipUDP("offload")), false, &s)
	q.message(h, time.Unix(1, 0), msgPacket, packetMsg(5, 0, 2, 0, ipUDP("hi")), true, &s)
	want := []struct {
		verdict, id, mark uint32
		withMark          bool
	}{
		{verdictAccept, 1, 0, false},
		{verdictDrop, 2, 0, false},
		{verdictAccept, 3, 0x10000005, true},
		{verdictAccept, 4, 0, false}, // already marked: no mark attribute needed
		{verdictDrop, 5, 0, false},   // truncated: fail closed
	}
	b := q.out
	for i, w := range want {
		n := int(binary.NativeEndian.Uint32(b))
		if typ := binary.NativeEndian.Uint16(b[4:]); typ != msgVerdict {
			t.Fatalf("verdict %d: type %#x", i, typ)
		}
		if queue := binary.BigEndian.Uint16(b[18:]); queue != 7 {
			t.Fatalf("verdict %d: queue %d", i, queue)
		}
		v, id := binary.BigEndian.Uint32(b[24:]), binary.BigEndian.Uint32(b[28:])
		if v != w.verdict || id != w.id || (n == verdictMarkLen) != w.withMark {
			t.Fatalf("verdict %d: verdict %d id %d len %d, want %+v", i, v, id, n, w)
		}
		if w.withMark && binary.BigEndian.Uint32(b[36:]) != w.mark {
			t.Fatalf("verdict %d: mark %#x, want %#x", i, binary.BigEndian.Uint32(b[36:]), w.mark)
		}
		b = b[n:]
	}
	if len(b) != 0 || countMessages(q.out) != 5 {
		t.Fatalf("%d bytes left over, %d messages", len(b), countMessages(q.out))
	}
	if s.Packets != 5 || s.Dropped != 2 || s.Offloaded != 2 || s.Truncated != 1 {
		t.Fatalf("stats %+v", s)
	}

	msg := packetMsg(6, 0, 2, 0, ipUDP("offload"))
	allocs := testing.AllocsPerRun(1000, func() {
		q.out = q.out[:0]
		q.message(h, time.Unix(1, 0), msgPacket, msg, false, &s)
	})
	if allocs != 0 {
		t.Fatalf("deciding a packet allocates %v times", allocs)
	}
}

// FuzzParsePacket checks that no message body makes the parser panic and
// that what it reports lies within the body.
func FuzzParsePacket(f *testing.F) {
	f.Add(packetMsg(1, 2, 3, 4, []byte("payload")))
	f.Add([]byte{2, 0, 0, 7, 4, 0, 1, 0})
	f.Add([]byte{2, 0, 0, 7, 0xff, 0xff, 10, 0, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		p := parsePacket(body)
		if len(p.payload) > len(body) {
			t.Fatalf("payload of %d bytes from a %d-byte body", len(p.payload), len(body))
		}
	})
}
