// Package aetree is the hash tree anti-entropy compares: a fixed-shape
// Merkle tree over the set of (namespace, key, version LSN, digest) tuples a
// node holds as current, in the manner of Riak's TicTac trees.
//
// A tuple lands in one of Leaves leaf buckets by a stable hash of its
// namespace and key, and contributes a 128-bit hash of the whole tuple. A
// node's hash is the XOR of the hashes of every tuple below it, so adding
// or removing a tuple updates one leaf and its ancestors in Depth+1 XORs:
// the tree is kept current on every apply and never rebuilt by a scan on
// the serving path. Two nodes that hold the same set have equal roots;
// where they differ, comparing children level by level narrows the
// differences to leaf buckets, and only those buckets' tuples are listed.
//
// Nodes file their current versions on disk under keys that start with the
// leaf number (Key), so a leaf's tuples are a short cursor scan away
// (ScanLeaves) and the in-memory cost is the tree alone: about 1.1 MB.
package aetree

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"go.etcd.io/bbolt"
)

const (
	// Fanout is the number of children of every interior node.
	Fanout = 16
	// Depth is the number of levels below the root; leaves are at Depth.
	Depth = 4
	// Leaves is the number of leaf buckets, Fanout^Depth. At a million
	// objects a leaf holds about 15 tuples, so a hundred differences
	// list about 1,500 tuples: a fraction of a percent of the catalog.
	Leaves = 1 << 16
)

// DigestSize is the size of a content digest (sha256).
const DigestSize = 32

// Hash is a node's (or a tuple's) hash. Tuples' hashes combine by XOR.
type Hash [16]byte

// IsZero reports whether h is the hash of an empty set.
func (h Hash) IsZero() bool { return h == Hash{} }

func (h *Hash) xor(o Hash) {
	a := binary.LittleEndian.Uint64(h[:8]) ^ binary.LittleEndian.Uint64(o[:8])
	b := binary.LittleEndian.Uint64(h[8:]) ^ binary.LittleEndian.Uint64(o[8:])
	binary.LittleEndian.PutUint64(h[:8], a)
	binary.LittleEndian.PutUint64(h[8:], b)
}

// Tuple is one current version as anti-entropy sees it.
type Tuple struct {
	Namespace, Key string
	LSN            uint64
	Digest         [DigestSize]byte
}

// Leaf returns the leaf bucket of namespace/key: FNV-1a of namespace, NUL,
// key, folded to 16 bits. Stable across processes and releases; changing
// it would make every tree of an older node differ.
func Leaf(ns, key string) uint32 {
	h := fnv.New64a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(key))
	v := h.Sum64()
	return uint32((v ^ v>>16 ^ v>>32 ^ v>>48) & (Leaves - 1))
}

// TupleHash is the hash a tuple contributes: the first 16 bytes of the
// sha256 of namespace, NUL, key, NUL, LSN (8 bytes big-endian), digest. A
// cryptographic hash, so a publisher cannot choose contents whose
// contributions cancel.
func TupleHash(t Tuple) Hash {
	h := sha256.New()
	var buf [8]byte
	h.Write([]byte(t.Namespace))
	h.Write([]byte{0})
	h.Write([]byte(t.Key))
	h.Write([]byte{0})
	binary.BigEndian.PutUint64(buf[:], t.LSN)
	h.Write(buf[:])
	h.Write(t.Digest[:])
	var sum [sha256.Size]byte
	var out Hash
	copy(out[:], h.Sum(sum[:0]))
	return out
}

// levelSize is the number of nodes at level l.
func levelSize(l int) int { return 1 << (4 * l) }

// Tree is the in-memory hash tree. Safe for concurrent use.
type Tree struct {
	mu     sync.RWMutex
	levels [Depth + 1][]Hash
	n      int
}

// New returns the tree of the empty set.
func New() *Tree {
	t := &Tree{}
	for l := range t.levels {
		t.levels[l] = make([]Hash, levelSize(l))
	}
	return t
}

// Add adds a tuple to the set. Adding a tuple twice cancels it out, so
// callers add a tuple once and Remove exactly what they added.
func (t *Tree) Add(tu Tuple) { t.toggle(Leaf(tu.Namespace, tu.Key), TupleHash(tu), 1) }

// Remove removes a tuple added before.
func (t *Tree) Remove(tu Tuple) { t.toggle(Leaf(tu.Namespace, tu.Key), TupleHash(tu), -1) }

func (t *Tree) toggle(leaf uint32, h Hash, dn int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := leaf
	for l := Depth; l >= 0; l-- {
		t.levels[l][i].xor(h)
		i /= Fanout
	}
	t.n += dn
}

// Len is the number of tuples added and not removed.
func (t *Tree) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Root is the hash of the whole set.
func (t *Tree) Root() Hash { return t.Node(0, 0) }

