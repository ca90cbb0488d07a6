package loadtest

import "time"

// Scenario is one load test, as read from a scenario file (see
// ParseScenario and the README's "Load testing" section, which documents
// every field). Every duration and rate is checked when the file is read:
// a Scenario in hand is valid.
type Scenario struct {
	// File is the path the scenario was read from, for messages.
	File string
	// Name is the scenario's name (default: the file's base name without
	// .yaml), used in report titles and output file names.
	Name        string
	Description string
	// Duration is how long arrivals run; a run also ends when every
	// phase has run (whichever is first). Default: the sum of the
	// phases' durations.
	Duration time.Duration
	// Seed makes the run's random choices (clients, keys, sizes, times)
	// repeatable; 0 picks one at random and the report names it.
	Seed uint64

	Target   Target
	Clients  Clients
	Objects  Objects
	Arrivals Arrivals
	// Mix weighs the read operations against each other.
	Mix Mix
	// Writes run beside the reads, each at its own open-loop rate.
	Writes []Write
	// Events happen once, at a time from the start of the run.
	Events []Event
}

// TargetKind says where read requests go.
type TargetKind string

const (
	// TargetRouter sends every read to the router and follows its 302
	// to the edge it chose, as a browser does.
	TargetRouter TargetKind = "router"
	// TargetEdge sends every read straight to one edge, by id.
	TargetEdge TargetKind = "edge"
)

type Target struct {
	Kind TargetKind // default router
	// Edge is the edge's id when Kind is TargetEdge.
	Edge string
	// KeepEdge makes a virtual client ask the router once per session
	// and send the session's other requests straight to that edge.
	KeepEdge bool
	// SessionRequests is the number of requests a virtual client makes
	// before it is replaced by a new one (a new IP, a new routing
	// decision when KeepEdge). Default 1: every request is a new client.
	SessionRequests int
}

type Clients struct {
	// Demand is the demand-point CSV the clients are drawn from (the
	// placement package's format). Default testdata/demand.csv.
	Demand string
	// Regions, if set, replaces each region's weight (the sum of its
	// demand points' weights). A region not listed gets weight 0; a
	// listed region with no demand point is an error.
	Regions map[string]float64
}

type Objects struct {
	// Count is the number of distinct keys read (N of the Zipf law).
	// Default 1000, at most 1,000,000.
	Count int
	// Prefix is put before every generated key: "<prefix><i>". Default
	// "loadtest/<name>/".
	Prefix string
	// Zipf is the exponent s of the popularity law P(i) ∝ 1/i^s, i =
	// 1…Count; 0 is uniform. Any s ≥ 0 is allowed (not only s > 1).
	// Default 0.9.
	Zipf float64
	// Sizes is the distribution of object sizes (default a fixed 4 KiB).
	Sizes SizeDist
	// Consistency is the consistency level the objects are published
	// with before the run: strong, bounded, consistent-prefix or
	// eventual (default eventual).
	Consistency string
	// Preload publishes every object before the run starts (default
	// true). When false the objects must already be there.
	Preload bool
	// CacheControl is sent with each publish (default
	// "public, max-age=60").
	CacheControl string
}

// SizeKind is the family of a SizeDist.
type SizeKind string

const (
	SizeFixed     SizeKind = "fixed"
	SizeLognormal SizeKind = "lognormal"
	SizeWeighted  SizeKind = "weighted"
)

// SizeDist is a distribution of object sizes in bytes.
type SizeDist struct {
	Kind SizeKind
	// Fixed is the one size of SizeFixed.
	Fixed int64
	// Median and Sigma parameterise SizeLognormal: ln(size) is normal
	// with mean ln(Median) and standard deviation Sigma. Min and Max
	// clamp a draw (defaults 1 byte and 64 MiB).
	Median   int64
	Sigma    float64
	Min, Max int64
	// Sizes and Weights are SizeWeighted's choices, drawn in proportion
	// to their weights.
	Sizes   []int64
	Weights []float64
}

