// Package nfq reads packets from a netfilter queue (NFQUEUE), hands each
// one to a Handler (the inspect engine) and returns its verdict to the
// kernel.
//
// A Queue is opened with github.com/florianl/go-nfqueue/v2, which dials the
// NETLINK_NETFILTER socket; the queue is then configured and read over that
// same socket without the library's per-packet path. go-nfqueue allocates
// for every packet it parses (one heap value per attribute and a copy of
// the payload) and sends one netlink message per verdict in its own
// syscall. Here a worker reads up to Config.Batch packets with one
// recvmmsg(2) into buffers it owns, decides them in place, and returns all
// their verdicts (each with its own verdict and mark) as consecutive
// netlink messages in one write(2): no allocation per packet, and about
// two syscalls per batch instead of three per packet.
//
// One Queue is served by one goroutine (Run), which owns its Handler: the
// kernel's --queue-balance hashes the address pair symmetrically, so both
// directions of a flow meet on the same queue.
package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/inspectd/inspectd/inspect"
	"github.com/inspectd/inspectd/internal/nlattr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DefaultMark is the packet mark bit an offload verdict sets. It lies high
// in the mark, away from the low bits other tools (policy routing, tc)
// commonly use.
const DefaultMark uint32 = 0x10000000

// Defaults of Config fields left zero.
const (
	DefaultMaxQueueLen = 4096
	DefaultBatch       = 32
	DefaultReadBuffer  = 8 << 20
	DefaultTick        = time.Second
)

// maxBatch bounds Config.Batch: each slot holds a buffer of bufSize bytes.
const maxBatch = 256

// bufSize holds the largest packet the kernel copies (copy range 0xffff,
// GSO packets included) plus its netlink headers and attributes.
const bufSize = 0xffff + 4096

// Handler decides packets. Process gets a raw IPv4 or IPv6 packet, which
// is valid only during the call (it aliases the read buffer). Tick is
// called at least every Config.Tick, from the same goroutine, so a
// Handler needs no locking. *inspect.Engine is a Handler.
type Handler interface {
	Process(data []byte, m inspect.Meta) inspect.Verdict
	Tick(now time.Time)
}

// Names maps an interface index to its name; *links.Map is one.
type Names interface {
	Name(index uint32) string
}

// Config configures one queue.
type Config struct {
	// Queue is the queue number the kernel's NFQUEUE rule sends to.
	Queue uint16
	// FailOpen asks the kernel to accept packets instead of dropping them
	// when the queue is full (NFQA_CFG_F_FAIL_OPEN). When no program reads
	// the queue at all, the rule's --queue-bypass decides instead.
	FailOpen bool
	// MaxQueueLen is the number of packets the kernel holds for this
	// queue before it drops (or, with FailOpen, accepts) new ones.
	// 0 means DefaultMaxQueueLen.
	MaxQueueLen uint32
	// GSO asks the kernel for unsegmented GSO packets (NFQA_CFG_F_GSO):
	// one large packet instead of many MTU-sized ones. Their checksums may
	// be incomplete; the engine does not verify checksums.
	GSO bool
	// Mark is the mark bit (or bits) an offload verdict adds to the
	// packet's mark; 0 means DefaultMark.
	Mark uint32
	// Batch is the most packets read with one syscall; 0 means
	// DefaultBatch. At most 256.
	Batch int
	// ReadBuffer is the socket receive buffer in bytes; 0 means
	// DefaultReadBuffer.
	ReadBuffer int
	// Tick is how often Handler.Tick runs; 0 means DefaultTick.
	Tick time.Duration
	// Names maps interface indexes to names for inspect.Meta; nil leaves
	// In and Out empty.
	Names Names
	// OnError, when set, is told of errors that do not stop the queue:
	// verdicts the kernel refused, ENOBUFS. It runs on the worker
	// goroutine and should be quick (log rate-limited).
	OnError func(error)
}

