package wire

import (
	"github.com/quic-go/quic-go/quicvarint"
)

// Anti-entropy and snapshot catch-up run on a bidirectional stream the
// edge opens on the data connection. The edge sends requests, one at a
// time, and reads each answer to its end before the next:
//
//   - TreeRequest → TreeNodes: hashes of nodes of the origin's hash tree
//     (internal/aetree), root first, then only children of nodes that
//     differ.
//   - LeafRequest → LeafTuples frames, then ResyncEnd: the (namespace, key,
//     LSN, digest) of every current version in the leaves asked for.
//   - EntryRequest → LogEntry frames, then ResyncEnd: the full current
//     entries of the keys asked for (keys the origin lacks are left out).
//   - SnapshotRequest → LogEntry frames, then ResyncEnd: every current
//     entry in a range of leaves, for catch-up past the retained log.
//
// The edge ends with a ResyncReport and its FIN. Every answer carries the
// origin's last LSN at the moment it was read (in TreeNodes or ResyncEnd),
// so the edge can tell a real difference from an entry still on its way
// down the log. The origin also sends ResyncNow on the control stream to
// start a resync at an operator's request, and LogGap on the log stream
// when the edge's watermark is older than the log's first retained entry.

// Limits of the anti-entropy frames.
const (
	// MaxTreeNodes bounds the nodes of one TreeRequest or TreeNodes.
	MaxTreeNodes = 4096
	// MaxLeaves bounds the leaves of one LeafRequest.
	MaxLeaves = 4096
	// MaxTuples bounds the tuples of one LeafTuples frame.
	MaxTuples = 4096
	// MaxEntryRequest bounds the keys of one EntryRequest.
	MaxEntryRequest = 1024
	// TreeLeaves is the number of leaves of the hash tree, the bound of
	// leaf numbers (aetree.Leaves).
	TreeLeaves = 1 << 16
	// TreeDepth is the tree's deepest level (aetree.Depth).
	TreeDepth = 4
)

// NodeHash is the hash of one node of the hash tree.
type NodeHash [16]byte

// Tuple is a current version as anti-entropy compares it.
type Tuple struct {
	Namespace string
	Key       string
	LSN       uint64
	Digest    Digest
}

// ObjectRef names an object.
type ObjectRef struct {
	Namespace string
	Key       string
}

// TreeRequest asks for the hashes of Indices at Level (0 is the root).
//
// Layout: level (1 byte) | count | count × index (varint).
type TreeRequest struct {
	Level   uint8
	Indices []uint32
}

// TreeNodes answers a TreeRequest: one hash per index asked, in order,
// read at the origin's LSN.
//
// Layout: lsn | count | count × 16 bytes.
type TreeNodes struct {
	LSN    uint64
	Hashes []NodeHash
}

// LeafRequest asks for the tuples of the given leaves.
//
// Layout: count | count × leaf (varint).
type LeafRequest struct {
	Leaves []uint32
}

// LeafTuples carries some of the tuples a LeafRequest asked for.
//
// Layout: count | count × (namespace | key | lsn | digest).
type LeafTuples struct {
	Tuples []Tuple
}

// EntryRequest asks for the full current entries of Objects.
//
// Layout: count | count × (namespace | key).
type EntryRequest struct {
	Objects []ObjectRef
}

// SnapshotRequest asks for every current entry whose leaf is in
// [FromLeaf, ToLeaf).
//
// Layout: from (varint) | to (varint).
type SnapshotRequest struct {
	FromLeaf, ToLeaf uint32
}

// ResyncEnd ends an answer of several frames. LSN is the origin's last
// LSN when the answer was read; a non-empty Error says the request failed
// and what came before it is incomplete.
//
// Layout: lsn | error (len+bytes, cut at MaxStringLen).
type ResyncEnd struct {
	LSN   uint64
	Error string
}

