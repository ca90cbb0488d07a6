// Package rttstat keeps the round-trip times an edge measures to its
// clients, per client network (/24 for IPv4, /48 for IPv6, the units a
// router maps), in bounded memory: the networks with the most recent
// traffic, each with a decayed histogram of its RTTs from which a median
// is read. It is how measured latency corrects a map that geography alone
// gets wrong: a router that has enough samples from an edge for a
// client's network prefers them to its distance model.
//
// Key invariant: a Table never holds more than its MaxNetworks networks;
// when a new one arrives at the bound, the eighth with the least decayed
// traffic go. Old samples fade with HalfLife, so a median follows
// changes in the network within a few half-lives.
package rttstat

import (
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Bucket bounds: RTTs from 50 µs to about 16 s, on a log scale of
// bucketGrowth per bucket (medians are read to within half that).
const (
	minRTT       = 50 * time.Microsecond
	bucketGrowth = 1.1
	buckets      = 134 // minRTT × 1.1^133 ≈ 16 s
)

// Options configure a Table. Zero values take the defaults.
type Options struct {
	// MaxNetworks bounds the networks kept (default 4096).
	MaxNetworks int
	// HalfLife is how long a sample takes to count half (default 10 min).
	HalfLife time.Duration
}

// Table is a bounded set of per-network RTT histograms. It is safe for
// concurrent use.
type Table struct {
	max      int
	halfLife float64 // seconds
	mu       sync.Mutex
	nets     map[netip.Prefix]*entry
}

type entry struct {
	weight float64 // decayed sample count, as of at
	at     time.Time
	hist   [buckets]float64
}

// New returns an empty Table.
func New(o Options) *Table {
	if o.MaxNetworks <= 0 {
		o.MaxNetworks = 4096
	}
	if o.HalfLife <= 0 {
		o.HalfLife = 10 * time.Minute
	}
	return &Table{max: o.MaxNetworks, halfLife: o.HalfLife.Seconds(), nets: map[netip.Prefix]*entry{}}
}

// Network is the unit RTTs are kept per: the /24 of an IPv4 address, the
// /48 of an IPv6 one (IPv4-mapped addresses count as IPv4).
func Network(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p
}

func bucketOf(rtt time.Duration) int {
	if rtt <= minRTT {
		return 0
	}
	b := int(math.Log(float64(rtt)/float64(minRTT)) / math.Log(bucketGrowth))
	return min(b, buckets-1)
}

// bucketMid is the RTT a bucket stands for: its geometric middle.
func bucketMid(b int) time.Duration {
	return time.Duration(float64(minRTT) * math.Pow(bucketGrowth, float64(b)+0.5))
}

// decay brings e to now.
func (t *Table) decay(e *entry, now time.Time) {
	dt := now.Sub(e.at).Seconds()
	if dt <= 0 {
		return
	}
	f := math.Exp2(-dt / t.halfLife)
	e.weight *= f
	for i := range e.hist {
		e.hist[i] *= f
	}
	e.at = now
}

// Add records one RTT measured to client at now. Invalid addresses and
// non-positive RTTs are ignored.
func (t *Table) Add(client netip.Addr, rtt time.Duration, now time.Time) {
	if !client.IsValid() || rtt <= 0 {
		return
	}
	n := Network(client)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.nets[n]
	if e == nil {
		if len(t.nets) >= t.max {
			t.evict(now)
		}
		e = &entry{at: now}
		t.nets[n] = e
	}
	t.decay(e, now)
	e.weight++
	e.hist[bucketOf(rtt)]++
}

// evict drops the eighth of the networks with the least decayed traffic
// (at least one), so that a stream of new networks costs one scan per
// MaxNetworks/8 of them rather than one each.
func (t *Table) evict(now time.Time) {
	type nw struct {
		n netip.Prefix
		w float64
	}
	all := make([]nw, 0, len(t.nets))
	for n, e := range t.nets {
		all = append(all, nw{n, e.weight * math.Exp2(-now.Sub(e.at).Seconds()/t.halfLife)})
	}
	slices.SortFunc(all, func(a, b nw) int {
		switch {
		case a.w < b.w:
			return -1
		case a.w > b.w:
			return 1
		}
		return a.n.Addr().Compare(b.n.Addr())
	})
	for _, x := range all[:max(1, len(all)/8)] {
		delete(t.nets, x.n)
	}
}

// Median is one network's figure.
type Median struct {
	Network netip.Prefix
	// RTT is the median of the network's decayed samples.
	RTT time.Duration
	// Samples is the decayed count behind it.
	Samples float64
}

// Medians returns, as of now, every network with at least minSamples
// decayed samples, most samples first, at most limit of them (0: all).
func (t *Table) Medians(now time.Time, minSamples float64, limit int) []Median {
	t.mu.Lock()
	out := make([]Median, 0, len(t.nets))
	for n, e := range t.nets {
		t.decay(e, now)
		if e.weight < minSamples || e.weight <= 0 {
			continue
		}
		half, acc := e.weight/2, 0.0
		for b, c := range e.hist {
			acc += c
			if acc >= half {
				out = append(out, Median{Network: n, RTT: bucketMid(b), Samples: e.weight})
				break
			}
		}
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Median) int {
		switch {
		case a.Samples > b.Samples:
			return -1
		case a.Samples < b.Samples:
			return 1
		}
		return a.Network.Addr().Compare(b.Network.Addr())
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Len is how many networks the Table holds.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.nets)
}
