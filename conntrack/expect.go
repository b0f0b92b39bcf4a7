package conntrack

import (
	"container/heap"
	"net/netip"
	"time"
)

// Expectation is a predicted connection that an inspector negotiated: a
// hole for one connection, owned by a parent session, single-use and timed.
type Expectation struct {
	ID      uint64
	Parent  uint64 // the session whose inspector asked for it
	Proto   uint8
	Src     netip.Addr
	SrcPort uint16 // 0 means any source port
	Dst     netip.Addr
	DstPort uint16
	What    string // e.g. "ftp PASV"
	// Inspector is the name of the parent's inspector ("ftp", "tftp").
	Inspector string
	Created   time.Time
	Expires   time.Time
	gone      bool
	heapIndex int      // position of its timer in the table's heap; -1 when none
	owner     *Session // the session Parent names
}

// String describes the expectation for people.
func (e *Expectation) String() string {
	src := e.Src.String()
	if e.SrcPort != 0 {
		src = netip.AddrPortFrom(e.Src, e.SrcPort).String()
	} else if e.Src.Is6() {
		src = "[" + src + "]:any"
	} else {
		src += ":any"
	}
	return ProtoName(e.Proto) + " " + src + " -> " + netip.AddrPortFrom(e.Dst, e.DstPort).String()
}

// Expect adds an expectation owned by session parent at time now, as its
// inspector asked. With x.Replace, the parent's other pending
// expectations go first. An expectation with the same protocol, addresses
// and destination port as a pending one replaces it.
func (t *Table) Expect(parent *Session, x Expect, now time.Time) (*Expectation, error) {
	n := t.advance(now)
	if x.Replace {
		t.dropExpectations(parent.ID)
	}
	k := expectKeyOf(x.Proto, x.Src, x.Dst, x.DstPort)
	if old := t.expects[k]; old != nil {
		t.dropExpectation(old)
	}
	if own := t.byParent[parent.ID]; len(own) >= maxExpectPerParent {
		t.dropExpectation(own[0])
	}
	if len(t.expects) >= t.cfg.Limits.Expectations {
		t.expireSome(n, 64)
		if len(t.expects) >= t.cfg.Limits.Expectations {
			return nil, ErrExpectFull
		}
	}
	h := hostOf(parent.Key.Src)
	if int(t.hosts.expects[h]) >= t.cfg.Limits.ExpectationsPerHost {
		return nil, ErrExpectPerHost
	}
	name := ""
	if parent.Inspector != nil {
		name = parent.Inspector.Name()
	}
	e := &Expectation{
		ID: t.nextID, Parent: parent.ID, Proto: x.Proto,
		Src: x.Src, SrcPort: x.SrcPort, Dst: x.Dst, DstPort: x.DstPort,
		What: x.What, Inspector: name,
		Created: time.Unix(0, n), Expires: time.Unix(0, n+int64(x.Timeout)),
		heapIndex: -1, owner: parent,
	}
	t.nextID += t.cfg.IDStride
	t.expects[k] = e
	t.byParent[parent.ID] = append(t.byParent[parent.ID], e)
	t.hosts.expects[h]++
	t.schedule(e.Expires.UnixNano(), nil, e)
	return e, nil
}

// MatchExpectation finds the expectation that a packet with flow key k
// fulfils at time now, or returns nil. It does not use it up:
// CreateRelated does, once the connection's session exists.
func (t *Table) MatchExpectation(k Key, now time.Time) *Expectation {
	if len(t.expects) == 0 {
		return nil
	}
	n := t.advance(now)
	e := t.expects[expectKeyOf(k.Proto, k.Src, k.Dst, k.DstPort)]
	if e == nil || (e.SrcPort != 0 && e.SrcPort != k.SrcPort) {
		return nil
	}
	if e.Expires.UnixNano() <= n {
		t.dropExpectation(e)
		if t.cfg.OnExpectExpired != nil {
			t.cfg.OnExpectExpired(e)
		}
		return nil
	}
	return e
}

// Expectations calls fn for each pending expectation.
func (t *Table) Expectations(fn func(*Expectation)) {
	for _, e := range t.expects {
		if e.Expires.UnixNano() > t.now {
			fn(e)
		}
	}
}

// CancelExpectations removes the pending expectations owned by the
// session with ID parent.
func (t *Table) CancelExpectations(parent uint64) { t.dropExpectations(parent) }

func (t *Table) dropExpectation(e *Expectation) {
	if e.gone {
		return
	}
	e.gone = true
	t.hosts.decExpects(hostOf(e.owner.Key.Src))
	if e.heapIndex >= 0 && e.heapIndex < len(t.timers) && t.timers[e.heapIndex].e == e {
		heap.Remove(&t.timers, e.heapIndex)
	}
	k := expectKeyOf(e.Proto, e.Src, e.Dst, e.DstPort)
	if t.expects[k] == e {
		delete(t.expects, k)
	}
	own := t.byParent[e.Parent]
	for i, o := range own {
		if o == e {
			own = append(own[:i], own[i+1:]...)
			break
		}
	}
	if len(own) == 0 {
		delete(t.byParent, e.Parent)
	} else {
		t.byParent[e.Parent] = own
	}
}

func (t *Table) dropExpectations(parent uint64) {
	own := t.byParent[parent]
	for len(own) > 0 {
		t.dropExpectation(own[0])
		own = t.byParent[parent]
	}
}
