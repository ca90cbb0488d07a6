package placement

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/geocdn/geocdn/internal/objkey"
)

// PlanVersion is the version of the plan format this package writes and
// reads.
const PlanVersion = 1

// Plan is a placement: which edges hold replicas of which content. It is
// what `geocdn placement plan --json` prints and what the origin accepts on
// PUT /v1/placement.
//
// The origin asks ReplicasFor on every publish. A key is looked up as
// follows:
//
//  1. an entry of Objects with the same namespace and key, if any;
//  2. else the class with the longest prefix of the key among Classes
//     whose Namespace is the key's or "" (every namespace); at equal
//     length the class naming the key's own namespace wins;
//  3. else nothing: the plan does not cover the key and the origin keeps
//     its static rule.
//
// A Plan must not be modified once ReplicasFor has been called; it is then
// safe for concurrent use.
type Plan struct {
	Version     int       `json:"version"`
	GeneratedAt time.Time `json:"generated_at,omitzero"`
	Seed        int64     `json:"seed"`
	Objective   Objective `json:"objective"`
	// Classes give a replica set per content class, matched by key
	// prefix.
	Classes []PlanClass `json:"classes"`
	// Objects override their class for the objects whose set differs
	// from their class's: those whose catalog entry fixes another k, and
	// the hottest that want more replicas or have an affinity of their
	// own.
	Objects []PlanObject `json:"objects,omitempty"`
	// Violations lists the constraints a best-effort plan does not meet;
	// empty for a plan that meets them all.
	Violations []Violation `json:"violations,omitempty"`

	once  sync.Once
	index planIndex
}

// Objective records what the plan optimised and what it achieves.
type Objective struct {
	// Name describes the objective.
	Name string `json:"name"`
	// MeanRTTMs is the request-weighted mean of the estimated round trip
	// from each demand point to the nearest replica of what it asks for.
	MeanRTTMs float64 `json:"mean_rtt_ms"`
	// SLOMs is the latency SLO, if one was set, and SLOMissShare the share
	// of requests estimated to miss it.
	SLOMs        float64 `json:"slo_ms,omitempty"`
	SLOMissShare float64 `json:"slo_miss_share,omitempty"`
	// MinReplicas and MaxReplicas bound k as configured.
	MinReplicas int `json:"min_replicas"`
	MaxReplicas int `json:"max_replicas"`
}

// PlanClass is the replica set of a content class.
type PlanClass struct {
	Name string `json:"name"`
	// Namespace the class covers; "" covers every namespace.
	Namespace string `json:"namespace,omitempty"`
	// Prefixes of the keys the class covers; "" covers every key.
	Prefixes []string `json:"prefixes"`
	// Replicas are edge ids, nearest to the most demand first.
	Replicas []string `json:"replicas"`
	// Bytes, Rate and MeanRTTMs describe what the class held when planned,
	// for people and for diffs; ReplicasFor ignores them.
	Bytes     int64   `json:"bytes,omitempty"`
	Rate      float64 `json:"rate,omitempty"`
	MeanRTTMs float64 `json:"mean_rtt_ms,omitempty"`
}

// PlanObject is the replica set of one object that does not follow its
// class.
type PlanObject struct {
	Namespace string   `json:"namespace"`
	Key       string   `json:"key"`
	Class     string   `json:"class,omitempty"` // the class it would otherwise follow
	Replicas  []string `json:"replicas"`
	Bytes     int64    `json:"bytes,omitempty"`
	Rate      float64  `json:"rate,omitempty"`
	MeanRTTMs float64  `json:"mean_rtt_ms,omitempty"`
}

type planIndex struct {
	objects map[[2]string][]string
	classes classMatcher
}

func (p *Plan) buildIndex() {
	p.index.objects = make(map[[2]string][]string, len(p.Objects))
	for _, o := range p.Objects {
		p.index.objects[[2]string{o.Namespace, o.Key}] = o.Replicas
	}
	for i, c := range p.Classes {
		for _, pre := range c.Prefixes {
			p.index.classes.entries = append(p.index.classes.entries, matchEntry{c.Namespace, pre, i})
		}
	}
	p.index.classes.sort()
}

// ReplicasFor returns the ids of the edges that should hold the object
// key of namespace ("" is "default"), by the rule in the Plan comment, or
// nil when the plan does not cover it. The slice is the caller's.
func (p *Plan) ReplicasFor(namespace, key string) []string {
	if p == nil {
		return nil
	}
	p.once.Do(p.buildIndex)
	if namespace == "" {
		namespace = objkey.DefaultNamespace
	}
	if r, ok := p.index.objects[[2]string{namespace, key}]; ok {
		return slices.Clone(r)
	}
	if c := p.index.classes.match(namespace, key); c >= 0 {
		return slices.Clone(p.Classes[c].Replicas)
	}
	return nil
}

// ClassFor returns the name of the class whose replica set key follows when
// no object entry overrides it, and whether one matches.
func (p *Plan) ClassFor(namespace, key string) (string, bool) {
	if p == nil {
		return "", false
	}
	p.once.Do(p.buildIndex)
	if namespace == "" {
		namespace = objkey.DefaultNamespace
	}
	if c := p.index.classes.match(namespace, key); c >= 0 {
		return p.Classes[c].Name, true
	}
	return "", false
}

