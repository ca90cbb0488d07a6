package router

import (
	"cmp"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
)

// ErrNoEdge is returned by Decide when no edge is routable; the HTTP layer
// answers 503.
var ErrNoEdge = errors.New("no healthy edge")

// DefaultEquivalence is how much longer than the nearest edge's estimated
// round trip another edge may be and still share its clients.
const DefaultEquivalence = 5 * time.Millisecond

// maxExplained bounds the candidates an explained decision lists; the
// choice itself always considers every equivalent edge.
const maxExplained = 16

// Edge is an edge the router may send clients to.
type Edge struct {
	ID, Region string
	Lat, Lon   float64
	// PublicURL is where clients are sent: scheme, host and an optional
	// path prefix, with or without a trailing slash.
	PublicURL string
	// Healthy edges are routable; NewTable leaves the others out.
	Healthy bool
	// RTT is what the edge measured to client networks (GET /v1/edges'
	// rtt); NewTable keeps the networks with at least
	// TableOptions.MinRTTSamples.
	RTT []MeasuredRTT
}

// MeasuredRTT is an edge's median RTT to one client network (a /24 or
// /48), over Samples of its recent connections.
type MeasuredRTT struct {
	Network netip.Prefix
	RTT     time.Duration
	Samples float64
}

// DefaultMinRTTSamples is how many connections an edge must have measured
// from a network before their median replaces the model's estimate.
const DefaultMinRTTSamples = 8

// measuredEdge is one edge's measurement for a network, in Table.measured.
type measuredEdge struct {
	i   int32
	rtt time.Duration
	n   float64
}

// Candidate is an edge considered for a decision.
type Candidate struct {
	Edge       string  `json:"edge"`
	Region     string  `json:"region"`
	URL        string  `json:"url"`
	DistanceKm float64 `json:"distance_km"`
	EstRTTms   float64 `json:"est_rtt_ms"`
	// MeasuredRTTms is the edge's measured RTT to the client's network,
	// when it has one the decision used (then it ranked the edge, not
	// EstRTTms).
	MeasuredRTTms float64 `json:"measured_rtt_ms,omitempty"`
	// Holds is set in explained decisions when the plan is known: whether
	// the edge holds the object under it.
	Holds *bool `json:"holds,omitempty"`
}

// Decision is where to send one client for one key, and why.
type Decision struct {
	Edge   string
	URL    string // the edge's public URL, without a trailing slash
	Region string
	// DistanceKm and EstRTTms are from the client's location to the edge;
	// both 0 when the client could not be located.
	DistanceKm float64
	EstRTTms   float64
	// RTTSource says what ranked the chosen edge: "measured" (the edge's
	// measured RTT to the client's network, MeasuredRTTms), "model"
	// (EstRTTms), or "" when the client was not located and nothing was
	// measured.
	RTTSource     string
	MeasuredRTTms float64
	Reason        string
	// Candidates are the equivalent edges the choice was made among,
	// nearest first (at most 16); only in explained decisions.
	Candidates []Candidate
	// Location is where the client was placed.
	Location geoip.Location
}

// Query is one routing question put to a Table.
type Query struct {
	Location  geoip.Location
	Namespace string
	Key       string
	// Affinity is hashed instead of the key when Key is empty (a DNS
	// query, /v1/route without key), e.g. the client's network, so one
	// client keeps one edge.
	Affinity uint64
	// Holders are the edges that hold the object under the plan in force;
	// nil means unknown.
	Holders []string
	// Explain fills Decision.Candidates.
	Explain bool
	// Network is the client's /24 or /48, whose measured RTTs rank the
	// edges that have them; zero: none.
	Network netip.Prefix
}

