package wire

import (
	"fmt"
	"strconv"

	"github.com/quic-go/quic-go/quicvarint"
)

// A fill runs on a bidirectional stream the edge opens on the data
// connection: edge → FillRequest, FIN; origin → FillResponse and, when the
// status is FillOK, Entry.Size raw content bytes, then FIN.

// FillRequest asks for the content of an object. A zero Digest asks for the
// latest committed version of Namespace/Key; a non-zero one asks for exactly
// that content (and fails with FillNotFound if the origin no longer has it).
// With a zero Digest, a non-zero Have names the content the edge holds:
// if it is still current the origin answers FillNotModified and sends no
// body (revalidation after a soft purge).
//
// Pull, set by an edge for a namespace with an upstream (pull-through),
// carries what the origin forwards upstream when it must fetch the object;
// the key is then a pulled key (objkey.FromTarget).
//
// Layout: namespace | key | digest (32 bytes) | have (32 bytes)
// | pull flag (1 byte: 0 none, 1 pull, 2 pull and forward)
// [| client fields | client address | host, when the flag is not 0].
type FillRequest struct {
	Namespace string
	Key       string
	Digest    Digest
	Have      Digest
	Pull      *PullInfo
}

// PullInfo is a client's request as an edge passes it on for a pull.
type PullInfo struct {
	// Header holds the client's end-to-end request fields.
	Header []HeaderField
	// ClientIP is the client's address; Host the Host it asked for.
	ClientIP, Host string
	// Forward asks the origin to fetch from the upstream even if it
	// stores a version: the edge found the stored response cannot answer
	// this request (its Vary fields differ, or it has Authorization).
	Forward bool
}

// FillStatus is the outcome of a fill.
type FillStatus uint8

const (
	FillOK       FillStatus = 1
	FillNotFound FillStatus = 2
	FillError    FillStatus = 3
	// FillNotModified: the content the request said it has is current;
	// Entry describes it and no body follows.
	FillNotModified FillStatus = 4
	// FillPassThrough: an upstream response that is not stored (Reason
	// says why). Entry.Pulled holds its status and header fields; the
	// body follows until the stream ends, and is for this request only.
	FillPassThrough FillStatus = 5
	// FillBadGateway and FillGatewayTimeout: the upstream failed to
	// answer, or not in time; Reason says how.
	FillBadGateway     FillStatus = 6
	FillGatewayTimeout FillStatus = 7
)

func (s FillStatus) String() string {
	switch s {
	case FillOK:
		return "ok"
	case FillNotFound:
		return "not-found"
	case FillError:
		return "error"
	case FillNotModified:
		return "not-modified"
	case FillPassThrough:
		return "pass-through"
	case FillBadGateway:
		return "bad-gateway"
	case FillGatewayTimeout:
		return "gateway-timeout"
	}
	return "fill-status(" + strconv.Itoa(int(s)) + ")"
}

// FillResponse answers a FillRequest. Entry describes the version whose
// bytes follow (only meaningful with FillOK).
//
// Layout: status (1 byte) | reason (len+bytes) | entry (a LogEntry payload,
// len+bytes; empty unless status is FillOK). Append writes an empty entry
// for any other status, whatever Entry holds, and cuts a reason longer than
// MaxStringLen; a decoder refuses FillOK without an entry and any other
// status with one.
type FillResponse struct {
	Status FillStatus
	Reason string
	Entry  LogEntry
}

func (FillRequest) Type() FrameType { return FrameFillRequest }

func (r FillRequest) Len() int {
	n := stringLen(r.Namespace) + stringLen(r.Key) + 2*DigestSize + 1
	if p := r.Pull; p != nil {
		n += fieldsLen(p.Header) + stringLen(p.ClientIP) + stringLen(p.Host)
	}
	return n
}

func (r FillRequest) Append(b []byte) []byte {
	b = appendString(b, r.Namespace)
	b = appendString(b, r.Key)
	b = append(b, r.Digest[:]...)
	b = append(b, r.Have[:]...)
	p := r.Pull
	if p == nil {
		return append(b, 0)
	}
	flag := byte(1)
	if p.Forward {
		flag = 2
	}
	b = append(b, flag)
	b = appendFields(b, p.Header)
	b = appendString(b, p.ClientIP)
	return appendString(b, p.Host)
}

func parseFillRequest(b []byte) (FillRequest, error) {
	d := decoder{msg: "fill request", b: b}
	r := FillRequest{
		Namespace: d.namespace(),
		Key:       d.key(),
		Digest:    d.digest("digest"),
		Have:      d.digest("have"),
	}
	switch flag := d.uint8("pull flag"); {
	case d.err != nil, flag == 0:
	case flag > 2:
		d.failf("pull flag %d is not 0, 1 or 2", flag)
	default:
		r.Pull = &PullInfo{
			Header:   d.fields("client"),
			ClientIP: d.string("client address", MaxStringLen),
			Host:     d.string("host", MaxStringLen),
			Forward:  flag == 2,
		}
	}
	if err := d.finish(); err != nil {
		return FillRequest{}, err
	}
	return r, nil
}

