package origin

import "github.com/geocdn/geocdn/internal/wire"

// EventKind names a replication event.
type EventKind uint8

const (
	// EventEdgeConnected: an edge's control connection was accepted.
	EventEdgeConnected EventKind = iota + 1
	// EventEdgeDisconnected: an edge's control connection ended.
	EventEdgeDisconnected
	// EventPushStored: an edge confirmed it stored (or already had) a pushed version.
	EventPushStored
	// EventPushFailed: a push to an edge failed; Err says why.
	EventPushFailed
	// EventFillServed: the origin answered an edge's fill request.
	EventFillServed
)

func (k EventKind) String() string {
	switch k {
	case EventEdgeConnected:
		return "edge-connected"
	case EventEdgeDisconnected:
		return "edge-disconnected"
	case EventPushStored:
		return "push-stored"
	case EventPushFailed:
		return "push-failed"
	case EventFillServed:
		return "fill-served"
	}
	return "unknown"
}

// Event is what the origin reports to Config.OnEvent. Tests and metrics read
// these instead of log lines.
type Event struct {
	Kind   EventKind
	Edge   string
	LSN    uint64
	Digest wire.Digest
	Bytes  int64
	Err    error
}