// Stats counts what a queue did. Overflows counts receive-buffer overruns
// reported to the reader (ENOBUFS); with NETLINK_NO_ENOBUFS set, which Open
// does, the kernel counts them instead: see ReadKernelStats.
type Stats struct {
	Packets   uint64 // packets read
	Accepted  uint64 // accepted, offloaded ones included
	Dropped   uint64 // dropped by the handler's verdict
	Offloaded uint64 // accepted with the offload mark
	Batches   uint64 // reads that returned packets
	Truncated uint64 // packets the kernel copied only in part (dropped)
	Malformed uint64 // messages that could not be parsed
	// VerdictErrors counts verdicts the kernel refused or that could not
	// be written.
	VerdictErrors uint64
	Overflows     uint64
}

// Queue is one open netfilter queue.
type Queue struct {
	cfg  Config
	nf   *nfqueue.Nfqueue
	conn *netlink.Conn
	rc   syscall.RawConn

	bufs [][]byte
	iovs []unix.Iovec
	msgs []mmsghdr
	out  []byte // verdicts of the current batch

	// Results of the last readFn/writeFn call.
	got             int
	errno           syscall.Errno
	readFn, writeFn func(fd uintptr) bool

	stopping atomic.Bool

	packets, accepted, dropped, offloaded, batches atomic.Uint64
	truncated, malformed, verdictErrors, overflows atomic.Uint64
}

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Netlink and nfnetlink_queue constants (linux/netfilter/nfnetlink_queue.h).
const (
	subsysQueue      = 3
	msgPacket        = subsysQueue << 8 // NFQNL_MSG_PACKET is 0
	msgVerdict       = subsysQueue<<8 | 1
	msgConfig        = subsysQueue<<8 | 2
	attrPacketHdr    = 1
	attrVerdictHdr   = 2
	attrMark         = 3
	attrInDev        = 5
	attrOutDev       = 6
	attrPayload      = 10
	attrCapLen       = 13
	cfgCmd           = 1
	cfgParams        = 2
	cfgQueueMaxLen   = 3
	cfgMask          = 4
	cfgFlags         = 5
	cfgCmdBind       = 1
	nlmsgHdrLen      = 16
	nfgenHdrLen      = 4
	verdictLen       = nlmsgHdrLen + nfgenHdrLen + 12
	verdictMarkLen   = verdictLen + 8
	managedCfgFlags  = nfqueue.NfQaCfgFlagFailOpen | nfqueue.NfQaCfgFlagGSO
	copyPacket       = nfqueue.NfQnlCopyPacket
	copyRange        = 0xffff
	verdictDrop      = nfqueue.NfDrop
	verdictAccept    = nfqueue.NfAccept
	maxVerdictsBytes = maxBatch * verdictMarkLen
)

// Open binds queue cfg.Queue in the caller's network namespace and
// configures it. It fails when another process holds the queue.
func Open(cfg Config) (*Queue, error) {
	if cfg.Batch < 0 || cfg.Batch > maxBatch {
		return nil, fmt.Errorf("nfq: batch %d out of range 1..%d", cfg.Batch, maxBatch)
	}
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = DefaultMaxQueueLen
	}
	if cfg.Mark == 0 {
		cfg.Mark = DefaultMark
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.ReadBuffer == 0 {
		cfg.ReadBuffer = DefaultReadBuffer
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: cfg.Queue, MaxQueueLen: cfg.MaxQueueLen,
		MaxPacketLen: copyRange, Copymode: copyPacket})
	if err != nil {
		return nil, fmt.Errorf("nfq: queue %d: open netlink socket: %w", cfg.Queue, err)
	}
	q := &Queue{cfg: cfg, nf: nf, conn: nf.Con}
	if err := q.setup(); err != nil {
		nf.Close()
		return nil, fmt.Errorf("nfq: queue %d: %w", cfg.Queue, err)
	}
	q.bufs = make([][]byte, cfg.Batch)
	q.iovs = make([]unix.Iovec, cfg.Batch)
	q.msgs = make([]mmsghdr, cfg.Batch)
	for i := range q.bufs {
		q.bufs[i] = make([]byte, bufSize)
		q.iovs[i].Base = &q.bufs[i][0]
		q.iovs[i].SetLen(bufSize)
		q.msgs[i].hdr.Iov = &q.iovs[i]
		q.msgs[i].hdr.SetIovlen(1)
	}
	q.out = make([]byte, 0, maxVerdictsBytes)
	q.readFn = q.recv
	q.writeFn = q.send
	return q, nil
}

