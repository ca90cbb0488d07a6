package wire

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/geocdn/geocdn/internal/httpcache"
)

// Op is what a log entry does to its object.
type Op uint8

const (
	// OpPut publishes a new version of Namespace/Key with the given content.
	OpPut Op = 1
	// OpDelete removes Namespace/Key; later reads answer 404.
	OpDelete Op = 2
	// OpPurge evicts edge copies of the objects of Namespace that match
	// PurgeKeys, PurgePrefixes or PurgeTags (surrogate keys); with Soft it
	// marks them stale instead, to be revalidated with the origin. The
	// catalog is unchanged. Format version 2 and later.
	OpPurge Op = 3
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpPurge:
		return "purge"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Consistency is the per-object consistency level (named as Azure Cosmos DB
// names them; see DESIGN.md § The one mechanism).
type Consistency uint8

const (
	Eventual Consistency = iota
	ConsistentPrefix
	Session
	Bounded
	Strong
)

// String returns the level's name as ParseConsistency accepts it, without
// the bound of Bounded (see FormatConsistency).
func (c Consistency) String() string {
	switch c {
	case Eventual:
		return "eventual"
	case ConsistentPrefix:
		return "consistent-prefix"
	case Session:
		return "session"
	case Bounded:
		return "bounded"
	case Strong:
		return "strong"
	}
	return "consistency(" + strconv.Itoa(int(c)) + ")"
}

// FormatConsistency is the inverse of ParseConsistency: the level's name,
// with the bound in parentheses for Bounded ("bounded(5s)").
func FormatConsistency(c Consistency, bound time.Duration) string {
	if c == Bounded {
		return "bounded(" + bound.String() + ")"
	}
	return c.String()
}

// ParseConsistency parses a level as a publisher names it (the
// consistency= query parameter, a path-prefix policy): "eventual",
// "consistent-prefix" (or "prefix"), "session", "strong", or
// "bounded(Δ)" with Δ a Go duration of whole milliseconds, such as
// "bounded(5s)" or "bounded(500ms)". Names are case-insensitive. The
// returned bound is zero for every level but Bounded.
func ParseConsistency(s string) (Consistency, time.Duration, error) {
	name, arg, hasArg := strings.Cut(s, "(")
	if hasArg {
		var ok bool
		if arg, ok = strings.CutSuffix(arg, ")"); !ok {
			return 0, 0, fmt.Errorf("wire: consistency %q: missing closing parenthesis", s)
		}
	}
	var c Consistency
	switch strings.ToLower(name) {
	case "eventual":
		c = Eventual
	case "consistent-prefix", "prefix":
		c = ConsistentPrefix
	case "session":
		c = Session
	case "strong":
		c = Strong
	case "bounded":
		if !hasArg {
			return 0, 0, fmt.Errorf("wire: consistency %q needs a staleness bound, as in bounded(5s) or bounded(500ms)", s)
		}
		d, err := time.ParseDuration(arg)
		if err != nil {
			return 0, 0, fmt.Errorf("wire: consistency %q: %w", s, err)
		}
		if d <= 0 {
			return 0, 0, fmt.Errorf("wire: consistency %q: bound must be positive", s)
		}
		// The bound travels in milliseconds; refusing finer ones keeps
		// what the publisher asked for and what edges enforce the same.
		if d%time.Millisecond != 0 {
			return 0, 0, fmt.Errorf("wire: consistency %q: bound must be a whole number of milliseconds", s)
		}
		return Bounded, d, nil
	default:
		return 0, 0, fmt.Errorf("wire: unknown consistency %q (want eventual, consistent-prefix, session, bounded(Δ) or strong)", s)
	}
	if hasArg {
		return 0, 0, fmt.Errorf("wire: consistency %q: only bounded takes a parameter", s)
	}
	return c, 0, nil
}

// LogEntryVersion is the format version written into every new log entry.
// Decoders accept every version up to and including it, so a rolling
// upgrade can read entries written by an older origin.
const LogEntryVersion = 3

// DigestSize is the size of a content digest (sha256).
const DigestSize = 32

// Digest is the sha256 of an object's content.
type Digest [DigestSize]byte

// String returns the digest in lowercase hex, the form of ETags and of the
// admin API's digest field.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero digest, which FillRequest uses for
// "latest version" and delete entries carry.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText encodes d as lowercase hex, so JSON shows it as a string.
func (d Digest) MarshalText() ([]byte, error) {
	return hex.AppendEncode(nil, d[:]), nil
}

// UnmarshalText parses the hex form written by MarshalText.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDigest parses the 64 hex digits of a digest (either case).
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*DigestSize {
		return Digest{}, fmt.Errorf("wire: digest %q: want %d hex digits, got %d", s, 2*DigestSize, len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("wire: digest %q: %w", s, err)
	}
	return d, nil
}

// MaxLogEntrySize bounds an encoded log entry. It leaves room below
// MaxFrameSize for the FillResponse that can carry an entry, so any entry
// that fits a FrameLogEntry also fits a fill.
const MaxLogEntrySize = MaxFrameSize - 8<<10

// LogEntry is one mutation of the replication log. The origin stores the
// same encoding in its catalog, so the format carries its own version.
//
// Layout (payload of FrameLogEntry; all integers QUIC varints unless noted):
//
//	format version (1 byte) | LSN | op (1 byte)
//	| namespace (len+bytes) | key (len+bytes)
//	| digest (32 bytes) | size | content type (len+bytes)
//	| cache control (len+bytes) | surrogate key count | each (len+bytes)
//	| consistency (1 byte) | bound ms | mod time (unix ns, 8 bytes big-endian)
//	| replica count | each edge id (len+bytes)
//
// Delete entries carry the same layout with a zero digest and size.
//
// Bound is written in whole milliseconds (finer parts are dropped, a
// negative bound is written as zero). A zero ModTime is written as 0 and
// read back as time.Time{}; any other ModTime is read back in UTC, so
// compare times with Equal. Validate reports everything a decoder would
// refuse.
type LogEntry struct {
	LSN          uint64
	Op           Op
	Namespace    string
	Key          string
	Digest       Digest
	Size         uint64
	ContentType  string
	CacheControl string
	// SurrogateKeys are the tags from the publisher's Surrogate-Key header.
	SurrogateKeys []string
	Consistency   Consistency
	// Bound is Δ for Bounded consistency, zero otherwise.
	Bound   time.Duration
	ModTime time.Time
	// Replicas are the edge ids that must hold a pushed replica of this
	// version. Empty means every edge.
	Replicas []string

	// PurgeKeys, PurgePrefixes and PurgeTags select the objects an
	// OpPurge applies to; Soft makes it mark them stale rather than evict
	// them. Empty for other ops.
	PurgeKeys     []string
	PurgePrefixes []string
	PurgeTags     []string
	Soft          bool

	// Pulled describes a version fetched from the namespace's upstream
	// web server (pull-through) rather than published: nil for published
	// versions and for every other op.
	Pulled *Pulled
}

// Pulled is what a shared cache keeps of an upstream response besides its
// body (RFC 9111 §3): the status, the end-to-end header fields, and when
// the origin sent the request and received the response, from which every
// node computes the response's age (§4.2.3).
type Pulled struct {
	// Status is the upstream's status code, 200 to 599.
	Status int
	// Header holds the stored response header fields, in the order the
	// upstream sent them, without hop-by-hop fields or Content-Length
	// (the version's Size is the length).
	Header []HeaderField
	// Requested and Received are the origin's clock readings when it sent
	// the request upstream and when the response's head arrived.
	Requested, Received time.Time
	// Selecting holds the request's fields that the response's Vary names
	// (RFC 9111 §4.1), as the request that fetched it carried them: a
	// later request matches only if its own values are the same.
	Selecting []HeaderField
}

// HeaderField is one HTTP header field line.
type HeaderField struct{ Name, Value string }

// Limits of a pulled response's header, as a decoder enforces them.
const (
	// MaxHeaderFields bounds the fields of a stored response.
	MaxHeaderFields = 256
	// MaxHeaderBytes bounds the names and values of a stored response
	// together.
	MaxHeaderBytes = 64 << 10
)

// HTTPHeader returns the stored fields as an http.Header (a new map).
func (p *Pulled) HTTPHeader() http.Header {
	h := make(http.Header, len(p.Header))
	for _, f := range p.Header {
		k := http.CanonicalHeaderKey(f.Name)
		h[k] = append(h[k], f.Value)
	}
	return h
}

// Stored is p as httpcache sees a stored response: its status, fields,
// the request fields its Vary selected on, and the times of the exchange.
func (p *Pulled) Stored() httpcache.Stored {
	return httpcache.Stored{
		Status:  p.Status,
		Header:  p.HTTPHeader(),
		Request: (&Pulled{Header: p.Selecting}).HTTPHeader(),
		Times:   httpcache.Times{Request: p.Requested, Response: p.Received},
	}
}

// HeaderFields returns h's fields in a stable order (sorted by name; the
// values of a name in their order).
func HeaderFields(h http.Header) []HeaderField {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	var fs []HeaderField
	for _, k := range names {
		for _, v := range h[k] {
			fs = append(fs, HeaderField{Name: k, Value: v})
		}
	}
	return fs
}

// ObjectID identifies the entry's object across namespaces. Decoders refuse
// a namespace containing NUL, so the id is unambiguous.
func (e LogEntry) ObjectID() string { return e.Namespace + "\x00" + e.Key }

func (LogEntry) Type() FrameType { return FrameLogEntry }

func (e LogEntry) Len() int {
	n := 1 + varintLen(e.LSN) + 1 + stringLen(e.Namespace) + stringLen(e.Key) +
		DigestSize + varintLen(e.Size) + stringLen(e.ContentType) +
		stringLen(e.CacheControl) + varintLen(uint64(len(e.SurrogateKeys)))
	for _, k := range e.SurrogateKeys {
		n += stringLen(k)
	}
	n += 1 + varintLen(boundMillis(e.Bound)) + 8 + stringsLen(e.Replicas)
	n += stringsLen(e.PurgeKeys) + stringsLen(e.PurgePrefixes) + stringsLen(e.PurgeTags) + 1
	n++ // the pulled flag
	if p := e.Pulled; p != nil {
		n += varintLen(uint64(max(p.Status, 0))) + 16
		n += fieldsLen(p.Header) + fieldsLen(p.Selecting)
	}
	return n
}

// stringsLen is the encoded size of a counted list of strings.
func stringsLen(ss []string) int {
	n := varintLen(uint64(len(ss)))
	for _, s := range ss {
		n += stringLen(s)
	}
	return n
}

func appendStrings(b []byte, ss []string) []byte {
	b = quicvarint.Append(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// Append writes the entry in format LogEntryVersion.
func (e LogEntry) Append(b []byte) []byte {
	b = append(b, LogEntryVersion)
	b = quicvarint.Append(b, e.LSN)
	b = append(b, byte(e.Op))
	b = appendString(b, e.Namespace)
	b = appendString(b, e.Key)
	b = append(b, e.Digest[:]...)
	b = quicvarint.Append(b, e.Size)
	b = appendString(b, e.ContentType)
	b = appendString(b, e.CacheControl)
	b = quicvarint.Append(b, uint64(len(e.SurrogateKeys)))
	for _, k := range e.SurrogateKeys {
		b = appendString(b, k)
	}
	b = append(b, byte(e.Consistency))
	b = quicvarint.Append(b, boundMillis(e.Bound))
	b = binary.BigEndian.AppendUint64(b, uint64(modTimeNanos(e.ModTime)))
	b = appendStrings(b, e.Replicas)
	// Format version 2: the purge selectors.
	b = appendStrings(b, e.PurgeKeys)
	b = appendStrings(b, e.PurgePrefixes)
	b = appendStrings(b, e.PurgeTags)
	soft := byte(0)
	if e.Soft {
		soft = 1
	}
	b = append(b, soft)
	// Format version 3: a pulled response, after a presence byte.
	if e.Pulled == nil {
		return append(b, 0)
	}
	p := e.Pulled
	b = append(b, 1)
	b = quicvarint.Append(b, uint64(max(p.Status, 0)))
	b = appendFields(b, p.Header)
	b = binary.BigEndian.AppendUint64(b, uint64(modTimeNanos(p.Requested)))
	b = binary.BigEndian.AppendUint64(b, uint64(modTimeNanos(p.Received)))
	return appendFields(b, p.Selecting)
}

// appendFields writes a counted list of header fields.
func appendFields(b []byte, fs []HeaderField) []byte {
	b = quicvarint.Append(b, uint64(len(fs)))
	for _, f := range fs {
		b = appendString(b, f.Name)
		b = appendString(b, f.Value)
	}
	return b
}

// ParseLogEntry decodes an entry written by Append in any format version
// up to LogEntryVersion; it is how the origin reads its catalog. Errors
// wrap ErrMalformed.
func ParseLogEntry(b []byte) (LogEntry, error) {
	return parseLogEntry(b)
}

// ParseLogEntryInterned is ParseLogEntry for a caller that keeps many
// entries: the strings that repeat across entries (namespace, content
// type, cache control, surrogate keys, replicas) are made by intern from
// their bytes instead of copied, so that it can return one shared copy of
// each. intern must not keep its argument, which is part of b; nil copies.
// Keys and purge selectors are always copied.
func ParseLogEntryInterned(b []byte, intern func([]byte) string) (LogEntry, error) {
	return parseLogEntryWith(b, intern)
}

func parseLogEntry(b []byte) (LogEntry, error) { return parseLogEntryWith(b, nil) }

func parseLogEntryWith(b []byte, intern func([]byte) string) (LogEntry, error) {
	d := decoder{msg: "log entry", b: b, intern: intern}
	if len(b) > MaxLogEntrySize {
		d.failf("%d bytes exceed %d", len(b), MaxLogEntrySize)
		return LogEntry{}, d.err
	}
	// Version 2 added OpPurge and the purge selectors after the replicas;
	// version 1 entries end at the replicas. Version 3 added the pulled
	// response after the soft flag.
	version := d.uint8("format version")
	if d.err == nil && (version == 0 || version > LogEntryVersion) {
		d.failf("format version %d not supported (want 1 to %d)", version, LogEntryVersion)
	}
	var e LogEntry
	e.LSN = d.varint("lsn")
	e.Op = Op(d.uint8("op"))
	if d.err == nil && e.Op != OpPut && e.Op != OpDelete && !(e.Op == OpPurge && version >= 2) {
		d.failf("unknown op %d in format version %d", e.Op, version)
	}
	e.Namespace = d.namespace()
	e.Key = d.key()
	e.Digest = d.digest("digest")
	e.Size = d.varint("size")
	e.ContentType = d.shared("content type", MaxStringLen)
	e.CacheControl = d.shared("cache control", MaxStringLen)
	if n := d.count("surrogate keys", MaxSurrogateKeys); n > 0 {
		e.SurrogateKeys = make([]string, n)
		for i := range e.SurrogateKeys {
			e.SurrogateKeys[i] = d.shared("surrogate key", MaxStringLen)
		}
	}
	e.Consistency = Consistency(d.uint8("consistency"))
	if d.err == nil && e.Consistency > Strong {
		d.failf("unknown consistency %d", e.Consistency)
	}
	ms := d.varint("bound")
	if d.err == nil && ms > math.MaxInt64/uint64(time.Millisecond) {
		d.failf("bound %dms overflows a duration", ms)
	}
	e.Bound = time.Duration(ms) * time.Millisecond
	if ns := int64(d.uint64be("mod time")); ns != 0 {
		e.ModTime = time.Unix(0, ns).UTC()
	}
	e.Replicas = d.list("replica", MaxReplicas, MaxStringLen, d.shared)
	if version >= 2 {
		e.PurgeKeys = d.strings("purge key", MaxPurgeSelectors, MaxKeyLen)
		e.PurgePrefixes = d.strings("purge prefix", MaxPurgeSelectors, MaxKeyLen)
		e.PurgeTags = d.strings("purge tag", MaxPurgeSelectors, MaxStringLen)
		switch soft := d.uint8("soft"); {
		case d.err != nil:
		case soft > 1:
			d.failf("soft flag %d is not 0 or 1", soft)
		default:
			e.Soft = soft == 1
		}
	}
	if version >= 3 {
		switch has := d.uint8("pulled"); {
		case d.err != nil:
		case has > 1:
			d.failf("pulled flag %d is not 0 or 1", has)
		case has == 1:
			e.Pulled = d.pulled()
			if d.err == nil && e.Op != OpPut {
				d.failf("a %v entry carries a pulled response", e.Op)
			}
		}
	}
	if err := d.finish(); err != nil {
		return LogEntry{}, err
	}
	return e, nil
}

// Validate reports, wrapping ErrMalformed, why e could not be written and
// read back unchanged: a limit a decoder enforces, an encoded size over
// MaxLogEntrySize, an integer over MaxVarint, a Bound that is negative or
// not whole milliseconds, or a ModTime outside the years 1678 to 2262 that
// unix nanoseconds can hold. The origin calls it before it commits an
// entry, since the catalog and every edge must be able to read it.
func (e LogEntry) Validate() error {
	var problem string
	switch {
	case e.LSN > MaxVarint:
		problem = fmt.Sprintf("lsn %d exceeds %d", e.LSN, uint64(MaxVarint))
	case e.Size > MaxVarint:
		problem = fmt.Sprintf("size %d exceeds %d", e.Size, uint64(MaxVarint))
	case e.Bound < 0 || e.Bound%time.Millisecond != 0:
		problem = fmt.Sprintf("bound %v is not a whole number of milliseconds", e.Bound)
	case !e.ModTime.IsZero() && (e.ModTime.Before(time.Unix(0, math.MinInt64)) || e.ModTime.After(time.Unix(0, math.MaxInt64))):
		problem = fmt.Sprintf("mod time %v cannot be held in unix nanoseconds", e.ModTime)
	}
	if problem != "" {
		return fmt.Errorf("%w: log entry: %s", ErrMalformed, problem)
	}
	// Round-tripping is the one check that cannot drift from the decoder.
	_, err := parseLogEntry(e.Append(nil))
	return err
}

// pulled reads a pulled response (format version 3).
func (d *decoder) pulled() *Pulled {
	p := &Pulled{}
	st := d.varint("status")
	if d.err == nil && (st < 100 || st > 599) {
		d.failf("pulled status %d is not 100 to 599", st)
	}
	p.Status = int(st)
	p.Header = d.fields("header")
	if ns := int64(d.uint64be("requested")); ns != 0 {
		p.Requested = time.Unix(0, ns).UTC()
	}
	if ns := int64(d.uint64be("received")); ns != 0 {
		p.Received = time.Unix(0, ns).UTC()
	}
	p.Selecting = d.fields("selecting")
	return p
}

// fields reads a counted list of header fields.
func (d *decoder) fields(what string) []HeaderField {
	n := d.count(what+" fields", MaxHeaderFields)
	if n <= 0 {
		return nil
	}
	fs := make([]HeaderField, n)
	total := 0
	for i := range fs {
		f := &fs[i]
		f.Name = d.shared(what+" name", MaxStringLen)
		f.Value = d.shared(what+" value", MaxHeaderBytes)
		total += len(f.Name) + len(f.Value)
		if d.err == nil && !validFieldName(f.Name) {
			d.failf("%s field name %q is not a token", what, f.Name)
		}
		if d.err == nil && !validFieldValue(f.Value) {
			d.failf("%s field %s: value holds CR, LF or NUL", what, f.Name)
		}
	}
	if d.err == nil && total > MaxHeaderBytes {
		d.failf("%s fields: %d bytes exceed %d", what, total, MaxHeaderBytes)
	}
	return fs
}

// fieldsLen is the encoded size of a counted list of header fields.
func fieldsLen(fs []HeaderField) int {
	n := varintLen(uint64(len(fs)))
	for _, f := range fs {
		n += stringLen(f.Name) + stringLen(f.Value)
	}
	return n
}

// validFieldName reports whether s is an HTTP field name (a token).
func validFieldName(s string) bool {
	return s != "" && strings.IndexFunc(s, func(r rune) bool {
		return r >= 0x7f || !strings.ContainsRune("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", r)
	}) < 0
}

// validFieldValue reports whether s may be sent as a field value: no CR,
// LF or NUL (RFC 9110 §5.5).
func validFieldValue(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") }

// boundMillis is the bound as written: whole milliseconds, never negative.
func boundMillis(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d / time.Millisecond)
}

// modTimeNanos is the mod time as written: 0 for the zero time, which
// UnixNano would otherwise turn into an arbitrary value.
func modTimeNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
