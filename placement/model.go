package placement

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
)

// Edge is a point of presence that can hold pushed replicas.
type Edge struct {
	// ID names the edge as the origin knows it (its certificate's
	// geocdn://edge/<id>).
	ID string
	// Region groups edges and demand for reports, affinities and measured
	// RTTs.
	Region string
	// Lat and Lon locate the edge, in degrees.
	Lat, Lon float64
	// FaultDomain names what fails together (a power grid, a facility);
	// replicas are spread over distinct ones. Empty puts the edge in a
	// domain of its own, reported as edge/<ID>, which no FaultDomain
	// shares: not even one spelled like the edge's id.
	FaultDomain string
	// CapacityBytes bounds the bytes of replicas placed here; 0 means no
	// limit.
	CapacityBytes int64
	// City is for people reading plans; the optimiser ignores it.
	City string
}

// Point returns the edge's location.
func (e Edge) Point() geo.Point { return geo.Point{Lat: e.Lat, Lon: e.Lon} }

// faultDomain identifies what an edge fails with. An edge without a
// FaultDomain has one of its own, kept apart from the named ones by own,
// so that an edge "a" and another declaring the domain "a" do not share
// one without saying so.
type faultDomain struct {
	name string
	own  bool
}

func (e Edge) domain() faultDomain {
	if e.FaultDomain == "" {
		return faultDomain{name: e.ID, own: true}
	}
	return faultDomain{name: e.FaultDomain}
}

// String is the domain as reports show it; an edge's own domain is
// edge/<id>, which no valid fault_domain can spell.
func (d faultDomain) String() string {
	if d.own {
		return "edge/" + d.name
	}
	return d.name
}

// DemandPoint is where requests come from, with how many.
type DemandPoint struct {
	// ID names the point in reports.
	ID string
	// Lat and Lon locate the point, in degrees. Both NaN means "at its
	// region's anchor" (Topology.Measured must know the region).
	Lat, Lon float64
	// Region is the point's region: it selects catalog affinities, measured
	// RTTs and the row of the latency report.
	Region string
	// Weight is the point's share of requests, in any unit (population,
	// internet users); only ratios matter. Positive.
	Weight float64

	src source // where ParseDemand read it
}

// Topology is the set of edges and what is known about latency between
// regions.
type Topology struct {
	Edges []Edge
	// Measured holds region anchors and measured RTTs between regions;
	// nil means the great-circle estimate everywhere.
	Measured *geo.Matrix
}

// Affinity scales a content's demand by region: the value for a demand
// point's region multiplies its weight; the key "*" gives the multiplier of
// every region not listed (default 1). {"sa-east": 20} makes São Paulo
// viewers twenty times as likely to ask as anyone else; {"sa-east": 1,
// "*": 0} confines the demand to sa-east. Nil means no preference.
type Affinity map[string]float64

// factor is the multiplier for region.
func (a Affinity) factor(region string) float64 {
	if v, ok := a[region]; ok {
		return v
	}
	if v, ok := a["*"]; ok {
		return v
	}
	return 1
}

// Class is a content class: the objects whose keys start with one of its
// prefixes share one replica set unless they are hot enough for their own.
type Class struct {
	// Name identifies the class in plans and reports.
	Name string
	// Namespace the class covers; "" covers every namespace (a class of
	// the key's own namespace wins over it at equal prefix length).
	Namespace string
	// Prefixes are key prefixes; a key belongs to the class of its longest
	// matching prefix. "" matches every key.
	Prefixes []string
	// Affinity applies to the class's objects that have none of their own
	// and to its unlisted bytes.
	Affinity Affinity
	// Replicas fixes the class's replication factor; 0 derives it from the
	// request rate (Config.ReplicasFor).
	Replicas int
	// Bytes and Rate describe content of the class not listed as objects:
	// its total size and request rate (requests per second).
	Bytes int64
	Rate  float64

	src source // where ParseCatalog read it
}

// Object is one object of the catalog.
type Object struct {
	// Namespace of the object; "" is "default".
	Namespace string
	// Key of the object (no leading slash).
	Key string
	// Size in bytes.
	Size int64
	// Rate is its request rate, requests per second.
	Rate float64
	// Affinity, when set, replaces the class's for this object.
	Affinity Affinity
	// Replicas, when positive, fixes the object's replication factor,
	// whatever its rate and Config.HotObjects: the object gets a replica
	// set of its own of that size, more or fewer than its class's, unless
	// its class fixes the same number and it has no affinity of its own
	// (then its class's set is that set). 0 derives k from the rate, for
	// the hottest objects (Config.HotObjects), else follows the class.
	Replicas int

	src source // where ParseCatalog read it
}

// Catalog is the content to place.
type Catalog struct {
	Classes []Class
	Objects []Object
}

// Problem is what the optimiser places: edges, demand and content.
type Problem struct {
	Topology *Topology
	Demand   []DemandPoint
	// Catalog nil places one class "default" covering every key, with the
	// demand as given and no size.
	Catalog *Catalog
}