// ResyncReport is the edge's account of one resync, sent before its FIN;
// the origin keeps the latest per edge for operators.
//
// Layout: id | duration ms | missing | stale | extra | metadata | corrupt
// | repaired | failed | entries | bytes | snapshot (1 byte) | error.
type ResyncReport struct {
	// ID is the ResyncNow that asked for it, 0 for a periodic one.
	ID             uint64
	DurationMillis uint64
	// Differences by kind: owed content not held; held under an older
	// version; held but no longer current at the origin; index entry
	// wrong or lost; blob on disk that failed its digest.
	Missing, Stale, Extra, Metadata, Corrupt uint64
	// Repaired and Failed count repairs carried out and not.
	Repaired, Failed uint64
	// Entries and Bytes count what the exchange moved, both ways, not
	// counting content.
	Entries, Bytes uint64
	// Snapshot reports a catch-up by snapshot rather than a comparison.
	Snapshot bool
	Error    string
}

// ResyncNow asks the edge, on the control stream, to resync at once.
//
// Layout: id.
type ResyncNow struct {
	ID uint64
}

// LogGap tells the edge, on the log stream, that the log no longer reaches
// back to its watermark: entries up to FirstLSN-1 were compacted, and the
// edge must catch up by snapshot. The origin closes the log stream after it.
//
// Layout: first lsn.
type LogGap struct {
	FirstLSN uint64
}

func (TreeRequest) Type() FrameType { return FrameTreeRequest }

func (r TreeRequest) Len() int {
	n := 1 + varintLen(uint64(len(r.Indices)))
	for _, i := range r.Indices {
		n += varintLen(uint64(i))
	}
	return n
}

func (r TreeRequest) Append(b []byte) []byte {
	b = append(b, r.Level)
	b = quicvarint.Append(b, uint64(len(r.Indices)))
	for _, i := range r.Indices {
		b = quicvarint.Append(b, uint64(i))
	}
	return b
}

func parseTreeRequest(b []byte) (TreeRequest, error) {
	d := decoder{msg: "tree request", b: b}
	r := TreeRequest{Level: d.uint8("level")}
	if d.err == nil && r.Level > TreeDepth {
		d.failf("level %d beyond %d", r.Level, TreeDepth)
	}
	n := d.count("indices", MaxTreeNodes)
	if n > 0 {
		r.Indices = make([]uint32, n)
		limit := uint64(1) << (4 * uint64(r.Level))
		for i := range r.Indices {
			v := d.varint("index")
			if d.err == nil && v >= limit {
				d.failf("index %d beyond level %d's %d nodes", v, r.Level, limit)
			}
			r.Indices[i] = uint32(v)
		}
	}
	if err := d.finish(); err != nil {
		return TreeRequest{}, err
	}
	return r, nil
}

func (TreeNodes) Type() FrameType { return FrameTreeNodes }

func (t TreeNodes) Len() int {
	return varintLen(t.LSN) + varintLen(uint64(len(t.Hashes))) + 16*len(t.Hashes)
}

func (t TreeNodes) Append(b []byte) []byte {
	b = quicvarint.Append(b, t.LSN)
	b = quicvarint.Append(b, uint64(len(t.Hashes)))
	for _, h := range t.Hashes {
		b = append(b, h[:]...)
	}
	return b
}

func parseTreeNodes(b []byte) (TreeNodes, error) {
	d := decoder{msg: "tree nodes", b: b}
	t := TreeNodes{LSN: d.varint("lsn")}
	if n := d.count("hashes", MaxTreeNodes); n > 0 {
		t.Hashes = make([]NodeHash, n)
		for i := range t.Hashes {
			copy(t.Hashes[i][:], d.bytes("hash", 16))
		}
	}
	if err := d.finish(); err != nil {
		return TreeNodes{}, err
	}
	return t, nil
}

func (LeafRequest) Type() FrameType { return FrameLeafRequest }

func (r LeafRequest) Len() int {
	n := varintLen(uint64(len(r.Leaves)))
	for _, l := range r.Leaves {
		n += varintLen(uint64(l))
	}
	return n
}