// TableOptions tune a Table; the zero value takes the defaults.
type TableOptions struct {
	// Equivalence: edges within this much estimated RTT of the nearest
	// share its clients. Default DefaultEquivalence.
	Equivalence time.Duration
	// CacheEntries bounds the per-location cache of rankings; when full it
	// is emptied. Default 65,536; negative disables it.
	CacheEntries int
	// MinRTTSamples is how many measured connections make an edge's RTT
	// to a network count. Default DefaultMinRTTSamples.
	MinRTTSamples float64
}

// Table answers routing queries over one fixed set of routable edges. It
// is immutable apart from its cache and safe for concurrent use; a change
// of membership or health builds a new Table, which also drops every
// cached ranking.
type Table struct {
	edges []tableEdge // sorted by ID
	equiv time.Duration
	all   *ranking // every edge, equivalent, for unlocated clients

	cache rankCache[geo.Point]

	// measured holds, per client network, the edges that measured it.
	measured map[netip.Prefix][]measuredEdge
	mcache   rankCache[measuredKey]
}

// rankCache holds rankings by K, at most max of them (none if max <= 0).
// It is emptied when full: emptying beats tracking recency here, as
// rankings are cheap to recompute and the busy keys come back at once.
type rankCache[K comparable] struct {
	max int64
	n   atomic.Int64
	m   sync.Map // K → *ranking
}

func (c *rankCache[K]) load(k K) *ranking {
	if c.max <= 0 {
		return nil
	}
	if v, ok := c.m.Load(k); ok {
		return v.(*ranking)
	}
	return nil
}