// setup sets the socket options and binds and configures the queue.
func (q *Queue) setup() error {
	if err := q.conn.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("set NETLINK_NO_ENOBUFS: %w", err)
	}
	rc, err := q.conn.SyscallConn()
	if err != nil {
		return err
	}
	q.rc = rc
	// SO_RCVBUFFORCE passes rmem_max (root); fall back to SO_RCVBUF.
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, q.cfg.ReadBuffer)
	}); err != nil {
		return err
	}
	if serr != nil {
		if err := q.conn.SetReadBuffer(q.cfg.ReadBuffer); err != nil {
			return fmt.Errorf("set receive buffer: %w", err)
		}
	}
	var flags uint32
	if q.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	if q.cfg.GSO {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	params := binary.BigEndian.AppendUint32(nil, copyRange)
	params = append(params, copyPacket)
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: cfgCmd, Data: []byte{cfgCmdBind, 0, 0, 0}},
		{Type: cfgParams, Data: params},
		{Type: cfgQueueMaxLen, Data: binary.BigEndian.AppendUint32(nil, q.cfg.MaxQueueLen)},
		{Type: cfgMask, Data: binary.BigEndian.AppendUint32(nil, managedCfgFlags)},
		{Type: cfgFlags, Data: binary.BigEndian.AppendUint32(nil, flags)},
	})
	if err != nil {
		return err
	}
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], q.cfg.Queue)
	_, err = q.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: msgConfig, Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, attrs...),
	})
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("bind: %w (is another inspectd or NFQUEUE reader running on this queue?)", err)
	}
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

// Close unbinds the queue and closes its socket. Packets still queued are
// then handled by the kernel as if no program read the queue.
func (q *Queue) Close() error {
	return q.nf.Close()
}

// Stats returns the queue's counters; safe to call from any goroutine.
func (q *Queue) Stats() Stats {
	return Stats{
		Packets: q.packets.Load(), Accepted: q.accepted.Load(), Dropped: q.dropped.Load(),
		Offloaded: q.offloaded.Load(), Batches: q.batches.Load(), Truncated: q.truncated.Load(),
		Malformed: q.malformed.Load(), VerdictErrors: q.verdictErrors.Load(), Overflows: q.overflows.Load(),
	}
}

// Run reads and decides packets until ctx is done (it then returns nil) or
// the socket fails. A Queue runs at most once; call Close afterwards.
func (q *Queue) Run(ctx context.Context, h Handler) error {
	runDone := make(chan struct{})
	defer close(runDone)
	go func() {
		select {
		case <-ctx.Done():
			// Set the flag first: Run checks it after every deadline
			// it sets, so it cannot miss this one.
			q.stopping.Store(true)
			q.conn.SetReadDeadline(time.Unix(1, 0))
		case <-runDone:
		}
	}()
	next := time.Now().Add(q.cfg.Tick)
	if err := q.conn.SetReadDeadline(next); err != nil {
		return fmt.Errorf("nfq: queue %d: %w", q.cfg.Queue, err)
	}
	for {
		if q.stopping.Load() {
			return nil
		}
		err := q.rc.Read(q.readFn)
		now := time.Now()
		switch {
		case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
			if q.stopping.Load() {
				return nil
			}
			return fmt.Errorf("nfq: queue %d: read: %w", q.cfg.Queue, err)
		case err != nil:
			// Deadline: time to tick, or to stop.
		case q.errno == unix.ENOBUFS:
			q.overflows.Add(1)
			q.report(fmt.Errorf("nfq: queue %d: receive buffer overrun (ENOBUFS)", q.cfg.Queue))
		case q.errno != 0:
			return fmt.Errorf("nfq: queue %d: recvmmsg: %w", q.cfg.Queue, q.errno)
		default:
			q.batch(h, now)
		}
		if !now.Before(next) {
			h.Tick(now)
			next = now.Add(q.cfg.Tick)
			if err := q.conn.SetReadDeadline(next); err != nil {
				return fmt.Errorf("nfq: queue %d: %w", q.cfg.Queue, err)
			}
		}
	}
}