func (r LeafRequest) Append(b []byte) []byte {
	b = quicvarint.Append(b, uint64(len(r.Leaves)))
	for _, l := range r.Leaves {
		b = quicvarint.Append(b, uint64(l))
	}
	return b
}

func parseLeafRequest(b []byte) (LeafRequest, error) {
	d := decoder{msg: "leaf request", b: b}
	var r LeafRequest
	if n := d.count("leaves", MaxLeaves); n > 0 {
		r.Leaves = make([]uint32, n)
		for i := range r.Leaves {
			r.Leaves[i] = d.leaf("leaf")
		}
	}
	if err := d.finish(); err != nil {
		return LeafRequest{}, err
	}
	return r, nil
}

// leaf reads a leaf number, refusing one past the last leaf.
func (d *decoder) leaf(field string) uint32 {
	v := d.varint(field)
	if d.err == nil && v >= TreeLeaves {
		d.failf("%s %d beyond the %d leaves", field, v, TreeLeaves)
	}
	return uint32(v)
}

func (LeafTuples) Type() FrameType { return FrameLeafTuples }

func (t LeafTuples) Len() int {
	n := varintLen(uint64(len(t.Tuples)))
	for _, tu := range t.Tuples {
		n += TupleLen(tu)
	}
	return n
}

// TupleLen is the encoded size of one tuple in LeafTuples, for senders
// that fill frames up to a size.
func TupleLen(t Tuple) int {
	return stringLen(t.Namespace) + stringLen(t.Key) + varintLen(t.LSN) + DigestSize
}

func (t LeafTuples) Append(b []byte) []byte {
	b = quicvarint.Append(b, uint64(len(t.Tuples)))
	for _, tu := range t.Tuples {
		b = appendString(b, tu.Namespace)
		b = appendString(b, tu.Key)
		b = quicvarint.Append(b, tu.LSN)
		b = append(b, tu.Digest[:]...)
	}
	return b
}

func parseLeafTuples(b []byte) (LeafTuples, error) {
	d := decoder{msg: "leaf tuples", b: b}
	var t LeafTuples
	if n := d.count("tuples", MaxTuples); n > 0 {
		t.Tuples = make([]Tuple, n)
		for i := range t.Tuples {
			t.Tuples[i] = Tuple{Namespace: d.namespace(), Key: d.key(), LSN: d.varint("lsn"), Digest: d.digest("digest")}
		}
	}
	if err := d.finish(); err != nil {
		return LeafTuples{}, err
	}
	return t, nil
}

func (EntryRequest) Type() FrameType { return FrameEntryRequest }

func (r EntryRequest) Len() int {
	n := varintLen(uint64(len(r.Objects)))
	for _, o := range r.Objects {
		n += stringLen(o.Namespace) + stringLen(o.Key)
	}
	return n
}

func (r EntryRequest) Append(b []byte) []byte {
	b = quicvarint.Append(b, uint64(len(r.Objects)))
	for _, o := range r.Objects {
		b = appendString(b, o.Namespace)
		b = appendString(b, o.Key)
	}
	return b
}

func parseEntryRequest(b []byte) (EntryRequest, error) {
	d := decoder{msg: "entry request", b: b}
	var r EntryRequest
	if n := d.count("objects", MaxEntryRequest); n > 0 {
		r.Objects = make([]ObjectRef, n)
		for i := range r.Objects {
			r.Objects[i] = ObjectRef{Namespace: d.namespace(), Key: d.key()}
		}
	}
	if err := d.finish(); err != nil {
		return EntryRequest{}, err
	}
	return r, nil
}

func (SnapshotRequest) Type() FrameType { return FrameSnapshotRequest }

func (r SnapshotRequest) Len() int {
	return varintLen(uint64(r.FromLeaf)) + varintLen(uint64(r.ToLeaf))
}

func (r SnapshotRequest) Append(b []byte) []byte {
	b = quicvarint.Append(b, uint64(r.FromLeaf))
	return quicvarint.Append(b, uint64(r.ToLeaf))
}

