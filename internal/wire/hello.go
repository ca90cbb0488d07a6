package wire

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/quic-go/quic-go/quicvarint"
)

// ProtocolVersion is the version of the frame protocol carried in Hello.
//
// Version 2 added FirstLSN to Welcome and the anti-entropy frames; version
// 3 added ScrubProgress, which an edge sends on its control stream.
const ProtocolVersion = 3

// MinProtocolVersion is the oldest version an origin accepts in a Hello.
// A version-2 edge speaks a subset of version 3 (it never sends
// ScrubProgress), so origins can be upgraded before their edges; an edge
// newer than its origin is refused, as it would send frames the origin
// cannot read.
const MinProtocolVersion = 2

// ConnKind says what a QUIC connection carries. Control traffic (log,
// heartbeats, leases) has a connection of its own so that bulk transfers,
// which share the data connection's flow-control window, can never delay it.
type ConnKind uint8

const (
	// ConnControl carries the log stream and heartbeats.
	ConnControl ConnKind = 1
	// ConnData carries pushes and fills.
	ConnData ConnKind = 2
	// ConnFill carries fills only, and any origin of a cluster takes it,
	// a follower included: an edge fills from the origin nearest to it
	// while it follows the leader's log. A follower serves the versions it
	// holds, asked for by digest, and declines the rest (a fill of the
	// current version, content it lacks); the edge then asks the leader.
	ConnFill ConnKind = 3
)

func (k ConnKind) String() string {
	switch k {
	case ConnControl:
		return "control"
	case ConnData:
		return "data"
	case ConnFill:
		return "fill"
	}
	return "conn-kind(" + strconv.Itoa(int(k)) + ")"
}

// Hello is the first frame an edge sends on the first bidirectional stream
// of each connection it opens.
//
// Layout: protocol version (1 byte) | kind (1 byte) | edge id | region
// | lat (float64 bits, 8 bytes) | lon (8 bytes) | fault domain | public URL
// | watermark (varint); strings are varint length + bytes. A decoder
// refuses a latitude outside [-90, 90], a longitude outside [-180, 180]
// and NaN.
type Hello struct {
	Version     uint8
	Kind        ConnKind
	EdgeID      string
	Region      string
	Lat, Lon    float64
	FaultDomain string
	PublicURL   string
	// Watermark is the highest LSN the edge has applied; the origin replays
	// the log from Watermark+1.
	Watermark uint64
}

// Welcome is the origin's answer to an accepted Hello.
//
// Layout: protocol version (1 byte) | origin id | current LSN
// | lease term ms | heartbeat interval ms | first lsn.
type Welcome struct {
	Version           uint8
	OriginID          string
	CurrentLSN        uint64
	LeaseMillis       uint64
	HeartbeatInterval uint64 // milliseconds
	// FirstLSN is the first entry the origin's log still holds (0 or 1:
	// nothing was compacted). An edge whose watermark is below
	// FirstLSN-1 catches up by snapshot (see LogGap).
	FirstLSN uint64
	// Pull lists the namespaces with an upstream web server (pull-through):
	// a key of theirs the log does not name may still exist upstream, so
	// the edge asks the origin instead of answering 404.
	Pull []string
}

// MaxPullNamespaces bounds Welcome.Pull.
const MaxPullNamespaces = 1024

// RejectCode says why the origin refused a connection.
type RejectCode uint8

const (
	RejectVersion  RejectCode = 1 // protocol version not supported
	RejectIdentity RejectCode = 2 // announced id does not match the certificate
	RejectBadHello RejectCode = 3 // malformed or unexpected first frame
	RejectShutdown RejectCode = 4 // origin is shutting down
	// RejectNotLeader: the origin is a follower of its raft cluster, and
	// only the leader serves edges. Reason is the leader's QUIC address
	// for edges (host:port), or empty while the follower knows of no
	// leader; the edge dials that address next, or its next origin.
	RejectNotLeader RejectCode = 5
)

func (c RejectCode) String() string {
	switch c {
	case RejectVersion:
		return "version"
	case RejectIdentity:
		return "identity"
	case RejectBadHello:
		return "bad-hello"
	case RejectShutdown:
		return "shutdown"
	case RejectNotLeader:
		return "not leader"
	}
	return "reject-code(" + strconv.Itoa(int(c)) + ")"
}

// Reject is the origin's answer to a refused Hello; it then closes.
//
// Layout: code (1 byte) | reason (len+bytes). Append cuts a reason longer
// than MaxStringLen. A decoder refuses a code it does not know.
type Reject struct {
	Code   RejectCode
	Reason string
}

func (Hello) Type() FrameType { return FrameHello }

func (h Hello) Len() int {
	return 2 + stringLen(h.EdgeID) + stringLen(h.Region) + 16 +
		stringLen(h.FaultDomain) + stringLen(h.PublicURL) + varintLen(h.Watermark)
}

