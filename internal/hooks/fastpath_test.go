package hooks

// The kernel fast path as the installed rules really behave, against
// segments the kernel's tracker judges. Each test builds its own network
// namespaces (nstest) and never touches the host's ruleset.

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/nfq"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/inspectd/inspectd/internal/packettest"
	"golang.org/x/sys/unix"
)

// seg is what the recorder reads of a queued TCP segment.
type seg struct {
	src, dst  netip.AddrPort
	flags     uint8
	seq       uint32
	payload   string
	offloaded bool // Meta.Offloaded: the connmark bit came with it
}

// recorder accepts every packet, records the TCP segments it is handed,
// and offloads those its policy says (as the engine would).
type recorder struct {
	mu      sync.Mutex
	offload func(s seg) bool
	segs    []seg
}

func parseTCP(p []byte) (seg, bool) {
	var s seg
	var h int
	var src, dst netip.Addr
	switch {
	case len(p) >= 20 && p[0]>>4 == 4 && p[9] == 6:
		h = int(p[0]&0xf) * 4
		src, _ = netip.AddrFromSlice(p[12:16])
		dst, _ = netip.AddrFromSlice(p[16:20])
	case len(p) >= 40 && p[0]>>4 == 6 && p[6] == 6:
		h = 40
		src, _ = netip.AddrFromSlice(p[8:24])
		dst, _ = netip.AddrFromSlice(p[24:40])
	default:
		return s, false
	}
	if len(p) < h+20 {
		return s, false
	}
	t := p[h:]
	s.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(t[0:]))
	s.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(t[2:]))
	s.seq = binary.BigEndian.Uint32(t[4:])
	s.flags = t[13]
	if off := int(t[12]>>4) * 4; off <= len(t) {
		s.payload = string(t[off:])
	}
	return s, true
}

func (r *recorder) Process(p []byte, m inspect.Meta) inspect.Verdict {
	v := inspect.Verdict{Accept: true}
	s, ok := parseTCP(p)
	if !ok {
		return v
	}
	s.offloaded = m.Offloaded
	r.mu.Lock()
	defer r.mu.Unlock()
	r.segs = append(r.segs, s)
	if r.offload != nil && r.offload(s) {
		v.Offload = true
	}
	return v
}

func (r *recorder) Tick(time.Time) {}

func (r *recorder) setPolicy(f func(seg) bool) {
	r.mu.Lock()
	r.offload = f
	r.mu.Unlock()
}

func (r *recorder) find(match func(seg) bool) (seg, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.segs {
		if match(s) {
			return s, true
		}
	}
	return seg{}, false
}

// engineLike offloads as the engine does for an uninspected session:
// from its SYN on, every segment without FIN or RST.
func engineLike(s seg) bool { return s.flags&(packettest.FIN|packettest.RST) == 0 }

// lab is a routed client and server, the hooks installed, and a queue
// reader running the recorder.
type lab struct {
	tp  *nstest.Topology
	rec *recorder
	// accepted receives the server side of each accepted connection.
	accepted chan net.Conn
}

func newLab(t *testing.T, addrs ...string) *lab {
	t.Helper()
	nstest.Enter(t)
	nstest.Need(t, "iptables-restore", "ip6tables-restore", "iptables", "ip6tables")
	l := &lab{tp: nstest.Route(t), rec: &recorder{offload: engineLike}, accepted: make(chan net.Conn, 16)}
	ctx := context.Background()
	if _, err := Install(ctx, Config{Queues: 1, Mark: nfq.DefaultMark}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(context.Background()) })
	q, err := nfq.Open(nfq.Config{Queue: 0, GSO: true})
	if err != nil {
		t.Fatal(err)
	}
	qctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- q.Run(qctx, l.rec) }()
	t.Cleanup(func() { stop(); <-done; q.Close() })
	for _, a := range addrs {
		accepted := nstest.Echo(t, l.tp.Server, net.JoinHostPort(a, "2100"))
		go func() {
			for c := range accepted {
				l.accepted <- c
			}
		}()
	}
	return l
}

func (l *lab) dial(t *testing.T, addr string, localPort int) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	d := net.Dialer{Timeout: 2 * time.Second}
	if localPort != 0 {
		ip := nstest.ClientAddr
		if strings.Contains(addr, ":") {
			ip = nstest.ClientAddr6
		}
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip), Port: localPort}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}
	}
	nstest.In(t, l.tp.Client, func() { c, err = d.Dial("tcp", net.JoinHostPort(addr, "2100")) })
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return c
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("echo write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("echo read: %v", err)
	}
}

