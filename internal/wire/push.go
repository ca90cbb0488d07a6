package wire

import (
	"strconv"

	"github.com/quic-go/quic-go/quicvarint"
)

// A push runs on a bidirectional stream the origin opens on the data
// connection:
//
//	origin → PushOffer
//	edge   → PushReply (Want, Have or Refuse)
//	origin → Size raw content bytes (only after Want), then FIN
//	edge   → PushResult
//
// The edge verifies the digest before it commits the blob.

// PushOffer offers the content of one object version.
//
// Layout: LSN | namespace | key | digest (32 bytes) | size | required (1 byte).
type PushOffer struct {
	LSN       uint64
	Namespace string
	Key       string
	Digest    Digest
	Size      uint64
	// Required is true when the edge is in the version's replica set and
	// must keep the blob (not evict it as it would a fill).
	Required bool
}

// PushReplyStatus is the edge's answer to an offer.
type PushReplyStatus uint8

const (
	PushWant   PushReplyStatus = 1 // send the bytes
	PushHave   PushReplyStatus = 2 // already stored; counts as stored
	PushRefuse PushReplyStatus = 3 // will not store it (reason says why)
)

func (s PushReplyStatus) String() string {
	switch s {
	case PushWant:
		return "want"
	case PushHave:
		return "have"
	case PushRefuse:
		return "refuse"
	}
	return "push-reply(" + strconv.Itoa(int(s)) + ")"
}

// PushReply answers a PushOffer.
//
// Layout: status (1 byte) | reason (len+bytes). Append cuts a reason longer
// than MaxStringLen.
type PushReply struct {
	Status PushReplyStatus
	Reason string
}

// PushResultStatus is the outcome of a transfer.
type PushResultStatus uint8

const (
	PushStored    PushResultStatus = 1
	PushBadDigest PushResultStatus = 2 // bytes did not match; the origin resends
	PushDiskFull  PushResultStatus = 3
	PushFailed    PushResultStatus = 4
)

func (s PushResultStatus) String() string {
	switch s {
	case PushStored:
		return "stored"
	case PushBadDigest:
		return "bad-digest"
	case PushDiskFull:
		return "disk-full"
	case PushFailed:
		return "failed"
	}
	return "push-result(" + strconv.Itoa(int(s)) + ")"
}

// PushResult reports whether the edge stored the pushed bytes.
//
// Layout: status (1 byte) | reason (len+bytes). Append cuts a reason longer
// than MaxStringLen.
type PushResult struct {
	Status PushResultStatus
	Reason string
}

func (PushOffer) Type() FrameType { return FramePushOffer }

func (o PushOffer) Len() int {
	return varintLen(o.LSN) + stringLen(o.Namespace) + stringLen(o.Key) +
		DigestSize + varintLen(o.Size) + 1
}

func (o PushOffer) Append(b []byte) []byte {
	b = quicvarint.Append(b, o.LSN)
	b = appendString(b, o.Namespace)
	b = appendString(b, o.Key)
	b = append(b, o.Digest[:]...)
	b = quicvarint.Append(b, o.Size)
	return appendBool(b, o.Required)
}

func parsePushOffer(b []byte) (PushOffer, error) {
	d := decoder{msg: "push offer", b: b}
	o := PushOffer{
		LSN:       d.varint("lsn"),
		Namespace: d.namespace(),
		Key:       d.key(),
		Digest:    d.digest("digest"),
		Size:      d.varint("size"),
		Required:  d.bool("required"),
	}
	if err := d.finish(); err != nil {
		return PushOffer{}, err
	}
	return o, nil
}

func (PushReply) Type() FrameType { return FramePushReply }

func (r PushReply) Len() int { return 1 + stringLen(truncReason(r.Reason)) }

func (r PushReply) Append(b []byte) []byte {
	b = append(b, byte(r.Status))
	return appendString(b, truncReason(r.Reason))
}

func parsePushReply(b []byte) (PushReply, error) {
	d := decoder{msg: "push reply", b: b}
	r := PushReply{
		Status: PushReplyStatus(d.uint8("status")),
		Reason: d.string("reason", MaxStringLen),
	}
	if d.err == nil && (r.Status < PushWant || r.Status > PushRefuse) {
		d.failf("unknown status %d", r.Status)
	}
	if err := d.finish(); err != nil {
		return PushReply{}, err
	}
	return r, nil
}

func (PushResult) Type() FrameType { return FramePushResult }

func (r PushResult) Len() int { return 1 + stringLen(truncReason(r.Reason)) }

func (r PushResult) Append(b []byte) []byte {
	b = append(b, byte(r.Status))
	return appendString(b, truncReason(r.Reason))
}

func parsePushResult(b []byte) (PushResult, error) {
	d := decoder{msg: "push result", b: b}
	r := PushResult{
		Status: PushResultStatus(d.uint8("status")),
		Reason: d.string("reason", MaxStringLen),
	}
	if d.err == nil && (r.Status < PushStored || r.Status > PushFailed) {
		d.failf("unknown status %d", r.Status)
	}
	if err := d.finish(); err != nil {
		return PushResult{}, err
	}
	return r, nil
}