// Config tunes the optimiser. The zero value of every field takes the
// default named in its comment; DefaultConfig returns them filled in.
type Config struct {
	// MinReplicas and MaxReplicas bound the replication factor k. Defaults
	// 2 and 4; 1 ≤ MinReplicas ≤ MaxReplicas ≤ 64.
	MinReplicas, MaxReplicas int
	// ReplicaRate is the request rate (req/s) at which content gets one
	// replica more than MinReplicas; every doubling of the rate beyond it
	// adds another, up to MaxReplicas. 0 (default) keeps k at MinReplicas.
	ReplicaRate float64
	// HotObjects is how many of the most requested objects are considered
	// for a replica set of their own by their rate: one gets a set when
	// its rate asks for more replicas than its class has, or it has an
	// affinity of its own. An object whose Replicas fixes k gets its set
	// whether or not it is among them. Default 100; negative means none.
	HotObjects int
	// SLO, when positive, is the latency every demand point should see;
	// points that miss it are reported.
	SLO time.Duration
	// SLOPenalty makes the optimiser count every request estimated over
	// the SLO as SLOPenalty milliseconds slower than it is, trading mean
	// latency for fewer misses: with 100, moving a replica that brings one
	// request under the SLO is worth up to 100 ms more for another.
	// Default 0: the SLO is only reported. At most 100,000.
	SLOPenalty float64
	// BestEffort returns a plan even when constraints cannot all be met,
	// listing every violation in it; otherwise such a problem is an error
	// wrapping ErrInfeasible.
	BestEffort bool
	// Seed drives the randomised restarts; the same seed and input give
	// the same plan.
	Seed int64
	// Restarts is how many extra local searches from seeded random starts
	// each replica set gets, for sets whose demand × edges is at most
	// RestartWork. Default 8; negative means none.
	Restarts int
	// RestartWork bounds the size (demand points × edges) of a search that
	// restarts; large searches have many near-equal optima and gain little.
	// Default 200,000.
	RestartWork int
	// CapacityRounds is how many rounds of capacity pricing (Lagrangian
	// relaxation) run when edges' capacity made content compete; each
	// costs about two searches per competing replica set, and large
	// problems stop earlier, after a couple of seconds' work. Default 30;
	// negative means none.
	CapacityRounds int
	// Workers bounds the goroutines of one search. Default GOMAXPROCS.
	Workers int
	// MaxMoves bounds, in a re-plan, the replicas that may be added beyond
	// those that must be (new content, lost edges, a changed k). -1 means
	// no bound (DefaultConfig); 0, the zero value, allows only the moves
	// that must be made.
	MaxMoves int
	// ChurnPenalty, in a re-plan, is the improvement in request-weighted
	// latency (req/s × ms) a move must buy per GiB it moves. Default 0.
	ChurnPenalty float64
	// GeneratedAt stamps the plan. The optimiser never reads the clock.
	GeneratedAt time.Time
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MinReplicas: 2, MaxReplicas: 4, HotObjects: 100, Restarts: 8, RestartWork: 200_000, CapacityRounds: 30, MaxMoves: -1}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MinReplicas == 0 {
		c.MinReplicas = d.MinReplicas
	}
	if c.MaxReplicas == 0 {
		c.MaxReplicas = max(d.MaxReplicas, c.MinReplicas)
	}
	if c.HotObjects == 0 {
		c.HotObjects = d.HotObjects
	}
	if c.Restarts == 0 {
		c.Restarts = d.Restarts
	}
	if c.RestartWork == 0 {
		c.RestartWork = d.RestartWork
	}
	if c.CapacityRounds == 0 {
		c.CapacityRounds = d.CapacityRounds
	}
	return c
}

// Validate reports a configuration the optimiser cannot use.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.MinReplicas < 1 || c.MaxReplicas > 64 || c.MinReplicas > c.MaxReplicas {
		errs = append(errs, fmt.Errorf("replicas: want 1 ≤ min (%d) ≤ max (%d) ≤ 64", c.MinReplicas, c.MaxReplicas))
	}
	if c.ReplicaRate < 0 || math.IsNaN(c.ReplicaRate) || math.IsInf(c.ReplicaRate, 0) {
		errs = append(errs, fmt.Errorf("replica rate %v: want a finite rate ≥ 0", c.ReplicaRate))
	}
	if c.SLO < 0 {
		errs = append(errs, fmt.Errorf("slo %v: negative", c.SLO))
	}
	if c.SLOPenalty < 0 || c.SLOPenalty > 100_000 || math.IsNaN(c.SLOPenalty) {
		errs = append(errs, fmt.Errorf("slo penalty %v: want 0 to 100000 ms", c.SLOPenalty))
	}
	if c.SLOPenalty > 0 && c.SLO == 0 {
		errs = append(errs, errors.New("slo penalty without an slo"))
	}
	if c.ChurnPenalty < 0 || math.IsNaN(c.ChurnPenalty) || math.IsInf(c.ChurnPenalty, 0) {
		errs = append(errs, fmt.Errorf("churn penalty %v: want a finite value ≥ 0", c.ChurnPenalty))
	}
	if c.MaxMoves < -1 {
		errs = append(errs, fmt.Errorf("max moves %d: want ≥ 0, or -1 for no bound", c.MaxMoves))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: negative", c.Workers))
	}
	return errors.Join(errs...)
}

// ReplicasFor is the replication factor for content with the given request
// rate: MinReplicas, plus one at ReplicaRate and one more per doubling,
// capped at MaxReplicas.
func (c Config) ReplicasFor(rate float64) int {
	c = c.withDefaults()
	k := c.MinReplicas
	if c.ReplicaRate > 0 && rate >= c.ReplicaRate {
		k += 1 + int(math.Floor(math.Log2(rate/c.ReplicaRate)))
	}
	return min(k, c.MaxReplicas)
}