// Edges returns every edge id the plan names, sorted.
func (p *Plan) Edges() []string {
	var ids []string
	for _, c := range p.Classes {
		ids = append(ids, c.Replicas...)
	}
	for _, o := range p.Objects {
		ids = append(ids, o.Replicas...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Validate reports a plan the origin must not apply: an unknown version,
// a malformed or duplicated class, prefix, key or edge id, an empty
// replica set.
func (p *Plan) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Version != PlanVersion {
		bad("version %d: this build reads version %d", p.Version, PlanVersion)
	}
	checkReplicas := func(what string, ids []string) {
		if len(ids) == 0 {
			bad("%s: no replicas", what)
		}
		if len(ids) > 64 {
			bad("%s: %d replicas, more than 64", what, len(ids))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !validID.MatchString(id) {
				bad("%s: edge id %q: want 1 to 63 letters, digits, '.', '_' or '-'", what, id)
			}
			if seen[id] {
				bad("%s: edge %q listed twice", what, id)
			}
			seen[id] = true
		}
	}
	names := map[string]bool{}
	prefixes := map[[2]string]string{}
	for i, c := range p.Classes {
		what := fmt.Sprintf("classes[%d] (%s)", i, c.Name)
		if !validID.MatchString(c.Name) {
			bad("classes[%d]: name %q: want 1 to 63 letters, digits, '.', '_' or '-'", i, c.Name)
		}
		if names[c.Name] {
			bad("%s: class name used twice", what)
		}
		names[c.Name] = true
		if c.Namespace != "" {
			if err := objkey.ValidNamespace(c.Namespace); err != nil {
				bad("%s: %v", what, err)
			}
		}
		if len(c.Prefixes) == 0 {
			bad("%s: no prefixes", what)
		}
		for _, pre := range c.Prefixes {
			if err := validPrefix(pre); err != nil {
				bad("%s: prefix %q: %v", what, pre, err)
			}
			if other, dup := prefixes[[2]string{c.Namespace, pre}]; dup {
				bad("%s: prefix %q already belongs to class %q", what, pre, other)
			}
			prefixes[[2]string{c.Namespace, pre}] = c.Name
		}
		checkReplicas(what, c.Replicas)
	}
	keys := map[[2]string]bool{}
	for i, o := range p.Objects {
		what := fmt.Sprintf("objects[%d] (%s:%s)", i, o.Namespace, o.Key)
		if err := objkey.ValidNamespace(o.Namespace); err != nil {
			bad("%s: %v", what, err)
		}
		if err := objkey.Validate(o.Key); err != nil {
			bad("%s: %v", what, err)
		}
		if keys[[2]string{o.Namespace, o.Key}] {
			bad("%s: object listed twice", what)
		}
		keys[[2]string{o.Namespace, o.Key}] = true
		if o.Class != "" && !names[o.Class] {
			bad("%s: class %q is not in the plan", what, o.Class)
		}
		checkReplicas(what, o.Replicas)
	}
	return errors.Join(errs...)
}

// Marshal encodes a valid plan as indented JSON, the format of the plan
// file and of PUT /v1/placement.
func (p *Plan) Marshal() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid plan: %w", err)
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// UnmarshalPlan decodes and validates a plan. Unknown fields are refused:
// a field this build does not know means a newer format, which must come
// with a new version.
func UnmarshalPlan(data []byte) (*Plan, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(data, se.Offset-1) // Offset is just past the bad byte
			return nil, fmt.Errorf("plan: line %d, column %d: %w", line, col, err)
		case errors.As(err, &te):
			line, col := position(data, te.Offset-1)
			return nil, fmt.Errorf("plan: line %d, column %d: field %s: %w", line, col, te.Field, err)
		}
		return nil, fmt.Errorf("plan: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("plan: data after the JSON object")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return &p, nil
}

// position turns a byte offset into a line and column for a person.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// PlanNamespace and PlanKey name the object under which the origin keeps
// the plan in force and replicates it to every edge: a plan change is a log
// entry like any other, ordered with the publishes around it, so each edge
// switches plans at the same point of the log. The namespace is not a
// valid client namespace, so no tenant's object can collide with it.
const (
	PlanNamespace = "_geocdn"
	PlanKey       = "placement"
	// RecoveryKey names the object under which the origin keeps, while
	// edges are lost, the plan the operator put in force and which edges
	// are lost (see Reassign). It is in the log, so it is as durable and
	// as replicated as the catalog, but no edge holds a replica of it.
	RecoveryKey = "placement-recovery"
)

// IsPlanObject reports whether ns/key is the replicated plan itself.
func IsPlanObject(ns, key string) bool { return ns == PlanNamespace && key == PlanKey }

// IsOriginOnly reports whether ns/key is kept for the origin alone: edges
// follow its log entry but are owed no replica of it.
func IsOriginOnly(ns, key string) bool { return ns == PlanNamespace && key != PlanKey }
