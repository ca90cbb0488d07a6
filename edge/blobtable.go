package edge

import (
	"hash/maphash"
	"iter"

	"github.com/geocdn/geocdn/internal/wire"
)

// blobTable holds the store's blob records by digest, in an
// open-addressing hash table of pointers like versionTable (linear
// probing, at most 3/4 full, backward-shift deletion), each record holding
// its own digest. A map[wire.Digest]*blob costs about 90 bytes per blob
// at a million (40-byte slots, about half empty after a doubling); this
// costs 11 to 21 (BenchmarkStoreOpen1M).
//
// The zero value is an empty table. It is not safe for concurrent use:
// the store reads it under mu (or writeMu) and changes it under both.
type blobTable struct {
	seed  maphash.Seed
	slots []*blob // nil, or a power of two long
	n     int
}

// minBlobSlots is the size of a table's first allocation.
const minBlobSlots = 64

func (t *blobTable) len() int { return t.n }

func (t *blobTable) home(d *wire.Digest) int {
	return int(maphash.Bytes(t.seed, d[:]) & uint64(len(t.slots)-1))
}

// get returns the record of d, or nil.
func (t *blobTable) get(d wire.Digest) *blob {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(&d); ; i = (i + 1) & mask {
		b := t.slots[i]
		if b == nil || b.digest == d {
			return b
		}
	}
}

// set makes b the record of b.digest, replacing any other.
func (t *blobTable) set(b *blob) {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]*blob, minBlobSlots)
	} else if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	for i := t.home(&b.digest); ; i = (i + 1) & mask {
		switch c := t.slots[i]; {
		case c == nil:
			t.slots[i] = b
			t.n++
			return
		case c.digest == b.digest:
			t.slots[i] = b
			return
		}
	}
}

func (t *blobTable) grow() {
	old := t.slots
	t.slots = make([]*blob, 2*len(old))
	mask := len(t.slots) - 1
	for _, b := range old {
		if b == nil {
			continue
		}
		i := t.home(&b.digest)
		for t.slots[i] != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = b
	}
}

// delete forgets the record of d, if any. It moves back the records
// after it in their run (backward-shift deletion), so lookups need no
// tombstones.
func (t *blobTable) delete(d wire.Digest) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := t.home(&d)
	for {
		b := t.slots[i]
		if b == nil {
			return
		}
		if b.digest == d {
			break
		}
		i = (i + 1) & mask
	}
	t.n--
	// Slot i is free; a later record of the run moves into it unless its
	// home lies cyclically in (i, j], where it would not be found from.
	for j := i; ; {
		j = (j + 1) & mask
		b := t.slots[j]
		if b == nil {
			t.slots[i] = nil
			return
		}
		h := t.home(&b.digest)
		if (i < j && i < h && h <= j) || (i > j && (h > i || h <= j)) {
			continue
		}
		t.slots[i] = b
		i = j
	}
}

// all yields every record, in no particular order. The table must not
// change meanwhile.
func (t *blobTable) all() iter.Seq[*blob] {
	return func(yield func(*blob) bool) {
		for _, b := range t.slots {
			if b != nil && !yield(b) {
				return
			}
		}
	}
}