// Node returns the hash of node index at level. Out-of-range arguments
// return the zero hash; ValidNode tells them apart.
func (t *Tree) Node(level int, index uint32) Hash {
	if !ValidNode(level, index) {
		return Hash{}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.levels[level][index]
}

// Nodes appends the hashes of the given nodes of one level to dst.
func (t *Tree) Nodes(dst []Hash, level int, indices []uint32) ([]Hash, error) {
	for _, i := range indices {
		if !ValidNode(level, i) {
			return dst, fmt.Errorf("aetree: no node %d at level %d", i, level)
		}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, i := range indices {
		dst = append(dst, t.levels[level][i])
	}
	return dst, nil
}

// ValidNode reports whether level and index name a node of the tree.
func ValidNode(level int, index uint32) bool {
	return level >= 0 && level <= Depth && int(index) < levelSize(level)
}

// Children returns the indices at level+1 of node index's children.
func Children(index uint32) []uint32 {
	out := make([]uint32, Fanout)
	for i := range out {
		out[i] = index*Fanout + uint32(i)
	}
	return out
}

// Diff returns the indices among ours that hold a different hash in
// theirs; ours and theirs are hashes of the same nodes, in order.
func Diff(indices []uint32, ours, theirs []Hash) ([]uint32, error) {
	if len(ours) != len(indices) || len(theirs) != len(indices) {
		return nil, fmt.Errorf("aetree: %d nodes asked, %d and %d hashes compared", len(indices), len(ours), len(theirs))
	}
	var out []uint32
	for i, idx := range indices {
		if ours[i] != theirs[i] {
			out = append(out, idx)
		}
	}
	return out, nil
}

// Keys on disk. A node keeps its current versions in a bbolt bucket whose
// keys are Key(namespace, key): the leaf (2 bytes big-endian), namespace,
// NUL, key. A leaf's versions are then one short cursor scan (ScanLeaf),
// and a range of leaves is a contiguous range of keys.

// Key is the bbolt key of namespace/key.
func Key(ns, key string) []byte {
	k := make([]byte, 2, 2+len(ns)+1+len(key))
	binary.BigEndian.PutUint16(k, uint16(Leaf(ns, key)))
	k = append(k, ns...)
	k = append(k, 0)
	return append(k, key...)
}

// ErrBadKey reports a bbolt key that Key did not make.
var ErrBadKey = errors.New("aetree: malformed key")

// SplitKey returns the namespace and key of a key made by Key, checking
// that it is filed under its leaf.
func SplitKey(k []byte) (ns, key string, err error) {
	if len(k) < 3 {
		return "", "", fmt.Errorf("%w: %d bytes", ErrBadKey, len(k))
	}
	id := k[2:]
	i := bytes.IndexByte(id, 0)
	if i < 0 {
		return "", "", fmt.Errorf("%w: no separator in %q", ErrBadKey, id)
	}
	ns, key = string(id[:i]), string(id[i+1:])
	if uint32(binary.BigEndian.Uint16(k)) != Leaf(ns, key) {
		return "", "", fmt.Errorf("%w: %q filed under the wrong leaf", ErrBadKey, id)
	}
	return ns, key, nil
}

// ScanLeaves calls fn with every key and value of bucket b whose leaf is in
// [from, to), in key order, until fn returns an error.
func ScanLeaves(b *bbolt.Bucket, from, to uint32, fn func(k, v []byte) error) error {
	if from > to || to > Leaves {
		return fmt.Errorf("aetree: no leaf range [%d, %d)", from, to)
	}
	var start [2]byte
	binary.BigEndian.PutUint16(start[:], uint16(from))
	c := b.Cursor()
	for k, v := c.Seek(start[:]); k != nil && len(k) >= 2 && uint32(binary.BigEndian.Uint16(k)) < to; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// MaxNodesPerRequest bounds the nodes one Descend request names, so that
// a request and its answer stay well under a wire frame's limit.
const MaxNodesPerRequest = 4096

// Remote answers, for a peer's tree, the hashes of the given nodes of one
// level, in order.
type Remote func(level int, indices []uint32) ([]Hash, error)

// Descend compares the local tree with a peer's, root first, then only the
// children of nodes that differ, and returns the leaves that differ, in
// increasing order. Equal roots cost one call. The trees may move while
// Descend runs; a node that changed between levels is compared again at
// the next one, and a difference that appeared after its ancestor was
// compared is left for the next exchange.
func Descend(local *Tree, remote Remote) ([]uint32, error) {
	frontier := []uint32{0}
	for level := 0; level <= Depth && len(frontier) > 0; level++ {
		var next []uint32
		for start := 0; start < len(frontier); start += MaxNodesPerRequest {
			part := frontier[start:min(start+MaxNodesPerRequest, len(frontier))]
			theirs, err := remote(level, part)
			if err != nil {
				return nil, err
			}
			ours, err := local.Nodes(nil, level, part)
			if err != nil {
				return nil, err
			}
			diff, err := Diff(part, ours, theirs)
			if err != nil {
				return nil, err
			}
			if level == Depth {
				next = append(next, diff...)
				continue
			}
			for _, d := range diff {
				next = append(next, Children(d)...)
			}
		}
		if level == Depth {
			return next, nil
		}
		frontier = next
	}
	return nil, nil
}