func (h Hello) Append(b []byte) []byte {
	b = append(b, h.Version, byte(h.Kind))
	b = appendString(b, h.EdgeID)
	b = appendString(b, h.Region)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(h.Lat))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(h.Lon))
	b = appendString(b, h.FaultDomain)
	b = appendString(b, h.PublicURL)
	return quicvarint.Append(b, h.Watermark)
}

func parseHello(b []byte) (Hello, error) {
	d := decoder{msg: "hello", b: b}
	h := Hello{
		// Version is not checked here: answering an unsupported one with
		// RejectVersion is the origin's call, and it needs the frame parsed.
		Version:     d.uint8("version"),
		Kind:        ConnKind(d.uint8("kind")),
		EdgeID:      d.string("edge id", MaxStringLen),
		Region:      d.string("region", MaxStringLen),
		Lat:         math.Float64frombits(d.uint64be("lat")),
		Lon:         math.Float64frombits(d.uint64be("lon")),
		FaultDomain: d.string("fault domain", MaxStringLen),
		PublicURL:   d.string("public url", MaxStringLen),
		Watermark:   d.varint("watermark"),
	}
	if d.err == nil {
		switch {
		case h.Kind != ConnControl && h.Kind != ConnData && h.Kind != ConnFill:
			d.failf("unknown connection kind %d", h.Kind)
		// Placement and routing compute distances from these; NaN would
		// poison every comparison it takes part in.
		case !(h.Lat >= -90 && h.Lat <= 90):
			d.failf("latitude %v out of range", h.Lat)
		case !(h.Lon >= -180 && h.Lon <= 180):
			d.failf("longitude %v out of range", h.Lon)
		}
	}
	if err := d.finish(); err != nil {
		return Hello{}, err
	}
	return h, nil
}

func (Welcome) Type() FrameType { return FrameWelcome }

func (w Welcome) Len() int {
	return 1 + stringLen(w.OriginID) + varintLen(w.CurrentLSN) +
		varintLen(w.LeaseMillis) + varintLen(w.HeartbeatInterval) + varintLen(w.FirstLSN) +
		stringsLen(w.Pull)
}

func (w Welcome) Append(b []byte) []byte {
	b = append(b, w.Version)
	b = appendString(b, w.OriginID)
	b = quicvarint.Append(b, w.CurrentLSN)
	b = quicvarint.Append(b, w.LeaseMillis)
	b = quicvarint.Append(b, w.HeartbeatInterval)
	b = quicvarint.Append(b, w.FirstLSN)
	return appendStrings(b, w.Pull)
}

func parseWelcome(b []byte) (Welcome, error) {
	d := decoder{msg: "welcome", b: b}
	w := Welcome{
		Version:           d.uint8("version"),
		OriginID:          d.string("origin id", MaxStringLen),
		CurrentLSN:        d.varint("current lsn"),
		LeaseMillis:       d.varint("lease"),
		HeartbeatInterval: d.varint("heartbeat interval"),
		FirstLSN:          d.varint("first lsn"),
	}
	w.Pull = d.strings("pull namespace", MaxPullNamespaces, MaxNamespaceLen)
	if err := d.finish(); err != nil {
		return Welcome{}, err
	}
	return w, nil
}

func (Reject) Type() FrameType { return FrameReject }

func (r Reject) Len() int { return 1 + stringLen(truncReason(r.Reason)) }

func (r Reject) Append(b []byte) []byte {
	b = append(b, byte(r.Code))
	return appendString(b, truncReason(r.Reason))
}

func parseReject(b []byte) (Reject, error) {
	d := decoder{msg: "reject", b: b}
	r := Reject{
		Code:   RejectCode(d.uint8("code")),
		Reason: d.string("reason", MaxStringLen),
	}
	if d.err == nil && (r.Code < RejectVersion || r.Code > RejectNotLeader) {
		d.failf("unknown reject code %d", r.Code)
	}
	if err := d.finish(); err != nil {
		return Reject{}, err
	}
	return r, nil
}

// LeaderChanged is what an origin sends an edge on a unidirectional stream
// of the edge's fill connection (ConnFill) when it learns of a cluster
// leader, and on connecting: OriginID leads, and edges reach it at QUIC.
// An edge whose session is with another origin ends it and dials QUIC at
// once, rather than wait to miss the old leader's heartbeats.
//
// Layout: origin id | QUIC address (host:port).
type LeaderChanged struct {
	OriginID string
	QUIC     string
}

func (LeaderChanged) Type() FrameType { return FrameLeaderChanged }

func (l LeaderChanged) Len() int { return stringLen(l.OriginID) + stringLen(l.QUIC) }

func (l LeaderChanged) Append(b []byte) []byte {
	b = appendString(b, l.OriginID)
	return appendString(b, l.QUIC)
}

func parseLeaderChanged(b []byte) (LeaderChanged, error) {
	d := decoder{msg: "leader changed", b: b}
	l := LeaderChanged{
		OriginID: d.string("origin id", MaxStringLen),
		QUIC:     d.string("quic address", MaxStringLen),
	}
	if err := d.finish(); err != nil {
		return LeaderChanged{}, err
	}
	return l, nil
}
