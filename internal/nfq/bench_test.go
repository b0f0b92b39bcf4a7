package nfq

import (
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/nfq/nstest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The benchmarks send b.N UDP packets through a real NFQUEUE rule on
// loopback (at most window in flight, so the kernel queue never
// overflows) and accept each one. BenchmarkQueue measures this package,
// BenchmarkGoNfqueue the library's own Register/SetVerdict loop; ns/op and
// allocs/op are per packet, sender included (the sender does not
// allocate).

const window = 128

// sendUDP returns a function that sends one small datagram to port 9999
// without allocating.
func sendUDP(b *testing.B) func() {
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9999})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() { // drain, so the receiver's buffer never fills
		buf := make([]byte, 2048)
		for {
			if _, err := l.Read(buf); err != nil {
				return
			}
		}
	}()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9999, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	msg := []byte("benchmark payload")
	return func() {
		if _, err := unix.Write(fd, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// pump sends b.N packets, keeping at most window unanswered, and waits
// until done counts them all.
func pump(b *testing.B, send func(), done *atomic.Int64) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := range int64(b.N) {
		for i-done.Load() >= window {
			runtime.Gosched()
		}
		send()
	}
	deadline := time.Now().Add(10 * time.Second)
	for done.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d packets decided", done.Load(), b.N)
		}
		runtime.Gosched()
	}
	b.StopTimer()
}

func benchSetup(b *testing.B) {
	nstest.Enter(b)
	nstest.Need(b, "iptables")
	nstest.Run(b, "iptables", "-A", "OUTPUT", "-o", "lo", "-p", "udp", "--dport", "9999", "-j", "NFQUEUE", "--queue-num", "7")
}

type countHandler struct{ n *atomic.Int64 }

func (c countHandler) Process([]byte, inspect.Meta) inspect.Verdict {
	c.n.Add(1)
	return inspect.Verdict{Accept: true}
}

func (countHandler) Tick(time.Time) {}

func BenchmarkQueue(b *testing.B) {
	benchSetup(b)
	var done atomic.Int64
	q, err := Open(Config{Queue: 7, GSO: true})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx, countHandler{&done})
	pump(b, sendUDP(b), &done)
	s := q.Stats()
	b.ReportMetric(float64(s.Packets)/float64(s.Batches), "packets/read")
}

func BenchmarkGoNfqueue(b *testing.B) {
	benchSetup(b)
	var done atomic.Int64
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: 7, MaxPacketLen: 0xffff, MaxQueueLen: 4096,
		Copymode: nfqueue.NfQnlCopyPacket, Flags: nfqueue.NfQaCfgFlagGSO})
	if err != nil {
		b.Fatal(err)
	}
	defer nf.Close()
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = nf.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
		if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
			b.Error(err)
		}
		done.Add(1)
		return 0
	}, func(err error) int {
		if ctx.Err() == nil {
			b.Error(err)
		}
		return 1
	})
	if err != nil {
		b.Fatal(err)
	}
	pump(b, sendUDP(b), &done)
}
