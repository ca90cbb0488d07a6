package placement

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/geocdn/geocdn/internal/objkey"
)

// unit is what gets one replica set: a class (its objects without a set of
// their own, and its unlisted bytes) or a hot object.
type unit struct {
	class  int // index in the catalog's classes
	object int // index in the catalog's objects; -1 for a class
	name   string
	bytes  int64
	rate   float64
	// w is the demand's shape for this content: per demand point, the
	// share of its requests (Σ = 1). Units with equal shapes share one
	// slice.
	w []float64
	// mult is w as per-region multipliers of the base weights.
	mult []float64
	k    int
	// members are the catalog objects this unit serves.
	members []int
	// src is the unit's catalog entry: the object's, or the class's.
	src source
	// fixedBy, when k is fixed by the catalog rather than derived from
	// the rate, is the entry that fixes it: "object default:x" or
	// "class vod"; fixedAt is where that entry was read.
	fixedBy string
	fixedAt source
}

func (u *unit) isClass() bool { return u.object < 0 }

// defaultCatalog is what a problem without a catalog places: one class
// covering every key of every namespace, with the demand as given.
func defaultCatalog() *Catalog {
	return &Catalog{Classes: []Class{{Name: "default", Prefixes: []string{""}, Rate: 1}}}
}

// buildUnits splits the catalog into units: every class, plus the objects
// that want a different replica set from their class's: those whose entry
// fixes a k of their own, whatever their rate, and, among the hottest,
// those whose rate asks for more replicas than their class or that have
// an affinity of their own.
func buildUnits(in *instance, cat *Catalog, cfg Config) ([]*unit, error) {
	match := newClassMatcher(cat.Classes)
	classOf := make([]int, len(cat.Objects))
	for i, o := range cat.Objects {
		ns := o.Namespace
		if ns == "" {
			ns = objkey.DefaultNamespace
		}
		classOf[i] = match.match(ns, o.Key)
		if classOf[i] < 0 {
			return nil, o.src.errorf("key", "object %s:%s matches no class", ns, o.Key)
		}
	}

	// Per-region multipliers of each distinct affinity, normalised so the
	// shape sums to 1.
	regionMult := func(a Affinity, what string, src source) ([]float64, error) {
		mult := make([]float64, len(in.regions))
		z := 0.0
		for r, name := range in.regions {
			mult[r] = a.factor(name)
			z += mult[r] * in.regionSum[r]
		}
		if !(z > 0) || math.IsInf(z, 0) {
			return nil, src.errorf("affinity", "%s: its affinity leaves it no demand in any demand region (%v)", what, in.regions)
		}
		for r := range mult {
			mult[r] /= z
		}
		return mult, nil
	}
	shapes := map[string][]float64{} // interned by multiplier bits
	shape := func(mult []float64) []float64 {
		key := fmt.Sprint(mult)
		if w, ok := shapes[key]; ok {
			return w
		}
		w := make([]float64, in.nJ)
		for j := range w {
			w[j] = in.base[j] * mult[in.regionOf[j]]
		}
		shapes[key] = w
		return w
	}

	classMult := make([][]float64, len(cat.Classes))
	classRate := make([]float64, len(cat.Classes))
	for c, cl := range cat.Classes {
		var err error
		if classMult[c], err = regionMult(cl.Affinity, "class "+cl.Name, cl.src); err != nil {
			return nil, err
		}
		classRate[c] = cl.Rate
	}
	// An object's multipliers: its own affinity's, else its class's.
	objectMult := func(o Object, c int) ([]float64, error) {
		if o.Affinity == nil {
			return classMult[c], nil
		}
		return regionMult(o.Affinity, "object "+o.Key, o.src)
	}
	for i, o := range cat.Objects {
		classRate[classOf[i]] += o.Rate
	}
	classCount := make([]int, len(cat.Classes))
	for c, cl := range cat.Classes {
		if cl.Bytes > 0 || cl.Rate > 0 {
			classCount[c] = 1 // the unlisted content counts as one object
		}
	}
	for i := range cat.Objects {
		classCount[classOf[i]]++
	}
	// A class's k follows the mean rate of its objects, not their sum:
	// replicating a class copies every object, and a thousand cold objects
	// are not one hot one.
	classK := func(c int, rate float64, n int) int {
		if r := cat.Classes[c].Replicas; r > 0 {
			return r
		}
		return cfg.ReplicasFor(rate / float64(max(n, 1)))
	}

	// The hottest objects, most requested first (key order breaks ties so
	// the choice does not depend on the catalog's order).
	hot := make([]int, 0, len(cat.Objects))
	for i, o := range cat.Objects {
		if o.Rate > 0 {
			hot = append(hot, i)
		}
	}
	slices.SortFunc(hot, func(a, b int) int {
		if c := cmp.Compare(cat.Objects[b].Rate, cat.Objects[a].Rate); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(cat.Objects[a].Namespace, cat.Objects[b].Namespace), cmp.Compare(cat.Objects[a].Key, cat.Objects[b].Key))
	})
	hot = hot[:max(0, min(len(hot), cfg.HotObjects))]
	isHot := make([]bool, len(cat.Objects))
	for _, i := range hot {
		isHot[i] = true
	}
	// Candidates for a set of their own: the hot objects, hottest first,
	// then those that fix their k, in catalog order.
	candidates := hot
	for i, o := range cat.Objects {
		if o.Replicas > 0 && !isHot[i] {
			candidates = append(candidates, i)
		}
	}
	own := make([]bool, len(cat.Objects))
	var units []*unit
	for _, i := range candidates {
		o := cat.Objects[i]
		c := classOf[i]
		cl := cat.Classes[c]
		ns := o.Namespace
		if ns == "" {
			ns = objkey.DefaultNamespace
		}
		u := &unit{class: c, object: i, name: ns + ":" + o.Key, bytes: o.Size, rate: o.Rate, members: []int{i}, src: o.src}
		switch {
		case o.Replicas > 0:
			// The catalog fixes k: honoured whatever the rate and the
			// hot list, with a set of its own unless the class fixes the
			// same k and the object wants no demand of its own, so that
			// its class's set has exactly that k. A class whose k comes
			// from the rate could end with another k once its own objects
			// leave it, so the object never relies on that.
			u.k, u.fixedBy, u.fixedAt = o.Replicas, "object "+u.name, o.src
			if o.Replicas == cl.Replicas && o.Affinity == nil {
				continue
			}
		default:
			u.k = cfg.ReplicasFor(o.Rate)
			if cl.Replicas > 0 {
				u.k, u.fixedBy, u.fixedAt = cl.Replicas, "class "+cl.Name, cl.src // the class fixes k for its objects
			}
			// A set of its own for more replicas than its class or demand
			// of its own; otherwise its class's set is the one it would
			// get, or one it should not fall below.
			if !(u.k > classK(c, classRate[c], classCount[c]) || o.Affinity != nil) {
				continue
			}
		}
		mult, err := objectMult(o, c)
		if err != nil {
			return nil, err
		}
		own[i] = true
		u.w, u.mult = shape(mult), mult
		units = append(units, u)
	}

	// A class's demand is the mixture of its members' demand, weighted by
	// their rates: a global class holding a few regional hits leans
	// towards their regions.
	mix := make([][]float64, len(cat.Classes))
	rate := make([]float64, len(cat.Classes))
	bytes := make([]int64, len(cat.Classes))
	members := make([][]int, len(cat.Classes))
	for c, cl := range cat.Classes {
		mix[c] = make([]float64, len(in.regions))
		rate[c] = cl.Rate
		bytes[c] = cl.Bytes
		for r, m := range classMult[c] {
			mix[c][r] = cl.Rate * m
		}
	}
	for i, o := range cat.Objects {
		if own[i] {
			continue
		}
		c := classOf[i]
		members[c] = append(members[c], i)
		rate[c] += o.Rate
		bytes[c] += o.Size
		if o.Rate == 0 {
			continue
		}
		mult, err := objectMult(o, c)
		if err != nil {
			return nil, err
		}
		for r, m := range mult {
			mix[c][r] += o.Rate * m
		}
	}
	for c, cl := range cat.Classes {
		n := len(members[c])
		if cl.Bytes > 0 || cl.Rate > 0 {
			n++
		}
		mult := classMult[c]
		if rate[c] > 0 {
			mult = mix[c]
			for r := range mult {
				mult[r] /= rate[c]
			}
		}
		u := &unit{
			class: c, object: -1, name: cl.Name,
			bytes: bytes[c], rate: rate[c], w: shape(mult), mult: mult, k: classK(c, rate[c], n), members: members[c],
			src: cl.src,
		}
		if cl.Replicas > 0 {
			u.fixedBy, u.fixedAt = "class "+cl.Name, cl.src
		}
		units = append(units, u)
	}
	return units, nil
}

// priority orders units for placement: the most requests per byte first,
// since an edge's space buys the most latency for dense content.
func priority(units []*unit) []*unit {
	out := slices.Clone(units)
	density := func(u *unit) float64 {
		if u.bytes == 0 {
			return math.Inf(1)
		}
		return u.rate / float64(u.bytes)
	}
	slices.SortStableFunc(out, func(a, b *unit) int {
		if c := cmp.Compare(density(b), density(a)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.rate, a.rate); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	return out
}
