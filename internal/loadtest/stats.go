package loadtest

import (
	"math"
	"math/bits"
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds, in microseconds: 1 µs to 60 s at 3 significant digits
// (0.1% precision). A latency outside the range is clamped into it, so a
// request that took longer than a minute counts as one that took a minute.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
)

// maxBadKept bounds the corrupt and stale samples a Recorder keeps for the
// report: a broken edge can produce millions and each one kept holds its
// key and detail. Every one is counted.
const maxBadKept = 1000

// maxWindows bounds the timeline at a day of one-second windows; a sample
// intended later counts in the last window. It keeps a sample with a
// nonsense Intended offset from allocating gigabytes.
const maxWindows = 24 * 60 * 60

// Recorder collects Samples from many goroutines and builds the run's
// Report. Its zero value is ready to use. Record is safe for concurrent
// use, as are Snapshot and Report, which may run while Record does (a
// Report taken mid-run sees some of the in-flight samples, not all).
//
// Record takes two short locks and allocates nothing once a region, an
// op, an error class and a second of the timeline have been seen: one lock
// per region, so
// regions do not contend, and one for the timeline, whose critical section
// is a few counter increments. The per-region HDR histograms are merged
// only when a Snapshot or the Report asks for overall figures.
type Recorder struct {
	regions sync.Map // region name → *regionStats
	// writes are the run's publishes and purges: in the report by
	// operation and in the error counts, never in a region's figures,
	// the overall figures or the timeline, which are what clients saw.
	writes regionStats

	tlMu    sync.Mutex
	windows []*window // index: Intended in whole seconds

	badMu    sync.Mutex
	corrupt  []Sample
	stale    []Sample
	nCorrupt int64
	nStale   int64
}

// regionStats is one region's share of the Recorder.
type regionStats struct {
	mu  sync.Mutex
	all group
	// ops is a short list searched linearly: there are six ops, and a
	// map keyed by string would hash on every sample for no gain.
	ops []*opGroup
}

type opGroup struct {
	op Op
	g  group
}

// group is the figures of one slice of the samples (a region, or a region
// and an op).
type group struct {
	// lat and mod are lazily allocated: each is 136 KiB.
	lat, mod                     *hdr.Histogram
	requests, errors, hits, fill int64
	bytes                        int64
	byClass                      map[ErrorClass]int64
}

// window is one second of the timeline, by Intended.
type window struct {
	requests, errors, hits, fills, bytes int64
	lat                                  logHist
}

// Record adds one finished request. It never blocks for long and does not
// keep s beyond copying it into the corrupt or stale list.
func (r *Recorder) Record(s Sample) {
	rs := &r.writes
	if !s.Op.isWrite() {
		rs = r.region(s.Region)
	}
	rs.mu.Lock()
	rs.all.add(&s)
	rs.opGroup(s.Op).add(&s)
	rs.mu.Unlock()
	if rs == &r.writes {
		return
	}

	idx := s.Intended / time.Second
	switch {
	case idx < 0:
		idx = 0
	case idx >= maxWindows:
		idx = maxWindows - 1
	}
	r.tlMu.Lock()
	for int(idx) >= len(r.windows) {
		r.windows = append(r.windows, nil)
	}
	w := r.windows[idx]
	if w == nil {
		w = new(window)
		r.windows[idx] = w
	}
	w.requests++
	if s.Class != "" {
		w.errors++
	}
	if s.Hit {
		w.hits++
	}
	if s.Fill {
		w.fills++
	}
	w.bytes += s.Bytes
	if timed(&s) {
		w.lat.record(s.Latency)
	}
	r.tlMu.Unlock()

	if s.Class == ClassCorrupt || s.Class == ClassStale {
		r.badMu.Lock()
		if s.Class == ClassCorrupt {
			r.nCorrupt++
			if len(r.corrupt) < maxBadKept {
				r.corrupt = append(r.corrupt, s)
			}
		} else {
			r.nStale++
			if len(r.stale) < maxBadKept {
				r.stale = append(r.stale, s)
			}
		}
		r.badMu.Unlock()
	}
}

func (r *Recorder) region(name string) *regionStats {
	if v, ok := r.regions.Load(name); ok {
		return v.(*regionStats)
	}
	v, _ := r.regions.LoadOrStore(name, new(regionStats))
	return v.(*regionStats)
}

// opGroup returns the group of op, creating it. Called with rs.mu held.
func (rs *regionStats) opGroup(op Op) *group {
	for _, o := range rs.ops {
		if o.op == op {
			return &o.g
		}
	}
	o := &opGroup{op: op}
	rs.ops = append(rs.ops, o)
	return &o.g
}

// timed reports whether s goes into the latency histograms: a request the
// load generator never sent (overload) has no latency, and counting it as
// zero would pull the percentiles down just when the target is struggling.
func timed(s *Sample) bool { return s.Class != ClassOverload }

func (g *group) add(s *Sample) {
	g.requests++
	if s.Class != "" {
		g.errors++
		if g.byClass == nil {
			g.byClass = make(map[ErrorClass]int64)
		}
		g.byClass[s.Class]++
	}
	if s.Hit {
		g.hits++
	}
	if s.Fill {
		g.fill++
	}
	g.bytes += s.Bytes
	if !timed(s) {
		return
	}
	if g.lat == nil {
		g.lat = newHist()
	}
	// RecordValue fails only for a value out of range, which micros
	// clamps away.
	_ = g.lat.RecordValue(micros(s.Latency))
	// Modelled is zero when no edge answered: there is no user-side
	// figure to add, rather than a zero one.
	if s.Modelled > 0 {
		if g.mod == nil {
			g.mod = newHist()
		}
		_ = g.mod.RecordValue(micros(s.Modelled))
	}
}