// rawSender opens a raw IP socket in namespace ns; send writes a whole IP
// packet built by packettest.
func rawSender(t *testing.T, ns string, v6 bool) func(pkt []byte, dst netip.Addr) {
	t.Helper()
	var fd int
	var err error
	nstest.In(t, ns, func() {
		if v6 {
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
		} else {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(pkt []byte, dst netip.Addr) {
		var sa unix.Sockaddr
		if dst.Is4() {
			sa = &unix.SockaddrInet4{Addr: dst.As4()}
		} else {
			sa = &unix.SockaddrInet6{Addr: dst.As16()}
		}
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			t.Fatalf("raw send: %v", err)
		}
	}
}

// ruleCount returns the packet counter of rule n (1-based) of
// INSPECTD-FWD in the family's filter table.
func ruleCount(t *testing.T, v6 bool, n int) uint64 {
	t.Helper()
	cmd := "iptables"
	if v6 {
		cmd = "ip6tables"
	}
	out := nstest.Run(t, cmd, "-w", "-L", ForwardChain, "-n", "-v", "-x", "--line-numbers")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[0] == strconv.Itoa(n) {
			c, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("%s counters: %q", cmd, line)
			}
			return c
		}
	}
	t.Fatalf("%s: no rule %d in\n%s", cmd, n, out)
	return 0
}

var families4and6 = []struct {
	name           string
	v6             bool
	client, server string
}{
	{"IPv4", false, nstest.ClientAddr, nstest.ServerAddr},
	{"IPv6", true, nstest.ClientAddr6, nstest.ServerAddr6},
}

// TestInvalidSegmentOfOffloadedFlowIsDropped: a segment of an offloaded
// connection that the kernel's own window tracking finds INVALID
// (injected out-of-window data, a blind reset) is dropped in the kernel
// (rule 4), because the engine tracks offloaded sessions liberally. A
// packet the TCP tracker rejects leaves nf_conntrack_in with no conntrack
// attached (skb->_nfct = 0), so the rule cannot test the connmark (an
// earlier version did, and never matched): it must not reach the queue,
// where the engine would accept it without a window check.
func TestInvalidSegmentOfOffloadedFlowIsDropped(t *testing.T) {
	l := newLab(t, nstest.ServerAddr, nstest.ServerAddr6)
	for i, fam := range families4and6 {
		c := l.dial(t, fam.server, 0)
		defer c.Close()
		echo(t, c, "offload me")
		local := netip.MustParseAddrPort(c.LocalAddr().String())
		server := netip.AddrPortFrom(netip.MustParseAddr(fam.server), 2100)
		syn, ok := l.rec.find(func(s seg) bool { return s.src == local && s.flags&(packettest.SYN|packettest.ACK) == packettest.SYN })
		if !ok {
			t.Fatalf("%s: the SYN was not queued", fam.name)
		}
		before := ruleCount(t, fam.v6, 4)
		// 1 GiB beyond the client's initial sequence number: above the
		// upper bound of what the server's window allows (td_maxend), which
		// the kernel's tracker finds INVALID ("SEQ is over upper bound").
		seq := syn.seq + 1<<30 + uint32(i)
		pkt := packettest.TCP(local, server, packettest.ACK|packettest.PSH, seq, 0, []byte("INJECTED"))
		rawSender(t, l.tp.Client, fam.v6)(pkt, server.Addr())
		time.Sleep(300 * time.Millisecond)
		if n := ruleCount(t, fam.v6, 4) - before; n != 1 {
			t.Errorf("%s: the INVALID-drop rule for offloaded connections counted %d packets, want 1", fam.name, n)
		}
		if s, ok := l.rec.find(func(s seg) bool { return s.seq == seq }); ok {
			t.Errorf("%s: an out-of-window segment of an offloaded connection was queued to the engine (offloaded=%v) instead of being dropped by the kernel", fam.name, s.offloaded)
		}
		// The connection itself still works.
		echo(t, c, "still fine")
	}
}

