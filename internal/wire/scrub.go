package wire

import "github.com/quic-go/quic-go/quicvarint"

// ScrubProgress is an edge's account of its blob scrubber (internal/scrub),
// sent on the control stream when the edge connects, when a pass starts
// and ends, and at most every 10 seconds in between while something
// changed. The origin keeps the latest per edge for operators; nothing
// depends on it, so a lost one only delays what `geocdn status` shows.
//
// Layout: pass | running (1 byte) | bytes | total bytes | blobs
// | total blobs | corrupt | read errors | last full pass
// | last full pass corrupt | last full pass end (unix ms) | corrupt total
// (varints).
//
// A decoder refuses counts that contradict each other (see Validate), so
// what the origin shows can be taken at its word.
type ScrubProgress struct {
	// Pass is the number of the pass running, or of the last one when
	// none is, from 1; 0 before the first.
	Pass    uint64
	Running bool
	// Bytes of TotalBytes, and Blobs of TotalBlobs, is how far Pass has
	// got. The totals are 0 until the pass has listed its blobs, and for
	// a store with none.
	Bytes, TotalBytes uint64
	Blobs, TotalBlobs uint64
	// Corrupt and ReadErrors are the blobs Pass found not matching their
	// digest, and could not read (a read error is never counted corrupt).
	Corrupt, ReadErrors uint64
	// LastFullPass is the number of the last pass that got through its
	// whole list, LastFullPassCorrupt the corrupt blobs it found, and
	// LastFullPassMillis when it ended (unix milliseconds); all 0 before
	// one has.
	LastFullPass        uint64
	LastFullPassCorrupt uint64
	LastFullPassMillis  uint64
	// CorruptTotal counts corrupt findings since the edge started: a blob
	// that stays corrupt counts once per pass.
	CorruptTotal uint64
}

func (ScrubProgress) Type() FrameType { return FrameScrubProgress }

// counts lists the varints in layout order, Running aside.
func (p ScrubProgress) counts() []uint64 {
	return []uint64{p.Bytes, p.TotalBytes, p.Blobs, p.TotalBlobs, p.Corrupt, p.ReadErrors,
		p.LastFullPass, p.LastFullPassCorrupt, p.LastFullPassMillis, p.CorruptTotal}
}

func (p ScrubProgress) Len() int {
	n := varintLen(p.Pass) + 1
	for _, c := range p.counts() {
		n += varintLen(c)
	}
	return n
}

func (p ScrubProgress) Append(b []byte) []byte {
	b = quicvarint.Append(b, p.Pass)
	b = appendBool(b, p.Running)
	for _, c := range p.counts() {
		b = quicvarint.Append(b, c)
	}
	return b
}

// Validate reports, as ErrMalformed, counts that contradict each other: a
// running pass 0, a last full pass after the current one, progress beyond
// its total, more corrupt and unreadable blobs than blobs checked, corrupt
// counts beyond CorruptTotal, or figures of a last full pass there was
// none of. A sender checks before sending, since the origin drops the
// connection of an edge that sends a malformed frame.
func (p ScrubProgress) Validate() error {
	d := decoder{msg: "scrub progress"}
	p.check(&d)
	return d.err
}

func (p ScrubProgress) check(d *decoder) {
	switch {
	case p.Running && p.Pass == 0:
		d.failf("running pass 0")
	case p.LastFullPass > p.Pass:
		d.failf("last full pass %d after pass %d", p.LastFullPass, p.Pass)
	case p.Bytes > p.TotalBytes:
		d.failf("bytes: %d of %d", p.Bytes, p.TotalBytes)
	case p.Blobs > p.TotalBlobs:
		d.failf("blobs: %d of %d", p.Blobs, p.TotalBlobs)
	case p.Corrupt > p.Blobs || p.ReadErrors > p.Blobs-p.Corrupt:
		d.failf("%d corrupt and %d unreadable of %d blobs checked", p.Corrupt, p.ReadErrors, p.Blobs)
	case p.Corrupt > p.CorruptTotal || p.LastFullPassCorrupt > p.CorruptTotal:
		d.failf("corrupt %d and last full pass corrupt %d exceed corrupt total %d", p.Corrupt, p.LastFullPassCorrupt, p.CorruptTotal)
	case p.LastFullPass == 0 && (p.LastFullPassCorrupt != 0 || p.LastFullPassMillis != 0):
		d.failf("last full pass figures without a last full pass")
	}
}

func parseScrubProgress(b []byte) (ScrubProgress, error) {
	d := decoder{msg: "scrub progress", b: b}
	p := ScrubProgress{
		Pass:    d.varint("pass"),
		Running: d.bool("running"),
		Bytes:   d.varint("bytes"), TotalBytes: d.varint("total bytes"),
		Blobs: d.varint("blobs"), TotalBlobs: d.varint("total blobs"),
		Corrupt: d.varint("corrupt"), ReadErrors: d.varint("read errors"),
		LastFullPass:        d.varint("last full pass"),
		LastFullPassCorrupt: d.varint("last full pass corrupt"),
		LastFullPassMillis:  d.varint("last full pass end"),
		CorruptTotal:        d.varint("corrupt total"),
	}
	if err := d.finish(); err != nil {
		return ScrubProgress{}, err
	}
	if p.check(&d); d.err != nil {
		return ScrubProgress{}, d.err
	}
	return p, nil
}