// recv is the RawConn read callback: one recvmmsg without blocking.
//
// recv and send make raw system calls: neither waits for I/O (the socket
// is read with MSG_DONTWAIT, and a netlink message to the kernel is
// handled within the write; only a kernel memory allocation under
// pressure may sleep briefly), so the scheduler need not be told of them;
// told, it may hand the worker's P to another thread during a long
// reinjection. The price: while one runs, its thread cannot stop for the
// garbage collector, which waits for it.
// Measured in the lab's connection-rate benchmark: about 3 % more
// connections per second (BENCHMARKS.md), and the runtime's monitor
// thread went from about 10 % to 3 % of the daemon's samples.
func (q *Queue) recv(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&q.msgs[0])),
			uintptr(len(q.msgs)), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until readable
		}
		q.got, q.errno = int(r), e
		return true
	}
}

// send is the RawConn write callback: all of q.out in one write.
func (q *Queue) send(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&q.out[0])), uintptr(len(q.out)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		q.errno = e
		return true
	}
}

// batch decides the q.got datagrams just read and writes their verdicts.
func (q *Queue) batch(h Handler, now time.Time) {
	q.out = q.out[:0]
	var s Stats
	for i := range q.got {
		data := q.bufs[i][:q.msgs[i].n]
		truncated := q.msgs[i].hdr.Flags&unix.MSG_TRUNC != 0
		for len(data) >= nlmsgHdrLen {
			n := int(binary.NativeEndian.Uint32(data))
			if n > len(data) && truncated {
				n = len(data) // judge what arrived: the packet ID comes first
			}
			if n < nlmsgHdrLen || n > len(data) {
				s.Malformed++
				break
			}
			q.message(h, now, binary.NativeEndian.Uint16(data[4:]), data[nlmsgHdrLen:n], truncated, &s)
			n = (n + 3) &^ 3
			if n >= len(data) {
				break
			}
			data = data[n:]
		}
	}
	// Counted before the verdicts go out: whoever sees a packet the
	// verdicts let through finds it counted.
	q.batches.Add(1)
	q.packets.Add(s.Packets)
	q.accepted.Add(s.Accepted)
	q.dropped.Add(s.Dropped)
	q.offloaded.Add(s.Offloaded)
	q.truncated.Add(s.Truncated)
	q.malformed.Add(s.Malformed)
	q.verdictErrors.Add(s.VerdictErrors)
	if len(q.out) > 0 {
		q.flush()
	}
}