// ArrivalMode is how requests are started.
type ArrivalMode string

const (
	// Open starts requests at scheduled times whatever the server does;
	// latency counts from the scheduled time.
	Open ArrivalMode = "open"
	// Closed runs Concurrency clients, each sending its next request
	// when its previous one is answered.
	Closed ArrivalMode = "closed"
)

type Arrivals struct {
	Mode ArrivalMode // default open
	// Phases run one after another (open loop only).
	Phases []Phase
	// Concurrency is the closed loop's number of clients.
	Concurrency int
	// MaxInFlight bounds the requests an open loop has outstanding; a
	// request that would exceed it is not sent and counts as an error of
	// class "overload" (default 10,000). It keeps a dead server from
	// exhausting the load generator's memory.
	MaxInFlight int
}

// Phase is a stretch of an open-loop arrival schedule. Its rate goes
// linearly from From to To requests per second over Duration: From == To
// is a constant rate, and a phase with a different From than the previous
// one's To is a step.
type Phase struct {
	Duration time.Duration
	From, To float64
	// Line is the phase's line in the scenario file, for messages.
	Line int
}

// Mix weighs the read operations; weights need not sum to anything.
// Default: all GET.
type Mix struct {
	Get, Head, Conditional, Range float64
}

// WriteOp is a kind of write.
type WriteOp string

const (
	OpPublish WriteOp = "publish"
	OpPurge   WriteOp = "purge"
)

// PurgeBy is what a purge selects.
type PurgeBy string

const (
	PurgeKey    PurgeBy = "key"
	PurgePrefix PurgeBy = "prefix"
	PurgeTag    PurgeBy = "tag"
)

// Write is a stream of writes at a constant open-loop rate, for the whole
// run or from At for For.
type Write struct {
	Op   WriteOp
	Rate float64 // per second
	At   time.Duration
	For  time.Duration // 0: to the end of the run
	// Publish: W is the origin's w= (0, a number, quorum or all; ""
	// leaves it to the origin), Consistency the level (default the
	// objects'); the key is drawn from the run's objects by popularity.
	W           string
	Consistency string
	// Purge: By selects (default key); Soft marks stale instead of
	// removing; Wait asks the origin to answer once every edge applied
	// it.
	By   PurgeBy
	Soft bool
	Wait bool
	Line int
}

// EventKind is what an Event does.
type EventKind string

const (
	// EventPublish publishes one object (Key, Size, Consistency, W).
	EventPublish EventKind = "publish"
	// EventRepublish publishes new content for Count of the run's
	// objects (the most popular first) at Rate per second.
	EventRepublish EventKind = "republish"
	// EventFocus sends Share of the reads to Key for For, on top of the
	// schedule's rate multiplied by Multiplier (a flash crowd).
	EventFocus EventKind = "focus"
	// EventPurge purges by By (key, prefix or tag) Value.
	EventPurge EventKind = "purge"
	// EventKill, EventPause and EventRestart act on the edge Edge of a
	// cluster that `geocdn dev --processes` runs: SIGKILL, SIGSTOP for
	// For then SIGCONT, or a restart with the same data directory.
	EventKill    EventKind = "kill"
	EventPause   EventKind = "pause"
	EventRestart EventKind = "restart"
)

type Event struct {
	At   time.Duration
	Kind EventKind
	// Publish, focus, purge. Consistency (publish, republish) defaults
	// to the objects'; W (publish, republish) is as in Write.
	Key         string
	Size        int64
	Consistency string
	W           string
	// Republish: Count defaults to all the run's objects.
	Count int
	Rate  float64
	// Focus: Share is in (0, 1]; Multiplier defaults to 1. For is also
	// how long a pause lasts.
	Share      float64
	Multiplier float64
	For        time.Duration
	// Purge.
	By    PurgeBy
	Value string
	Soft  bool
	// Kill, pause, restart.
	Edge string
	Line int
}
