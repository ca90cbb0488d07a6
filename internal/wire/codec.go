package wire

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/quic-go/quic-go/quicvarint"
)

// Limits enforced by every decoder. Encoders do not check them (Append
// cannot fail); LogEntry.Validate lets the origin refuse an entry before it
// commits one that its edges, or its own catalog, could not read back.
const (
	// MaxStringLen bounds every string field not bounded more tightly below.
	MaxStringLen = 4096
	// MaxKeyLen bounds an object key: DESIGN.md refuses longer keys at the
	// HTTP front end, so a longer one on the wire is corruption.
	MaxKeyLen = 1024
	// MaxNamespaceLen bounds a namespace, which is matched from a Host
	// name and so fits in a DNS name.
	MaxNamespaceLen = 255
	// MaxSurrogateKeys bounds the surrogate keys of one log entry.
	MaxSurrogateKeys = 256
	// MaxReplicas bounds the replica set of one log entry.
	MaxReplicas = 4096
	// MaxPurgeSelectors bounds each list of keys, prefixes or tags in one purge.
	MaxPurgeSelectors = 1024
	// MaxVarint is the largest integer a frame can carry (2^62-1). Append
	// panics on a larger one, as quicvarint does: no LSN, size or counter
	// of a running system gets there, so it is a bug, not an input.
	MaxVarint = quicvarint.Max
)

// appendString writes s as a varint length followed by its bytes.
func appendString(b []byte, s string) []byte {
	b = quicvarint.Append(b, uint64(len(s)))
	return append(b, s...)
}

// stringLen is the encoded size of s as written by appendString.
func stringLen(s string) int {
	return quicvarint.Len(uint64(len(s))) + len(s)
}

// varintLen is the encoded size of v.
func varintLen(v uint64) int {
	return quicvarint.Len(v)
}

// appendBool writes a boolean as one byte, 0 or 1.
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// truncReason cuts a free-text reason to MaxStringLen at a rune boundary.
// Reasons are often an error's text, whose length nobody controls; a long
// one must not turn an informative frame into one the peer rejects.
func truncReason(s string) string {
	if len(s) <= MaxStringLen {
		return s
	}
	n := MaxStringLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// decoder reads the fields of one complete payload. The first error sticks
// and later reads return zero values, so a parse function reads every
// field and checks the error once; because the payload is complete, running
// out of bytes is ErrMalformed, never io.ErrUnexpectedEOF.
type decoder struct {
	msg string // message name, for error detail
	b   []byte
	err error
	// intern, if not nil, makes the strings that shared reads.
	intern func([]byte) string
}

func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrMalformed, d.msg, fmt.Sprintf(format, args...))
		d.b = nil
	}
}

func (d *decoder) uint8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.failf("%s: truncated", field)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) varint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n, err := quicvarint.Parse(d.b)
	if err != nil {
		d.failf("%s: truncated", field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64be(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.failf("%s: truncated", field)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bool(field string) bool {
	switch v := d.uint8(field); v {
	case 0:
		return false
	case 1:
		return true
	default:
		// Only 0 and 1 are accepted so that every value has one encoding.
		d.failf("%s: invalid boolean %d", field, v)
		return false
	}
}

// bytes returns the next n bytes, aliasing the payload.
func (d *decoder) bytes(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.failf("%s: length %d exceeds the %d bytes left", field, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// string reads a varint length and that many bytes, refusing lengths over
// max before looking at the bytes.
func (d *decoder) string(field string, max int) string {
	n := d.varint(field)
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.failf("%s: length %d exceeds %d", field, n, max)
		return ""
	}
	return string(d.bytes(field, n))
}

// shared is string for a value that repeats across messages: it comes
// from d.intern, if set.
func (d *decoder) shared(field string, max int) string {
	if d.intern == nil {
		return d.string(field, max)
	}
	n := d.varint(field)
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.failf("%s: length %d exceeds %d", field, n, max)
		return ""
	}
	b := d.bytes(field, n)
	if d.err != nil {
		return ""
	}
	return d.intern(b)
}

// count reads a list length, refusing counts over max and counts that the
// remaining bytes cannot hold (every element takes at least one byte), so a
// forged count never sizes an allocation.
func (d *decoder) count(field string, max int) int {
	n := d.varint(field)
	if d.err != nil {
		return 0
	}
	if n > uint64(max) {
		d.failf("%s: %d entries exceed %d", field, n, max)
		return 0
	}
	if n > uint64(len(d.b)) {
		d.failf("%s: %d entries cannot fit in the %d bytes left", field, n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) digest(field string) Digest {
	var v Digest
	copy(v[:], d.bytes(field, DigestSize))
	return v
}

// finish reports the first error, or ErrMalformed if bytes are left over:
// a payload has exactly one valid length.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) > 0 {
		d.failf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// namespace reads a namespace. NUL is refused because ObjectID uses it as
// the separator between namespace and key.
func (d *decoder) namespace() string {
	s := d.shared("namespace", MaxNamespaceLen)
	if strings.IndexByte(s, 0) >= 0 {
		d.failf("namespace: contains NUL")
	}
	return s
}

// strings reads a counted list of at most max strings of at most size
// bytes each; nil when empty.
func (d *decoder) strings(what string, max, size int) []string {
	return d.list(what, max, size, d.string)
}

// list is strings with each element read by str.
func (d *decoder) list(what string, max, size int, str func(field string, max int) string) []string {
	n := d.count(what+"s", max)
	if n <= 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = str(what, size)
	}
	return out
}

// key reads an object key. The HTTP front ends refuse NUL in keys, so one
// on the wire is corruption.
func (d *decoder) key() string {
	s := d.string("key", MaxKeyLen)
	if strings.IndexByte(s, 0) >= 0 {
		d.failf("key: contains NUL")
	}
	return s
}