func parseSnapshotRequest(b []byte) (SnapshotRequest, error) {
	d := decoder{msg: "snapshot request", b: b}
	r := SnapshotRequest{FromLeaf: uint32(d.varint("from")), ToLeaf: uint32(d.varint("to"))}
	if d.err == nil && (r.FromLeaf >= r.ToLeaf || r.ToLeaf > TreeLeaves) {
		d.failf("leaf range [%d, %d) is empty or beyond the %d leaves", r.FromLeaf, r.ToLeaf, TreeLeaves)
	}
	if err := d.finish(); err != nil {
		return SnapshotRequest{}, err
	}
	return r, nil
}

func (ResyncEnd) Type() FrameType { return FrameResyncEnd }

func (e ResyncEnd) Len() int { return varintLen(e.LSN) + stringLen(truncReason(e.Error)) }

func (e ResyncEnd) Append(b []byte) []byte {
	b = quicvarint.Append(b, e.LSN)
	return appendString(b, truncReason(e.Error))
}

func parseResyncEnd(b []byte) (ResyncEnd, error) {
	d := decoder{msg: "resync end", b: b}
	e := ResyncEnd{LSN: d.varint("lsn"), Error: d.string("error", MaxStringLen)}
	if err := d.finish(); err != nil {
		return ResyncEnd{}, err
	}
	return e, nil
}

func (ResyncReport) Type() FrameType { return FrameResyncReport }

func (r ResyncReport) counts() []uint64 {
	return []uint64{r.ID, r.DurationMillis, r.Missing, r.Stale, r.Extra, r.Metadata, r.Corrupt, r.Repaired, r.Failed, r.Entries, r.Bytes}
}

func (r ResyncReport) Len() int {
	n := 1 + stringLen(truncReason(r.Error))
	for _, c := range r.counts() {
		n += varintLen(c)
	}
	return n
}

func (r ResyncReport) Append(b []byte) []byte {
	for _, c := range r.counts() {
		b = quicvarint.Append(b, c)
	}
	b = appendBool(b, r.Snapshot)
	return appendString(b, truncReason(r.Error))
}

func parseResyncReport(b []byte) (ResyncReport, error) {
	d := decoder{msg: "resync report", b: b}
	r := ResyncReport{
		ID: d.varint("id"), DurationMillis: d.varint("duration"),
		Missing: d.varint("missing"), Stale: d.varint("stale"), Extra: d.varint("extra"),
		Metadata: d.varint("metadata"), Corrupt: d.varint("corrupt"),
		Repaired: d.varint("repaired"), Failed: d.varint("failed"),
		Entries: d.varint("entries"), Bytes: d.varint("bytes"),
		Snapshot: d.bool("snapshot"),
		Error:    d.string("error", MaxStringLen),
	}
	if err := d.finish(); err != nil {
		return ResyncReport{}, err
	}
	return r, nil
}

func (ResyncNow) Type() FrameType { return FrameResyncNow }

func (r ResyncNow) Len() int { return varintLen(r.ID) }

func (r ResyncNow) Append(b []byte) []byte { return quicvarint.Append(b, r.ID) }

func parseResyncNow(b []byte) (ResyncNow, error) {
	d := decoder{msg: "resync now", b: b}
	r := ResyncNow{ID: d.varint("id")}
	if err := d.finish(); err != nil {
		return ResyncNow{}, err
	}
	return r, nil
}

func (LogGap) Type() FrameType { return FrameLogGap }

func (g LogGap) Len() int { return varintLen(g.FirstLSN) }

func (g LogGap) Append(b []byte) []byte { return quicvarint.Append(b, g.FirstLSN) }

func parseLogGap(b []byte) (LogGap, error) {
	d := decoder{msg: "log gap", b: b}
	g := LogGap{FirstLSN: d.varint("first lsn")}
	if err := d.finish(); err != nil {
		return LogGap{}, err
	}
	return g, nil
}
