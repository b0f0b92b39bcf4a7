package conntrack

import "hash/maphash"

// index finds sessions by flow key in either direction. It is an
// open-addressing hash table of session pointers with linear probing,
// hashed on the canonical key (both endpoints in a fixed order, so one slot
// serves both directions): one 8-byte slot per place, the key itself
// living in the session, so a tracked session costs the table 8 bytes per
// slot instead of a map entry's key and value. The
// slots are allocated for the session limit up front (at most half full),
// so the table never grows, and never pauses, on the packet path. The hash
// is seeded per table, so nobody can aim a flood of flows at one probe
// chain.
type index struct {
	slots []*Session
	mask  uint64
	n     int
	seed  maphash.Seed
}

func newIndex(limit int) index {
	x := index{seed: maphash.MakeSeed()}
	x.resize(limit)
	return x
}

// resize makes room for limit sessions, rehashing what is there; it runs
// only when a reload raises the session limit.
func (x *index) resize(limit int) {
	size := 16
	for size < 2*limit {
		size <<= 1
	}
	if size <= len(x.slots) {
		return
	}
	old := x.slots
	x.slots, x.mask, x.n = make([]*Session, size), uint64(size-1), 0
	for _, s := range old {
		if s != nil {
			x.insert(s)
		}
	}
}

func (x *index) home(k *flowKey) uint64 { return maphash.Comparable(x.seed, *k) & x.mask }

// get returns the session of flow k (in either direction), or nil.
func (x *index) get(k Key) *Session {
	fk := canonical(k)
	r := k.Reverse()
	for i := x.home(&fk); ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s == nil {
			return nil
		}
		if s.Key == k || s.Key == r {
			return s
		}
	}
}

// insert adds s, whose key must not be in the index. The caller keeps the
// number of sessions below the limit the index was sized for.
func (x *index) insert(s *Session) {
	fk := canonical(s.Key)
	i := x.home(&fk)
	for x.slots[i] != nil {
		i = (i + 1) & x.mask
	}
	x.slots[i] = s
	x.n++
}

// remove takes s out, shifting back the entries after it that would
// otherwise become unreachable (no tombstones).
func (x *index) remove(s *Session) bool {
	fk := canonical(s.Key)
	i := x.home(&fk)
	for x.slots[i] != s {
		if x.slots[i] == nil {
			return false
		}
		i = (i + 1) & x.mask
	}
	x.slots[i] = nil
	x.n--
	for j := (i + 1) & x.mask; x.slots[j] != nil; j = (j + 1) & x.mask {
		fj := canonical(x.slots[j].Key)
		h := x.home(&fj)
		// Move slots[j] into the hole at i when its home is not in the
		// cyclic range (i, j].
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.slots[i], x.slots[j] = x.slots[j], nil
			i = j
		}
	}
	return true
}

// each calls fn for every session in the index.
func (x *index) each(fn func(*Session)) {
	for _, s := range x.slots {
		if s != nil {
			fn(s)
		}
	}
}
