package loadtest

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/geocdn/geocdn/internal/devctl"
	"github.com/geocdn/geocdn/placement"
)

// runEvents fires the scenario's events at their times.
func (r *run) runEvents(ctx context.Context) {
	events := slices.Clone(r.scn.Events)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, e := range events {
		if !r.sleepUntil(ctx, e.At) {
			return
		}
		// An event that takes time (a republish of thousands, a pause)
		// must not hold back the next one.
		wg.Go(func() { r.fire(ctx, e) })
	}
}

func (r *run) control() *devctl.Client {
	return &devctl.Client{URL: r.cl.Control, Token: r.cl.Token, HTTP: r.hc}
}

// fire does one event.
func (r *run) fire(ctx context.Context, e Event) {
	at := r.since()
	bg := context.WithoutCancel(ctx)
	switch e.Kind {
	case EventPublish:
		cons := e.Consistency
		if cons == "" {
			cons = r.scn.Objects.Consistency
		}
		w := e.W
		if w == "" {
			w = "1"
		}
		o := r.objectFor(e.Key, e.Size)
		s := r.publishSample(bg, o, at, w, cons)
		r.rec.Record(s)
		r.event(at, errOf(s), "publish %s (%s, %s, w=%s)", e.Key, placement.HumanBytes(e.Size), cons, w)
	case EventFocus:
		o := r.objectFor(e.Key, e.Size)
		r.focus.Store(&focus{obj: o, share: e.Share, multiplier: max(e.Multiplier, 1), until: e.At + e.For})
		r.event(at, nil, "flash crowd: %.0f%% of reads to %s, rate ×%g, for %s", 100*e.Share, e.Key, max(e.Multiplier, 1), e.For)
	case EventRepublish:
		r.event(at, nil, "republish %d objects at %g/s", e.Count, e.Rate)
		r.republish(ctx, e)
	case EventPurge:
		s := r.purgeSample(bg, at, e.By, e.Value, e.Soft, true)
		r.rec.Record(s)
		r.event(at, errOf(s), "purge %s %s%s", e.By, e.Value, map[bool]string{true: " (soft)"}[e.Soft])
	case EventKill:
		err := r.control().Kill(bg, e.Edge)
		if err == nil {
			r.eventsMu.Lock()
			r.down[e.Edge] = true
			r.eventsMu.Unlock()
		}
		r.event(at, err, "kill %s", e.Edge)
	case EventPause:
		err := r.control().Pause(bg, e.Edge)
		r.event(at, err, "pause %s for %s", e.Edge, e.For)
		if err != nil {
			return
		}
		// The edge is resumed even when the run ends first: a paused
		// process left behind would hold its clients' connections.
		t := time.NewTimer(e.For)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		r.event(r.since(), r.control().Resume(bg, e.Edge), "resume %s", e.Edge)
	case EventRestart:
		err := r.control().Restart(bg, e.Edge)
		if err == nil {
			r.eventsMu.Lock()
			delete(r.down, e.Edge)
			r.eventsMu.Unlock()
		}
		r.event(at, err, "restart %s", e.Edge)
	}
}

// republish publishes a new generation of the Count most popular
// objects at Rate per second, as a deploy does.
func (r *run) republish(ctx context.Context, e Event) {
	cons := e.Consistency
	if cons == "" {
		cons = r.scn.Objects.Consistency
	}
	w := e.W
	if w == "" {
		w = "1"
	}
	n := min(e.Count, len(r.objects))
	gap := time.Duration(float64(time.Second) / clampRate(e.Rate))
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range n {
		at := e.At + time.Duration(i)*gap
		if !r.sleepUntil(ctx, at) {
			return
		}
		o := r.objects[i] // rank order: the most popular first
		wg.Go(func() { r.rec.Record(r.publishSample(context.WithoutCancel(ctx), o, at, w, cons)) })
	}
}

// errOf is a failed sample's error, for the event log.
func errOf(s Sample) error {
	if s.Class == "" {
		return nil
	}
	return fmt.Errorf("%s: %s", s.Class, s.Detail)
}

// Convergence is the final check of a run that was not interrupted:
// after the load, every edge catches up with the origin's log, and every
// object the run published reads back, from every edge, as its last
// acknowledged version or a newer one.
type Convergence struct {
	// Converged lists the edges that caught up (up, no lag) within the
	// wait; Lagging the others, with their state; Skipped the edges a
	// fault event left down.
	Converged []string          `json:"converged"`
	Lagging   map[string]string `json:"lagging,omitempty"`
	Skipped   []string          `json:"skipped,omitempty"`
	// Checked is the number of (edge, object) reads made; Missing lists
	// those that did not answer the acknowledged version.
	Checked int      `json:"checked"`
	Missing []string `json:"missing,omitempty"`
	// MissingCount counts them all (Missing keeps the first 100).
	MissingCount int           `json:"missing_count"`
	Took         time.Duration `json:"took_ns"`
}

