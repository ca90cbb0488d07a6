package loadtest

import "time"

// Op is the operation a Sample measured.
type Op string

const (
	OpGet         Op = "GET"
	OpHead        Op = "HEAD"
	OpConditional Op = "conditional GET"
	OpRange       Op = "Range GET"
	OpPublishReq  Op = "publish"
	OpPurgeReq    Op = "purge"
)

// isWrite reports whether op is made through the origin's admin API
// rather than by a client.
func (op Op) isWrite() bool { return op == OpPublishReq || op == OpPurgeReq }

// ErrorClass sorts failed requests for the report. A request either
// succeeded (Class "") or failed in exactly one class.
type ErrorClass string

const (
	// ClassConnect: no connection (refused, reset before a response,
	// DNS, TLS).
	ClassConnect ErrorClass = "connect"
	// ClassTimeout: no complete answer within the request timeout.
	ClassTimeout ErrorClass = "timeout"
	// Class4xx and Class5xx: an answer with an unexpected status.
	Class4xx ErrorClass = "4xx"
	Class5xx ErrorClass = "5xx"
	// ClassCorrupt: a 200 (or 206) whose body does not hash to its ETag,
	// or is not the length announced.
	ClassCorrupt ErrorClass = "corrupt"
	// ClassStale: a read of a key published in the run that returned a
	// version older than one a strong publish had already acknowledged.
	ClassStale ErrorClass = "stale"
	// ClassOverload: the load generator did not send the request because
	// MaxInFlight requests were already outstanding (the target is not
	// keeping up).
	ClassOverload ErrorClass = "overload"
	// ClassRedirect: the router's answer was not a usable redirect.
	ClassRedirect ErrorClass = "redirect"
)

// Sample is one finished request.
type Sample struct {
	// Intended is when the request was scheduled to start (open loop)
	// or started (closed loop), as an offset from the run's start.
	// Latency counts from it, so queueing in the load generator or a
	// stalled server shows in the figures (no coordinated omission).
	Intended time.Duration
	// Latency is from Intended to the last byte of the answer.
	Latency time.Duration
	// Modelled is Latency plus the latency model's round trip from the
	// client's location to the edge that answered: what a user there
	// would see, since the test's own network is loopback. Zero when no
	// edge answered.
	Modelled time.Duration
	// Region is the client's region; empty for a write (a publish or
	// purge the run makes through the origin's admin API), which is
	// reported by operation only.
	Region string
	Edge   string // id of the edge that answered, if any
	Op     Op
	Status int // HTTP status, 0 if none
	Class  ErrorClass
	// Hit is an answer the edge served from its store (Cache-Status
	// "hit"); Fill is a forwarded one (fwd=...).
	Hit, Fill bool
	Bytes     int64 // body bytes received
	Key       string
	// Detail says what went wrong, for the report's list of corrupt and
	// stale answers.
	Detail string
}