func (FillResponse) Type() FrameType { return FrameFillResponse }

// hasEntry reports whether a response with this status carries an entry.
func (s FillStatus) hasEntry() bool {
	return s == FillOK || s == FillNotModified || s == FillPassThrough
}

// entryLen is the length of the embedded entry as Append writes it.
func (r FillResponse) entryLen() int {
	if !r.Status.hasEntry() {
		return 0
	}
	return r.Entry.Len()
}

func (r FillResponse) Len() int {
	n := r.entryLen()
	return 1 + stringLen(truncReason(r.Reason)) + varintLen(uint64(n)) + n
}

func (r FillResponse) Append(b []byte) []byte {
	b = append(b, byte(r.Status))
	b = appendString(b, truncReason(r.Reason))
	n := r.entryLen()
	b = quicvarint.Append(b, uint64(n))
	if n > 0 {
		b = r.Entry.Append(b)
	}
	return b
}

func parseFillResponse(b []byte) (FillResponse, error) {
	d := decoder{msg: "fill response", b: b}
	r := FillResponse{
		Status: FillStatus(d.uint8("status")),
		Reason: d.string("reason", MaxStringLen),
	}
	entry := d.bytes("entry", d.varint("entry length"))
	if d.err == nil {
		switch {
		case r.Status < FillOK || r.Status > FillGatewayTimeout:
			d.failf("unknown status %d", r.Status)
		case r.Status.hasEntry() && len(entry) == 0:
			d.failf("status %s without an entry", r.Status)
		case !r.Status.hasEntry() && len(entry) != 0:
			d.failf("status %s with an entry", r.Status)
		}
	}
	if err := d.finish(); err != nil {
		return FillResponse{}, err
	}
	if r.Status.hasEntry() {
		e, err := parseLogEntry(entry)
		if err != nil {
			return FillResponse{}, err
		}
		if r.Status == FillPassThrough && e.Pulled == nil {
			return FillResponse{}, fmt.Errorf("%w: fill response: pass-through without a pulled response", ErrMalformed)
		}
		r.Entry = e
	}
	return r, nil
}

// StaleIfErrorReason flags a fill answer for a pulled object whose
// upstream failed to revalidate it: the stored version is served in its
// place, as its stale-if-error (RFC 5861) allows.
const StaleIfErrorReason = "stale-if-error"

// PendingReason flags a fill answer for a key whose strong write is not
// yet visible: the entry (and body) are the previous version, to be served
// but not kept as current; with FillNotFound, the key is new.
const PendingReason = "pending, do not cache"

// ForwardRequest sends a client's request that no cache answers (a method
// other than GET or HEAD, in a namespace with an upstream) through the
// origin to the upstream. It opens a stream on the data connection; the
// request body follows it until the edge's FIN. The origin answers with a
// FillResponse: FillPassThrough with the upstream's status and fields,
// whose body follows until the stream ends, or FillBadGateway,
// FillGatewayTimeout or FillError.
//
// Layout: namespace | key (the pulled key of the target) | method
// | client fields | client address | host.
type ForwardRequest struct {
	Namespace, Key, Method string
	Header                 []HeaderField
	ClientIP, Host         string
}

// MaxMethodLen bounds a forwarded request's method.
const MaxMethodLen = 32

func (ForwardRequest) Type() FrameType { return FrameForwardRequest }

func (r ForwardRequest) Len() int {
	return stringLen(r.Namespace) + stringLen(r.Key) + stringLen(r.Method) + fieldsLen(r.Header) +
		stringLen(r.ClientIP) + stringLen(r.Host)
}

func (r ForwardRequest) Append(b []byte) []byte {
	b = appendString(b, r.Namespace)
	b = appendString(b, r.Key)
	b = appendString(b, r.Method)
	b = appendFields(b, r.Header)
	b = appendString(b, r.ClientIP)
	return appendString(b, r.Host)
}

func parseForwardRequest(b []byte) (ForwardRequest, error) {
	d := decoder{msg: "forward request", b: b}
	r := ForwardRequest{
		Namespace: d.namespace(),
		Key:       d.key(),
		Method:    d.string("method", MaxMethodLen),
	}
	if d.err == nil && !validFieldName(r.Method) {
		d.failf("method %q is not a token", r.Method)
	}
	r.Header = d.fields("client")
	r.ClientIP = d.string("client address", MaxStringLen)
	r.Host = d.string("host", MaxStringLen)
	if err := d.finish(); err != nil {
		return ForwardRequest{}, err
	}
	return r, nil
}