// merge adds o into g. Called with o's lock held.
func (g *group) merge(o *group) {
	g.requests += o.requests
	g.errors += o.errors
	g.hits += o.hits
	g.fill += o.fill
	g.bytes += o.bytes
	for c, n := range o.byClass {
		if g.byClass == nil {
			g.byClass = make(map[ErrorClass]int64)
		}
		g.byClass[c] += n
	}
	if o.lat != nil {
		if g.lat == nil {
			g.lat = newHist()
		}
		g.lat.Merge(o.lat)
	}
	if o.mod != nil {
		if g.mod == nil {
			g.mod = newHist()
		}
		g.mod.Merge(o.mod)
	}
}

func newHist() *hdr.Histogram { return hdr.New(histMin, histMax, histDigits) }

func micros(d time.Duration) int64 {
	us := d.Microseconds()
	return min(max(us, histMin), histMax)
}

// quantile returns h's q quantile (0 < q ≤ 1), zero for an empty or nil
// histogram.
func quantile(h *hdr.Histogram, q float64) time.Duration {
	if h == nil || h.TotalCount() == 0 {
		return 0
	}
	return time.Duration(h.ValueAtQuantile(q*100)) * time.Microsecond
}

// hitRatio is hits ÷ (hits + fills): the share of the answers whose cache
// status was known that the edge served from its store. Errors, writes and
// answers without a cache status are left out rather than counted as
// misses; zero when there is none.
func hitRatio(hits, fills int64) float64 {
	if hits+fills == 0 {
		return 0
	}
	return float64(hits) / float64(hits+fills)
}

// Snapshot is the run so far, for a progress line.
type Snapshot struct {
	// Requests counts every sample recorded, errors included.
	Requests int64
	Errors   int64
	// Hits and Fills count answers by cache status; HitRatio is
	// Hits ÷ (Hits + Fills).
	Hits, Fills int64
	HitRatio    float64
	// P50 and P99 are the measured latency percentiles of every sample so
	// far (not a recent window).
	P50, P99       time.Duration
	Corrupt, Stale int64
	Bytes          int64
}

// Snapshot sums the run so far. It merges every region's histogram, which
// costs about as much as a few thousand Records: fine twice a second, not
// per request. A rate is the difference of two Snapshots' Requests over the
// time between them (see Progress), since the Recorder keeps no clock.
func (r *Recorder) Snapshot() Snapshot {
	var all group
	r.regions.Range(func(_, v any) bool {
		rs := v.(*regionStats)
		rs.mu.Lock()
		all.merge(&rs.all)
		rs.mu.Unlock()
		return true
	})
	r.badMu.Lock()
	nc, ns := r.nCorrupt, r.nStale
	r.badMu.Unlock()
	return Snapshot{
		Requests: all.requests,
		Errors:   all.errors,
		Hits:     all.hits,
		Fills:    all.fill,
		HitRatio: hitRatio(all.hits, all.fill),
		P50:      quantile(all.lat, 0.50),
		P99:      quantile(all.lat, 0.99),
		Corrupt:  nc,
		Stale:    ns,
		Bytes:    all.bytes,
	}
}

// logHist is a compact latency histogram for one timeline window: 32
// linear sub-buckets per power of two of microseconds, so a quantile is
// within about 3% of the truth, in 2.8 KiB where an HDR histogram at the
// same range would take 20 KiB or more. A long run has one per second.
type logHist struct {
	n      int64
	counts [logBuckets]uint32
}

const (
	logSubBits = 5
	logSub     = 1 << logSubBits // sub-buckets per power of two
	// Values below logSub µs have a bucket each; above, each power of two
	// up to 2^25 µs (histMax < 2^26) has logSub buckets.
	logBuckets = logSub + (25-logSubBits+1)*logSub
)

func logIndex(us int64) int {
	if us < logSub {
		return int(us)
	}
	e := bits.Len64(uint64(us)) - 1 // us in [2^e, 2^(e+1))
	sub := int(us>>(e-logSubBits)) - logSub
	return logSub + (e-logSubBits)*logSub + sub
}

// logUpper is the highest value of bucket i, so that a reported quantile,
// like HDR's, is never below the true one.
func logUpper(i int) int64 {
	if i < logSub {
		return int64(i)
	}
	e := (i-logSub)/logSub + logSubBits
	sub := int64((i-logSub)%logSub + logSub)
	return (sub+1)<<(e-logSubBits) - 1
}

func (h *logHist) record(d time.Duration) {
	us := d.Microseconds()
	us = min(max(us, 0), histMax)
	h.counts[logIndex(us)]++
	h.n++
}

// quantile returns the q quantile (0 < q ≤ 1), zero when empty.
func (h *logHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += int64(c)
		if seen >= rank {
			return time.Duration(logUpper(i)) * time.Microsecond
		}
	}
	return histMax * time.Microsecond
}

// sortedRegions returns the regions' names, sorted, with their stats.
func (r *Recorder) sortedRegions() ([]string, map[string]*regionStats) {
	m := make(map[string]*regionStats)
	var names []string
	r.regions.Range(func(k, v any) bool {
		names = append(names, k.(string))
		m[k.(string)] = v.(*regionStats)
		return true
	})
	sort.Strings(names)
	return names, m
}

// NewRecorder returns an empty Recorder; the zero value is one too.
func NewRecorder() *Recorder { return new(Recorder) }
