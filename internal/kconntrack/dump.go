package kconntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/inspectd/inspectd/conntrack"
	"github.com/inspectd/inspectd/internal/decode"
	"github.com/inspectd/inspectd/internal/nlattr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Flow is what Dump reports of one kernel conntrack entry.
type Flow struct {
	// Key is the entry's original direction and Reply its reply
	// direction, as the kernel tracks them: they differ by more than
	// their order when the connection is NATed. Ports are set for TCP and
	// UDP only. Forward gives the connection as inspectd sees it.
	Key, Reply conntrack.Key
	// Mark is the connmark.
	Mark uint32
	// Timeout is the time left before the kernel expires the entry, in
	// seconds; the kernel resets it on every packet.
	Timeout uint32
	// TCPState is the kernel's TCP tracking state (TCPEstablished and
	// so on); 0 for other protocols.
	TCPState uint8
	// Packets and Bytes count the traffic of the original and the reply
	// direction. The kernel counts only while its accounting is on
	// (sysctl net.netfilter.nf_conntrack_acct, see EnableAccounting);
	// Counted is false for an entry without counters.
	Packets, Bytes [2]uint64
	Counted        bool
}

// Forward returns the connection in its original direction as a
// firewall on the forward path sees it: after destination NAT (done in
// PREROUTING), before source NAT (done in POSTROUTING). Its source is the
// original source and its destination the reply's source. Without NAT it
// is Key.
func (f Flow) Forward() conntrack.Key { return forward(f.Key, f.Reply) }

// forward returns the original direction orig of a connection whose reply
// direction is reply, as the forward path sees it: the destination is the
// reply's source (when known).
func forward(orig, reply conntrack.Key) conntrack.Key {
	if reply.Src.IsValid() {
		orig.Dst, orig.DstPort = reply.Src, reply.SrcPort
	}
	return orig
}

// Kernel TCP conntrack states (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
const (
	TCPEstablished = 3
	TCPFinWait     = 4
	TCPLastAck     = 6
	TCPTimeWait    = 7
	TCPClose       = 8
)

// HandshakeDone reports whether a kernel TCP state is established or
// closing: the handshake finished and the teardown did not. A
// simultaneous open's SYN_SENT2 (9) is not.
func HandshakeDone(state uint8) bool {
	return TCPEstablished <= state && state <= TCPLastAck
}

// TeardownSeen reports whether a kernel TCP state is one of the
// teardown's: a FIN or a reset was seen.
func TeardownSeen(state uint8) bool {
	return TCPFinWait <= state && state <= TCPClose
}

// ctnetlink attribute types (include/uapi/linux/netfilter/nfnetlink_conntrack.h)
// that vishvananda/netlink/nl does not name.
const (
	ctaMarkMask        = 21
	ctaTupleIP         = 1
	ctaTupleProto      = 2
	ctaIPv4Src         = 1
	ctaIPv4Dst         = 2
	ctaIPv6Src         = 3
	ctaIPv6Dst         = 4
	ctaProtoNum        = 1
	ctaProtoSrcPort    = 2
	ctaProtoDstPort    = 3
	ctaProtoinfoTCP    = 1
	ctaProtoinfoTCPSt  = 1
	ctaCountersPackets = 1
	ctaCountersBytes   = 2
	ctaCounters32Pkts  = 3
	ctaCounters32Bytes = 4
	nlaFNested         = 0x8000
	nfgenHdrLen        = 4
	conntrackGetOp     = uint16(netlink.ConntrackTable)<<8 | nl.IPCTNL_MSG_CT_GET
)

// Table reads the kernel's conntrack table over a netlink socket of its
// own, opened in the network namespace of the thread that opened it.
type Table struct {
	sockets map[int]*nl.SocketHandle
}

// Open opens a conntrack netlink socket in the calling thread's network
// namespace.
func Open() (*Table, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("kconntrack: conntrack netlink socket: %w", err)
	}
	if err := s.SetReceiveTimeout(&unix.Timeval{Sec: 5}); err != nil {
		s.Close()
		return nil, fmt.Errorf("kconntrack: conntrack netlink socket: %w", err)
	}
	return &Table{sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: s}}}, nil
}

// Close closes the socket.
func (t *Table) Close() {
	t.sockets[unix.NETLINK_NETFILTER].Close()
}

// Dump lists the kernel's conntrack table (IPv4 and IPv6) and calls fn
// with each entry; fn must not use t (the socket is busy until Dump
// returns). With mark non-zero, the kernel sends only the entries whose
// connmark has all the bits of mark set, so a table of many unrelated
// connections costs little to read. Dump parses the messages as they
// come, without allocating per entry. A dump the kernel marks interrupted
// (the table changed under it) is not an error: fn has seen what it
// could.
func (t *Table) Dump(mark uint32, fn func(Flow)) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: conntrackGetOp,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP},
		Sockets: t.sockets,
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	if mark != 0 {
		req.AddData(nl.NewRtAttr(nl.CTA_MARK, binary.BigEndian.AppendUint32(nil, mark)))
		req.AddData(nl.NewRtAttr(ctaMarkMask, binary.BigEndian.AppendUint32(nil, mark)))
	}
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
		if f, ok := parseFlow(msg); ok {
			fn(f)
		}
		return true
	})
	if err != nil && !errors.Is(err, nl.ErrDumpInterrupted) {
		return fmt.Errorf("kconntrack: dump: %w", err)
	}
	return nil
}