// OK reports whether every edge converged and nothing acknowledged is
// missing.
func (c *Convergence) OK() bool {
	return c != nil && len(c.Lagging) == 0 && c.MissingCount == 0
}

// converge waits for every edge that should be up to catch up, then
// reads every object the run published from each of them.
func (r *run) converge(ctx context.Context) *Convergence {
	start := time.Now()
	c := &Convergence{Lagging: map[string]string{}}
	r.eventsMu.Lock()
	down := maps.Clone(r.down)
	r.eventsMu.Unlock()
	deadline := time.Now().Add(r.opts.Converge)
	for {
		sts, err := r.cl.edgeStatuses(ctx, r.hc)
		clear(c.Lagging)
		c.Converged, c.Skipped = c.Converged[:0], c.Skipped[:0]
		if err != nil {
			c.Lagging["origin"] = err.Error()
		}
		for _, s := range sts {
			switch {
			case down[s.ID]:
				c.Skipped = append(c.Skipped, s.ID)
			case s.State == "up" && s.Lag == 0:
				c.Converged = append(c.Converged, s.ID)
			default:
				c.Lagging[s.ID] = fmt.Sprintf("%s, %d entries behind", s.State, s.Lag)
			}
		}
		if len(c.Lagging) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}

	objs := slices.Clone(r.objects)
	r.extraMu.Lock()
	for _, o := range r.extra {
		objs = append(objs, o)
	}
	r.extraMu.Unlock()
	type check struct {
		e *Edge
		o *object
		v *published
	}
	var checks []check
	for _, id := range c.Converged {
		e := r.cl.edge(id)
		if e == nil {
			continue
		}
		for _, o := range objs {
			if v := o.latest(); v != nil {
				checks = append(checks, check{e, o, v})
			}
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan check)
	for range 16 {
		wg.Go(func() {
			for ch := range work {
				if detail := r.readBack(ctx, ch.e, ch.o, ch.v); detail != "" {
					mu.Lock()
					c.MissingCount++
					if len(c.Missing) < 100 {
						c.Missing = append(c.Missing, detail)
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, ch := range checks {
		if ctx.Err() != nil {
			break
		}
		work <- ch
	}
	close(work)
	wg.Wait()
	c.Checked = len(checks)
	if len(c.Lagging) == 0 {
		c.Lagging = nil
	}
	c.Took = time.Since(start)
	return c
}

// readBackTries is how many times the final check asks an edge for an
// object before it calls it missing: an answer of 5xx or no answer is
// the edge or the origin busy (an origin still working off a queue of
// publishes answers fills late), not a lost version.
const readBackTries = 3

// readBack asks e for o (HEAD) and checks it is v or a version published
// after it; "" if so.
func (r *run) readBack(ctx context.Context, e *Edge, o *object, v *published) string {
	var detail string
	for try := range readBackTries {
		if try > 0 && !r.pause(ctx, time.Duration(try)*time.Second) {
			break
		}
		var retry bool
		detail, retry = r.readBackOnce(ctx, e, o, v)
		if !retry {
			break
		}
	}
	return detail
}

// pause waits d unless ctx ends first.
func (r *run) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *run) readBackOnce(ctx context.Context, e *Edge, o *object, v *published) (detail string, retry bool) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	resp, err := r.get(ctx, http.MethodHead, e.URL+"/"+o.path, http.Header{})
	if err != nil {
		return fmt.Sprintf("%s on %s: %v", o.key, e.ID, err), true
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%s on %s: %s, want generation %d", o.key, e.ID, resp.Status, v.c.gen), resp.StatusCode >= 500
	}
	etag := resp.Header.Get("Etag")
	o.mu.Lock()
	idx, want := -1, -1
	for i, p := range o.versions {
		if p.c.etag() == etag {
			idx = i
		}
		if p == v {
			want = i
		}
	}
	o.mu.Unlock()
	if idx < want {
		// Cache-Status says which path answered: the hot tier, the
		// store, a fill, the previous version of a pending strong write.
		return fmt.Sprintf("%s on %s: answers %s, want generation %d (%s) or newer; Cache-Status: %s",
			o.key, e.ID, shortTag(etag), v.c.gen, shortTag(v.c.etag()), resp.Header.Get("Cache-Status")), false
	}
	return "", false
}

// scrapeEdges reads every edge's counters whose metrics URL is known,
// by edge id; an edge that does not answer is left out (and logged).
func (r *run) scrapeEdges(ctx context.Context) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range r.cl.Edges {
		if e.Metrics == "" {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			m, err := ScrapeCounters(ctx, r.hc, e.Metrics)
			if err != nil {
				r.log.Warn("loadtest: edge metrics", "edge", e.ID, "err", err)
				return
			}
			mu.Lock()
			out[e.ID] = m
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}
