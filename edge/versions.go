package edge

import (
	"hash/maphash"
	"iter"
)

// versionTable is the in-memory index: the current version of each key,
// in an open-addressing hash table of pointers (linear probing, at most
// 3/4 full), each version holding its own key. A map[objKey]*version
// costs about 84 bytes per key at a million keys (40-byte slots, in
// tables that split in step, so about half empty after a doubling); this
// costs 11 to 21 (BenchmarkStoreOpen1M).
//
// The zero value is an empty table. It is not safe for concurrent use:
// the store reads it under mu and changes it under mu and writeMu.
type versionTable struct {
	seed  maphash.Seed
	slots []*version // nil, or a power of two long
	n     int
}

// minVersionSlots is the size of a table's first allocation.
const minVersionSlots = 64

func (t *versionTable) len() int { return t.n }

func (t *versionTable) home(ns, key string) int {
	return int(maphash.Comparable(t.seed, objKey{ns, key}) & uint64(len(t.slots)-1))
}

// get returns the version of ns/key, or nil.
func (t *versionTable) get(ns, key string) *version {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(ns, key); ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == nil || (v.key == key && v.attrs.ns == ns) {
			return v
		}
	}
}

// set makes v the version of its key, replacing any other.
func (t *versionTable) set(v *version) {
	t.reserve()
	if t.put(v) {
		t.n++
	}
}

// add adds v, whose key the table must not hold: it compares no keys,
// so it does not read the versions it probes past (load adds a million).
func (t *versionTable) add(v *version) {
	t.reserve()
	t.place(v)
	t.n++
}

// reserve makes room for one more version.
func (t *versionTable) reserve() {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]*version, minVersionSlots)
	} else if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
}

// place puts v in the first free slot from its home.
func (t *versionTable) place(v *version) {
	mask := len(t.slots) - 1
	i := t.home(v.attrs.ns, v.key)
	for t.slots[i] != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = v
}

// put places v in its slot, or over the version of the same key; it
// reports whether it took a free slot.
func (t *versionTable) put(v *version) bool {
	mask := len(t.slots) - 1
	for i := t.home(v.attrs.ns, v.key); ; i = (i + 1) & mask {
		switch w := t.slots[i]; {
		case w == nil:
			t.slots[i] = v
			return true
		case w.key == v.key && w.attrs.ns == v.attrs.ns:
			t.slots[i] = v
			return false
		}
	}
}

func (t *versionTable) grow() {
	old := t.slots
	t.slots = make([]*version, 2*len(old))
	for _, v := range old {
		if v != nil {
			t.place(v)
		}
	}
}

// remove forgets the version of ns/key, if any. It moves back the
// versions after it in their run (backward-shift deletion), so lookups
// need no tombstones.
func (t *versionTable) remove(ns, key string) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.home(ns, key)
	for {
		v := t.slots[i]
		if v == nil {
			return
		}
		if v.key == key && v.attrs.ns == ns {
			break
		}
		i = (i + 1) & mask
	}
	t.n--
	// Slot i is free; a later version of the run moves into it unless
	// its home lies cyclically in (i, j], where it would not be found
	// from.
	for j := i; ; {
		j = (j + 1) & mask
		v := t.slots[j]
		if v == nil {
			t.slots[i] = nil
			return
		}
		h := t.home(v.attrs.ns, v.key)
		if (i < j && i < h && h <= j) || (i > j && (h > i || h <= j)) {
			continue
		}
		t.slots[i] = v
		i = j
	}
}

// all yields every version, in no particular order. The table must not
// change meanwhile.
func (t *versionTable) all() iter.Seq[*version] {
	return func(yield func(*version) bool) {
		for _, v := range t.slots {
			if v != nil && !yield(v) {
				return
			}
		}
	}
}