func (c *rankCache[K]) store(k K, rk *ranking) {
	if c.max <= 0 {
		return
	}
	if c.n.Add(1) > c.max {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(k, rk)
}

type tableEdge struct {
	id, region, url string
	point           geo.Point
	// x, y, z is the point as a unit vector: the dot product of two
	// such vectors is the cosine of the angle between them, so ranking
	// a thousand edges costs three multiplications each instead of a
	// haversine.
	x, y, z float64
	// seed is the hash of the id that rendezvous hashing mixes with a
	// key; stable across processes so every router picks alike.
	seed uint64
	rtt  []MeasuredRTT
}

// ranking is the edges equivalent to the nearest for one location, nearest
// first. Shared by every query from that location: never modified.
type ranking struct {
	idx  []int32 // into Table.edges
	cand []Candidate
}

// NewTable builds a table of the healthy edges among edges. Edges with an
// empty ID or PublicURL, or coordinates out of range, are left out.
func NewTable(edges []Edge, opts TableOptions) *Table {
	t := &Table{equiv: opts.Equivalence}
	t.cache.max = int64(opts.CacheEntries)
	if t.equiv <= 0 {
		t.equiv = DefaultEquivalence
	}
	minSamples := opts.MinRTTSamples
	if minSamples <= 0 {
		minSamples = DefaultMinRTTSamples
	}
	if opts.CacheEntries == 0 {
		t.cache.max = 1 << 16
	}
	t.mcache.max = t.cache.max
	for _, e := range edges {
		p := geo.Point{Lat: e.Lat, Lon: e.Lon}
		if !e.Healthy || e.ID == "" || e.PublicURL == "" || !validPoint(p) {
			continue
		}
		u := unit(p)
		t.edges = append(t.edges, tableEdge{
			id: e.ID, region: e.Region, url: strings.TrimRight(e.PublicURL, "/"),
			point: p, x: u[0], y: u[1], z: u[2], seed: xxhash.Sum64String(e.ID), rtt: e.RTT,
		})
	}
	slices.SortFunc(t.edges, func(a, b tableEdge) int { return strings.Compare(a.id, b.id) })
	t.edges = slices.CompactFunc(t.edges, func(a, b tableEdge) bool { return a.id == b.id })
	for i, e := range t.edges {
		for _, m := range e.rtt {
			if m.Samples >= minSamples && m.RTT > 0 && m.Network.IsValid() {
				if t.measured == nil {
					t.measured = map[netip.Prefix][]measuredEdge{}
				}
				n := m.Network.Masked()
				t.measured[n] = append(t.measured[n], measuredEdge{int32(i), m.RTT, m.Samples})
			}
		}
	}
	all := &ranking{idx: make([]int32, len(t.edges))}
	for i, e := range t.edges {
		all.idx[i] = int32(i)
		if i < maxExplained {
			all.cand = append(all.cand, Candidate{Edge: e.id, Region: e.region, URL: e.url})
		}
	}
	t.all = all
	return t
}

// Len is the number of routable edges.
func (t *Table) Len() int { return len(t.edges) }

// Edges returns the routable edges' ids, sorted.
func (t *Table) Edges() []string {
	ids := make([]string, len(t.edges))
	for i, e := range t.edges {
		ids[i] = e.id
	}
	return ids
}

// Decide picks the edge for q: the edges within the equivalence margin of
// the nearest one's estimated RTT; among them those that hold the object
// under the plan, when any does; among those the winner of rendezvous
// hashing on the namespace and key.
func (t *Table) Decide(q Query) (Decision, error) {
	if len(t.edges) == 0 {
		return Decision{Location: q.Location}, ErrNoEdge
	}
	located := q.Location.Source != geoip.SourceNone
	rk := t.all
	byMeasure := false
	if ms := t.measured[q.Network]; len(ms) > 0 && q.Network.IsValid() {
		rk, byMeasure = t.rankMeasured(q, ms, located), true
	} else if located {
		rk = t.rank(q.Location.Point)
	}

	// Plan holders among the equivalent edges, if the plan is known.
	held := 0
	if q.Holders != nil {
		for _, i := range rk.idx {
			if slices.Contains(q.Holders, t.edges[i].id) {
				held++
			}
		}
	}
	h := q.Affinity
	if q.Key != "" {
		h = xxhash.Sum64String(q.Key) ^ mix(xxhash.Sum64String(q.Namespace))
	}
	best, bestScore := int32(-1), uint64(0)
	for _, i := range rk.idx {
		if held > 0 && !slices.Contains(q.Holders, t.edges[i].id) {
			continue
		}
		// Ties (astronomically rare) go to the lower index, i.e. id.
		if s := mix(h ^ t.edges[i].seed); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	e := &t.edges[best]
	d := Decision{Edge: e.id, URL: e.url, Region: e.region, Location: q.Location}
	if located {
		d.RTTSource = "model"
	}
	if byMeasure {
		// rankMeasured ranks an edge by its measurement whenever it has
		// one for the network.
		for _, m := range t.measured[q.Network] {
			if m.i == best {
				d.RTTSource, d.MeasuredRTTms = "measured", ms(m.rtt)
			}
		}
	}
	if located {
		for _, c := range rk.cand {
			if c.Edge == e.id {
				d.DistanceKm, d.EstRTTms = c.DistanceKm, c.EstRTTms
				break
			}
		}
		if d.DistanceKm == 0 && d.EstRTTms == 0 {
			// Beyond the explained prefix of a very large pool.
			km := geo.DistanceKm(q.Location.Point, e.point)
			d.DistanceKm, d.EstRTTms = km, ms(geo.EstimateRTT(km))
		}
	}
	d.Reason = q.Location.Reason + "; " + t.why(len(rk.idx), held, q, located || byMeasure)
	if d.RTTSource == "measured" {
		d.Reason += "; measured RTT " + strconv.FormatFloat(d.MeasuredRTTms, 'f', 1, 64) + " ms from " + q.Network.String()
	}
	if q.Explain {
		d.Candidates = make([]Candidate, len(rk.cand))
		copy(d.Candidates, rk.cand)
		if q.Holders != nil {
			for i := range d.Candidates {
				holds := slices.Contains(q.Holders, d.Candidates[i].Edge)
				d.Candidates[i].Holds = &holds
			}
		}
	}
	return d, nil
}

// rankMeasured ranks the edges for a client of network q.Network, which
// the edges of meas measured: each edge by its measured RTT when it has one, else by the
// model's estimate from the client's location (unlocated: measured edges
// only). The edges within the equivalence margin of the best are
// candidates, as in computeRank. Cached per network, for one location.
func (t *Table) rankMeasured(q Query, meas []measuredEdge, located bool) *ranking {
	key := measuredKey{q.Network, q.Location.Point, located}
	if rk := t.mcache.load(key); rk != nil {
		return rk
	}
	type cand struct {
		i        int32
		km       float64
		est, rtt time.Duration
		measured bool
	}
	var u [3]float64
	if located {
		u = unit(q.Location.Point)
	}
	// The model's nearest, found by dot product as computeRank does, and
	// the best measurement: together they bound the window.
	best := time.Duration(math.MaxInt64)
	if located {
		bi, bestDot := 0, math.Inf(-1)
		for i := range t.edges {
			e := &t.edges[i]
			if d := u[0]*e.x + u[1]*e.y + u[2]*e.z; d > bestDot {
				bi, bestDot = i, d
			}
		}
		best = geo.EstimateRTT(chordKm(u, &t.edges[bi]))
	}
	for _, m := range meas {
		best = min(best, m.rtt)
	}
	limit := best + t.equiv
	cs := make([]cand, 0, 16)
	measured := func(i int32) bool {
		return slices.ContainsFunc(meas, func(m measuredEdge) bool { return m.i == i })
	}
	for _, m := range meas {
		if m.rtt <= limit {
			c := cand{i: m.i, rtt: m.rtt, measured: true}
			if located {
				c.km = chordKm(u, &t.edges[m.i])
				c.est = geo.EstimateRTT(c.km)
			}
			cs = append(cs, c)
		}
	}
	if located {
		cosLimit := math.Cos(maxKmWithin(limit)/geo.EarthRadiusKm) - 1e-9
		for i := range t.edges {
			e := &t.edges[i]
			if u[0]*e.x+u[1]*e.y+u[2]*e.z < cosLimit {
				continue
			}
			if measured(int32(i)) {
				continue
			}
			km := chordKm(u, e)
			if est := geo.EstimateRTT(km); est <= limit {
				cs = append(cs, cand{i: int32(i), km: km, est: est, rtt: est})
			}
		}
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if c := cmp.Compare(a.rtt, b.rtt); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	rk := &ranking{}
	for j, c := range cs {
		rk.idx = append(rk.idx, c.i)
		if j < maxExplained {
			e := &t.edges[c.i]
			cd := Candidate{Edge: e.id, Region: e.region, URL: e.url, DistanceKm: c.km, EstRTTms: ms(c.est)}
			if c.measured {
				cd.MeasuredRTTms = ms(c.rtt)
			}
			rk.cand = append(rk.cand, cd)
		}
	}
	t.mcache.store(key, rk)
	return rk
}

// measuredKey keys Table.mcache: a ranking by measurement holds for one
// network placed at one point.
type measuredKey struct {
	network netip.Prefix
	at      geo.Point
	located bool
}

// why explains the choice among the equivalent edges.
func (t *Table) why(n, held int, q Query, located bool) string {
	on := "the key"
	if q.Key == "" {
		on = "the client"
	}
	var b strings.Builder
	if !located {
		b.WriteString("every edge equivalent")
	} else {
		b.WriteString(strconv.Itoa(n))
		if n == 1 {
			b.WriteString(" edge")
		} else {
			b.WriteString(" edges")
		}
		b.WriteString(" within ")
		b.WriteString(t.equiv.String())
		b.WriteString(" of the nearest")
	}
	switch {
	case held > 0:
		b.WriteString(", ")
		b.WriteString(strconv.Itoa(held))
		b.WriteString(" holding the object under the plan")
	case q.Holders != nil:
		b.WriteString(", none holding the object under the plan")
	}
	if n > 1 && held != 1 {
		b.WriteString("; rendezvous hashing on ")
		b.WriteString(on)
	}
	return b.String()
}

// rank returns the ranking for p, from the cache when it can.
func (t *Table) rank(p geo.Point) *ranking {
	if rk := t.cache.load(p); rk != nil {
		return rk
	}
	rk := t.computeRank(p)
	t.cache.store(p, rk)
	return rk
}

// computeRank finds the edges whose estimated RTT from p is within the
// equivalence margin of the nearest one's.
func (t *Table) computeRank(p geo.Point) *ranking {
	u := unit(p)
	best, bestDot := 0, math.Inf(-1)
	for i := range t.edges {
		e := &t.edges[i]
		if d := u[0]*e.x + u[1]*e.y + u[2]*e.z; d > bestDot {
			best, bestDot = i, d
		}
	}
	limit := geo.EstimateRTT(chordKm(u, &t.edges[best])) + t.equiv
	// The farthest an equivalent edge can be, as a cosine, so the scan
	// below computes exact distances for the few candidates only. The
	// epsilon keeps the pre-filter inclusive; the exact test decides.
	cosLimit := math.Cos(maxKmWithin(limit)/geo.EarthRadiusKm) - 1e-9

	rk := &ranking{}
	type cand struct {
		i   int32
		km  float64
		rtt time.Duration
	}
	cs := make([]cand, 0, 16)
	for i := range t.edges {
		e := &t.edges[i]
		if u[0]*e.x+u[1]*e.y+u[2]*e.z < cosLimit {
			continue
		}
		km := chordKm(u, e)
		if rtt := geo.EstimateRTT(km); rtt <= limit {
			cs = append(cs, cand{int32(i), km, rtt})
		}
	}
	if len(cs) == 0 { // only if rounding betrayed the pre-filter
		km := chordKm(u, &t.edges[best])
		cs = append(cs, cand{int32(best), km, geo.EstimateRTT(km)})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if c := cmp.Compare(a.rtt, b.rtt); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	rk.idx = make([]int32, len(cs))
	for j, c := range cs {
		rk.idx[j] = c.i
		if j < maxExplained {
			e := &t.edges[c.i]
			rk.cand = append(rk.cand, Candidate{Edge: e.id, Region: e.region, URL: e.url, DistanceKm: c.km, EstRTTms: ms(c.rtt)})
		}
	}
	return rk
}

// maxKmWithin is the longest great-circle distance whose estimated RTT is
// at most limit. It inverts geo.EstimateRTT by bisection rather than
// restating the model's formula, which must live in one place.
func maxKmWithin(limit time.Duration) float64 {
	lo, hi := 0.0, math.Pi*geo.EarthRadiusKm
	if geo.EstimateRTT(hi) <= limit {
		return hi
	}
	for hi-lo > 0.01 {
		mid := (lo + hi) / 2
		if geo.EstimateRTT(mid) <= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// chordKm is the great-circle distance from u to e: the chord between the
// unit vectors turned back into an arc. It agrees with geo.DistanceKm's
// haversine to well under a metre and costs one square root and one
// arcsine instead of four trigonometric calls; a cold ranking computes it
// for every edge near the client.
func chordKm(u [3]float64, e *tableEdge) float64 {
	dx, dy, dz := u[0]-e.x, u[1]-e.y, u[2]-e.z
	chord := math.Sqrt(dx*dx + dy*dy + dz*dz)
	return 2 * geo.EarthRadiusKm * math.Asin(math.Min(1, chord/2))
}

func unit(p geo.Point) [3]float64 {
	const rad = math.Pi / 180
	sLat, cLat := math.Sincos(p.Lat * rad)
	sLon, cLon := math.Sincos(p.Lon * rad)
	return [3]float64{cLat * cLon, cLat * sLon, sLat}
}

// mix is the splitmix64 finaliser: a bijection that spreads every input
// bit over the output, so XOR-combined hashes rank edges independently.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func validPoint(p geo.Point) bool {
	return p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180
}