// message handles one netlink message body of type typ.
func (q *Queue) message(h Handler, now time.Time, typ uint16, body []byte, truncated bool, s *Stats) {
	switch typ {
	case unix.NLMSG_ERROR:
		if len(body) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
				s.VerdictErrors++
				q.report(fmt.Errorf("nfq: queue %d: kernel refused a verdict: %w", q.cfg.Queue, syscall.Errno(-e)))
			}
		}
		return
	case msgPacket:
	default:
		return
	}
	p := parsePacket(body)
	if !p.hasID {
		s.Malformed++
		return
	}
	s.Packets++
	if truncated || p.cut || p.capLen > uint32(len(p.payload)) {
		// Fail closed: never judge part of a packet.
		if truncated || p.capLen > uint32(len(p.payload)) {
			s.Truncated++
		} else {
			s.Malformed++
		}
		s.Dropped++
		q.appendVerdict(p.id, verdictDrop, 0, false)
		return
	}
	m := inspect.Meta{Time: now, Offloaded: p.mark&q.cfg.Mark == q.cfg.Mark}
	if q.cfg.Names != nil {
		if p.in != 0 {
			m.In = q.cfg.Names.Name(p.in)
		}
		if p.out != 0 {
			m.Out = q.cfg.Names.Name(p.out)
		}
	}
	v := h.Process(p.payload, m)
	switch {
	case !v.Accept:
		s.Dropped++
		q.appendVerdict(p.id, verdictDrop, 0, false)
	case v.Offload:
		s.Accepted++
		s.Offloaded++
		q.appendVerdict(p.id, verdictAccept, p.mark|q.cfg.Mark, p.mark&q.cfg.Mark != q.cfg.Mark)
	default:
		s.Accepted++
		q.appendVerdict(p.id, verdictAccept, 0, false)
	}
}

// packet is what a queued-packet message says.
type packet struct {
	id, mark, in, out, capLen uint32
	payload                   []byte
	hasID                     bool // the message carried the packet ID
	cut                       bool // an attribute ran past the message's end
}

// parsePacket reads the attributes of an NFQNL_MSG_PACKET body. It reads
// as far as it can: a packet whose ID was read can still get a verdict.
func parsePacket(body []byte) packet {
	var p packet
	if len(body) < nfgenHdrLen {
		p.cut = true
		return p
	}
	p.cut = !nlattr.Each(body[nfgenHdrLen:], func(typ uint16, v []byte) {
		switch typ {
		case attrPacketHdr:
			if len(v) >= 4 {
				p.id, p.hasID = binary.BigEndian.Uint32(v), true
			}
		case attrMark:
			p.mark = nlattr.Uint32(v)
		case attrInDev:
			p.in = nlattr.Uint32(v)
		case attrOutDev:
			p.out = nlattr.Uint32(v)
		case attrCapLen:
			p.capLen = nlattr.Uint32(v)
		case attrPayload:
			p.payload = v
		}
	})
	return p
}

// appendVerdict adds one NFQNL_MSG_VERDICT message to q.out.
func (q *Queue) appendVerdict(id uint32, verdict uint32, mark uint32, withMark bool) {
	n := verdictLen
	if withMark {
		n = verdictMarkLen
	}
	b := q.out[len(q.out) : len(q.out)+n]
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], msgVerdict)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 0)  // sequence
	ne.PutUint32(b[12:], 0) // port id: the kernel
	b[16], b[17] = unix.AF_UNSPEC, unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], q.cfg.Queue)
	ne.PutUint16(b[20:], 12)
	ne.PutUint16(b[22:], attrVerdictHdr)
	binary.BigEndian.PutUint32(b[24:], verdict)
	binary.BigEndian.PutUint32(b[28:], id)
	if withMark {
		ne.PutUint16(b[32:], 8)
		ne.PutUint16(b[34:], attrMark)
		binary.BigEndian.PutUint32(b[36:], mark)
	}
	q.out = q.out[:len(q.out)+n]
}

// flush writes the batch's verdicts in one write(2).
func (q *Queue) flush() {
	q.errno = 0
	err := q.rc.Write(q.writeFn)
	if err == nil && q.errno != 0 {
		err = q.errno
	}
	if err != nil {
		q.verdictErrors.Add(uint64(countMessages(q.out)))
		q.report(fmt.Errorf("nfq: queue %d: write verdicts: %w", q.cfg.Queue, err))
	}
}

// countMessages counts the netlink messages in b.
func countMessages(b []byte) int {
	c := 0
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			break
		}
		c++
		b = b[n:]
	}
	return c
}

// report passes a non-fatal error to cfg.OnError.
func (q *Queue) report(err error) {
	if q.cfg.OnError != nil {
		q.cfg.OnError(err)
	}
}
