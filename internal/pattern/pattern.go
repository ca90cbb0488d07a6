// Package pattern makes large deterministic test bodies without holding
// them in memory.
package pattern

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// Reader yields n pseudo-random bytes: one random 64 KiB block, drawn from
// seed, with each copy stamped with its index, so that no two blocks of a
// body are equal and the same (n, seed) always gives the same bytes.
type Reader struct {
	n, off int64
	block  []byte
	index  int64 // of the block stamped into block, -1 before the first
}

// NewReader returns a Reader of n bytes drawn from seed.
func NewReader(n int64, seed uint64) *Reader {
	r := &Reader{n: n, block: make([]byte, 64<<10), index: -1}
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], seed)
	rand.NewChaCha8(key).Read(r.block)
	return r
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	bs := int64(len(r.block))
	if i := r.off / bs; i != r.index {
		binary.BigEndian.PutUint64(r.block, uint64(i))
		r.index = i
	}
	n := copy(p, r.block[r.off%bs:min(bs, r.off%bs+r.n-r.off)])
	r.off += int64(n)
	return n, nil
}