// TestNewSYNClearsOffloadBit: a connection reset by its server leaves
// the kernel's conntrack in CLOSE (10 s), still carrying the offload bit. A new SYN from the client on the same ports does not make
// the kernel create a new entry (it does that only when a FIN was seen or
// the RST came from the SYN's own side: nf_conntrack_proto_tcp.c,
// "Attempt to reopen a closed/aborted connection"); the SYN is IGNOREd
// and the old, marked entry is reused. The engine sees the new SYN and
// decides not to offload the new session (say it must be inspected, or
// the rules changed): without rule 5, which clears the bit on a new SYN,
// the SYN-ACK (rule 2), the ACK and all data (rule 1) of the new
// connection would still go through the fast path, never reaching the
// engine.
func TestNewSYNClearsOffloadBit(t *testing.T) {
	l := newLab(t, nstest.ServerAddr, nstest.ServerAddr6)
	for i, fam := range families4and6 {
		port := 40100 + i
		l.rec.setPolicy(engineLike)
		c := l.dial(t, fam.server, port)
		echo(t, c, "first connection")
		var srv net.Conn
		for srv == nil {
			a := <-l.accepted
			if a.RemoteAddr().(*net.TCPAddr).Port == port {
				srv = a
			}
		}
		// The server resets the connection (SO_LINGER 0).
		srv.(*net.TCPConn).SetLinger(0)
		srv.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: the client did not see the reset: %v", fam.name, err)
		}
		c.Close()
		// The new connection on the same ports must not be offloaded.
		l.rec.setPolicy(func(seg) bool { return false })
		c2 := l.dial(t, fam.server, port)
		defer c2.Close()
		msg := "second connection " + fam.name
		echo(t, c2, msg)
		time.Sleep(100 * time.Millisecond)
		if _, ok := l.rec.find(func(s seg) bool { return strings.Contains(s.payload, msg) }); !ok {
			syn, _ := l.rec.find(func(s seg) bool {
				return s.flags&(packettest.SYN|packettest.ACK) == packettest.SYN && s.src.Port() == uint16(port) && s.offloaded
			})
			out, _ := exec.Command("conntrack", "-L", "-p", "tcp", "--sport", strconv.Itoa(port)).CombinedOutput()
			t.Errorf("%s: the data of a new connection that was never offloaded went through the kernel fast path, not the queue (its SYN arrived with the offload bit: %v); kernel:\n%s",
				fam.name, syn.offloaded, out)
		}
	}
}

// TestFailedInstallKeepsEarlierHooks: after a crash, the earlier run's
// hooks keep the forward path failing closed until the new daemon
// replaces them (docs/LIVE.md). If the new run's install fails for one
// family, the hooks that were there stay (an earlier version removed
// every INSPECTD chain of both families, leaving forwarding open); the
// hooks check of a running daemon (checkHooks -> Install) relies on this
// too. A family that had no hooks is put back as it was.
func TestFailedInstallKeepsEarlierHooks(t *testing.T) {
	nstest.Enter(t)
	nstest.Need(t, "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save")
	ctx := context.Background()
	c := Config{Queues: 1, Mark: nfq.DefaultMark}
	t.Cleanup(func() { Remove(context.Background()) })
	// A failing ip6tables-restore (an incompatible ip6 table, a lock, a
	// missing module...) first on PATH; iptables-restore works.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ip6tables-restore"), []byte("#!/bin/sh\necho 'ip6tables-restore: simulated failure' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("PATH")
	t.Cleanup(func() { os.Setenv("PATH", path) })
	installFailing6 := func() {
		t.Helper()
		os.Setenv("PATH", dir+":"+path)
		defer os.Setenv("PATH", path)
		if _, err := Install(ctx, c); err == nil {
			t.Fatal("Install succeeded with a failing ip6tables-restore")
		}
	}

	// Nothing installed before: the failed install leaves nothing.
	installFailing6()
	if s := nstest.Run(t, "iptables-save") + nstest.Run(t, "ip6tables-save"); strings.Contains(s, Prefix) {
		t.Errorf("a failed first install left hooks:\n%s", s)
	}

	// A crashed run's hooks: they stay.
	if _, err := Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	installFailing6()
	if s := nstest.Run(t, "iptables-save"); !strings.Contains(s, "-A FORWARD -j "+ForwardChain) {
		t.Errorf("after a failed install, IPv4 forwarding has no inspectd hook any more (it had one before):\n%s", s)
	}
	if s := nstest.Run(t, "ip6tables-save"); !strings.Contains(s, "-A FORWARD -j "+ForwardChain) {
		t.Errorf("after a failed install, IPv6 forwarding lost its hook:\n%s", s)
	}
}