// Get returns the kernel's entry for TCP or UDP flow k, looked up in both
// directions; false when the kernel has none (or k is another protocol).
func (t *Table) Get(k conntrack.Key) (Flow, bool, error) {
	if k.Proto != decode.ProtoTCP && k.Proto != decode.ProtoUDP {
		return Flow{}, false, nil
	}
	for _, key := range []conntrack.Key{k, k.Reverse()} {
		f, ok, err := t.get(key)
		if err != nil || ok {
			return f, ok, err
		}
	}
	return Flow{}, false, nil
}

// get asks the kernel for the entry whose original tuple is k.
func (t *Table) get(k conntrack.Key) (Flow, bool, error) {
	fam, src, dst := uint8(unix.AF_INET), ctaIPv4Src, ctaIPv4Dst
	if !k.Src.Is4() {
		fam, src, dst = unix.AF_INET6, ctaIPv6Src, ctaIPv6Dst
	}
	// The kernel marks its answer multi-part without ending it; the
	// acknowledgement asked for ends it.
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: conntrackGetOp, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK},
		Sockets:  t.sockets,
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: fam, Version: nl.NFNETLINK_V0})
	tuple := nl.NewRtAttr(nl.CTA_TUPLE_ORIG|nlaFNested, nil)
	ip := tuple.AddRtAttr(ctaTupleIP|nlaFNested, nil)
	ip.AddRtAttr(src, k.Src.AsSlice())
	ip.AddRtAttr(dst, k.Dst.AsSlice())
	proto := tuple.AddRtAttr(ctaTupleProto|nlaFNested, nil)
	proto.AddRtAttr(ctaProtoNum, []byte{k.Proto})
	proto.AddRtAttr(ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, k.SrcPort))
	proto.AddRtAttr(ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, k.DstPort))
	req.AddData(tuple)
	var f Flow
	found := false
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
		f, found = parseFlow(msg)
		return true
	})
	if errors.Is(err, unix.ENOENT) {
		return Flow{}, false, nil
	}
	if err != nil {
		return Flow{}, false, fmt.Errorf("kconntrack: get %v: %w", k, err)
	}
	return f, found, nil
}

// parseFlow reads one IPCTNL_MSG_CT_NEW message body (nfgenmsg and
// attributes). It is false when the body has no usable original tuple.
func parseFlow(msg []byte) (Flow, bool) {
	var f Flow
	if len(msg) < nfgenHdrLen {
		return f, false
	}
	ok := false
	nlattr.Each(msg[nfgenHdrLen:], func(typ uint16, v []byte) {
		switch typ {
		case nl.CTA_TUPLE_ORIG:
			f.Key, ok = parseTuple(v)
		case nl.CTA_TUPLE_REPLY:
			if r, rok := parseTuple(v); rok {
				f.Reply = r
			}
		case nl.CTA_MARK:
			f.Mark = nlattr.Uint32(v)
		case nl.CTA_TIMEOUT:
			f.Timeout = nlattr.Uint32(v)
		case nl.CTA_COUNTERS_ORIG, nl.CTA_COUNTERS_REPLY:
			d := 0
			if typ == nl.CTA_COUNTERS_REPLY {
				d = 1
			}
			f.Counted = true
			nlattr.Each(v, func(typ uint16, v []byte) {
				switch typ {
				case ctaCountersPackets, ctaCounters32Pkts:
					f.Packets[d] = beUint(v)
				case ctaCountersBytes, ctaCounters32Bytes:
					f.Bytes[d] = beUint(v)
				}
			})
		case nl.CTA_PROTOINFO:
			nlattr.Each(v, func(typ uint16, v []byte) {
				if typ == ctaProtoinfoTCP {
					nlattr.Each(v, func(typ uint16, v []byte) {
						if typ == ctaProtoinfoTCPSt && len(v) >= 1 {
							f.TCPState = v[0]
						}
					})
				}
			})
		}
	})
	return f, ok
}

// parseTuple reads a nested CTA_TUPLE_* attribute.
func parseTuple(b []byte) (conntrack.Key, bool) {
	var k conntrack.Key
	var sport, dport uint16
	nlattr.Each(b, func(typ uint16, v []byte) {
		switch typ {
		case ctaTupleIP:
			nlattr.Each(v, func(typ uint16, v []byte) {
				switch typ {
				case ctaIPv4Src, ctaIPv6Src:
					k.Src, _ = netip.AddrFromSlice(v)
				case ctaIPv4Dst, ctaIPv6Dst:
					k.Dst, _ = netip.AddrFromSlice(v)
				}
			})
		case ctaTupleProto:
			nlattr.Each(v, func(typ uint16, v []byte) {
				switch typ {
				case ctaProtoNum:
					if len(v) >= 1 {
						k.Proto = v[0]
					}
				case ctaProtoSrcPort:
					sport = be16(v)
				case ctaProtoDstPort:
					dport = be16(v)
				}
			})
		}
	})
	if k.Proto == decode.ProtoTCP || k.Proto == decode.ProtoUDP {
		k.SrcPort, k.DstPort = sport, dport
	}
	k.Src, k.Dst = k.Src.Unmap(), k.Dst.Unmap()
	return k, k.Src.IsValid() && k.Dst.IsValid()
}

// beUint reads a big-endian counter of 4 or 8 bytes.
func beUint(v []byte) uint64 {
	switch len(v) {
	case 8:
		return binary.BigEndian.Uint64(v)
	case 4:
		return uint64(binary.BigEndian.Uint32(v))
	}
	return 0
}

func be16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}
