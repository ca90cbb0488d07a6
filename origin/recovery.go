package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/geocdn/geocdn/placement"
)

// Replica recovery. An edge whose lease has been expired for longer than
// Config.ReassignAfter is lost: the replica sets of the plan the operator
// put in force (the base plan) that name it get a substitute, chosen by
// placement.Reassign, and that effective plan is put in force as any plan
// is, as a log entry. When the edge returns, the base plan is put back.
//
// Every change is made before it breaks: no edge lets go of a replica set
// until every edge the next plan keeps or puts in that set has shown, by a
// resync since the plan in force was put in force, that it holds what it
// owes. When the next plan adds edges to a set, the origin first puts in
// force the union of the two plans, asks those edges to resync, and puts
// the next plan in force once each of them reported holding everything.
// So a set never drops below its replication factor on account of a
// change, and an edge that cannot take its new replicas (a full disk)
// holds the change at the union, where every replica is still held, and is
// asked again.
//
// While the plan in force differs from the base plan, or edges are lost,
// the catalog holds the base plan and the lost edges (RecoveryKey), so a
// restarted origin carries on where it was.
type recovery struct {
	mu sync.Mutex
	// base is the plan the operator put in force; nil when none was.
	base *placement.Plan
	// lost maps each lost edge to when it was declared lost.
	lost map[string]time.Time
	// confirmed maps an edge to the LSN of the plan in force when a
	// resync last found it holding everything it owed.
	confirmed map[string]uint64
	// asking holds the edges asked for a resync whose report is awaited.
	asking map[string]bool
	// record is the recovery object's body as last written; nil when the
	// catalog holds none.
	record []byte
	// wake is signalled when a report the loop waits for arrives.
	wake chan struct{}
}

// recoveryRecord is the body of the RecoveryKey object.
type recoveryRecord struct {
	Lost map[string]time.Time `json:"lost"`
	Base json.RawMessage      `json:"base"`
}

// confirmTimeout bounds the wait for the report of a resync asked for by
// the recovery loop; a later round asks again.
const confirmTimeout = 10 * time.Minute

// loadRecovery restores the recovery state, at start and when this
// origin takes the lead: the record, if the catalog holds one, else the
// plan in force as the base.
func (o *Origin) loadRecovery() error {
	if o.recov == nil {
		o.recov = &recovery{wake: make(chan struct{}, 1)}
	}
	r := o.recov
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost, r.confirmed, r.asking, r.record = map[string]time.Time{}, map[string]uint64{}, map[string]bool{}, nil
	r.base = o.plan.Load()
	b, ent, err := o.readSystemObject(placement.RecoveryKey)
	if b == nil || err != nil {
		return err
	}
	var rec recoveryRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("placement recovery record (lsn %d): %w", ent.LSN, err)
	}
	base, err := placement.UnmarshalPlan(rec.Base)
	if err != nil {
		return fmt.Errorf("placement recovery record (lsn %d): base plan: %w", ent.LSN, err)
	}
	r.base, r.record = base, b
	if rec.Lost != nil {
		r.lost = rec.Lost
	}
	return nil
}

// LostEdges returns the edges treated as lost, with when each was declared
// so.
func (o *Origin) LostEdges() map[string]time.Time {
	o.recov.mu.Lock()
	defer o.recov.mu.Unlock()
	return maps.Clone(o.recov.lost)
}

// PlanInForce returns the placement plan in force; nil when none is (the
// static rule applies).
func (o *Origin) PlanInForce() *placement.Plan { return o.plan.Load() }

// BasePlan returns the plan the operator put in force, which differs from
// the plan in force while edges are lost; nil when none was.
func (o *Origin) BasePlan() *placement.Plan {
	o.recov.mu.Lock()
	defer o.recov.mu.Unlock()
	return o.recov.base
}

// recoveryInterval is how often the recovery loop looks at the edges.
func (o *Origin) recoveryInterval() time.Duration {
	return min(max(o.cfg.ReassignAfter/10, 100*time.Millisecond), 10*time.Second)
}

// recoveryLoop runs recoverOnce until ctx ends. It does nothing when
// reassignment is off.
func (o *Origin) recoveryLoop(ctx context.Context) {
	if o.cfg.ReassignAfter < 0 {
		return
	}
	for {
		if err := o.recoverOnce(ctx); err != nil && ctx.Err() == nil {
			o.log.Error("replica recovery", "err", err)
		}
		t := o.clk.NewTimer(o.recoveryInterval())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-o.recov.wake:
			t.Stop()
		}
	}
}

// downSince returns the edge's state and, when it is down, since when: its
// lease's expiry, or for an edge not heard from since this origin started,
// the moment a lease from before the start would have run out.
func (e *edge) downSince(now time.Time, r stateRule) (EdgeState, time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	since := e.leaseExpires
	if since.IsZero() {
		since = r.unknownUntil
	}
	return e.stateLocked(now, r), since
}

// recoverOnce declares lost the edges down for longer than ReassignAfter
// and returned the lost ones that are up again, then takes one step
// towards the plan that follows: see recovery.
func (o *Origin) recoverOnce(ctx context.Context) error {
	if !o.isLeader() {
		return nil // the leader's job: it knows which edges are up
	}
	r := o.recov
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base == nil {
		return nil
	}
	now := o.clk.Now()
	rule := o.stateRule()
	if now.Before(rule.unknownUntil) {
		// Leases from before this origin started may still run: no
		// edge is known down, or known up, yet.
		return nil
	}
	named := r.base.Edges()
	for id := range r.lost {
		if !slices.Contains(named, id) {
			delete(r.lost, id) // the operator's plan no longer names it
		}
	}
	for _, id := range named {
		e := o.edges.get(id)
		if e == nil {
			continue
		}
		st, since := e.downSince(now, rule)
		_, lost := r.lost[id]
		switch {
		case lost && st == EdgeUp:
			delete(r.lost, id)
			o.log.Info("lost edge is back; its replicas return to it", "edge", id)
		case !lost && st == EdgeDown && now.Sub(since) >= o.cfg.ReassignAfter:
			r.lost[id] = now
			o.metrics.edgesLost.Inc()
			o.log.Warn("edge lost: its replicas are placed on other edges", "edge", id,
				"down_for", now.Sub(since).Round(time.Second).String(), "reassign_after", o.cfg.ReassignAfter.String())
		}
	}
	target, err := o.recoveryTarget(ctx)
	if err != nil {
		return err
	}
	cur := o.plan.Load()
	if samePlacement(cur, target) {
		return o.saveRecoveryLocked(ctx, cur)
	}
	union := unionPlacement(cur, target)
	if !samePlacement(cur, union) {
		return o.switchPlanLocked(ctx, union, "adding replicas before any is dropped")
	}
	// Every edge target adds is in the plan in force: once the edges that
	// keep or take each shrinking set have shown they hold it, the others
	// may let go.
	curLSN := o.planLSN.Load()
	var pending []string
	for _, id := range keepersOfShrinking(cur, target) {
		if r.confirmed[id] < curLSN {
			pending = append(pending, id)
		}
	}
	if len(pending) == 0 {
		return o.switchPlanLocked(ctx, target, "replicas in place")
	}
	for _, id := range pending {
		o.confirmLocked(ctx, id, curLSN)
	}
	return nil
}

// recoveryTarget is the plan to put in force: the base plan, with the
// replicas of lost edges placed elsewhere. Callers hold recov.mu.
func (o *Origin) recoveryTarget(ctx context.Context) (*placement.Plan, error) {
	r := o.recov
	if len(r.lost) == 0 {
		return r.base, nil
	}
	now := o.clk.Now()
	rule := o.stateRule()
	var edges []placement.Edge
	var unavailable []string
	for _, e := range o.edges.all() {
		edges = append(edges, placement.Edge{ID: e.info.ID, Region: e.info.Region, Lat: e.info.Lat, Lon: e.info.Lon, FaultDomain: e.info.FaultDomain})
		if e.state(now, rule) != EdgeUp {
			unavailable = append(unavailable, e.info.ID)
		}
	}
	p, _, err := placement.Reassign(ctx, r.base, edges, slices.Sorted(maps.Keys(r.lost)), unavailable)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// confirmLocked asks edge id, if it is up and not asked already, to
// resync; a report of success confirms it holds what the plan at lsn owes
// it. Callers hold recov.mu.
func (o *Origin) confirmLocked(ctx context.Context, id string, lsn uint64) {
	r := o.recov
	e := o.edges.get(id)
	if r.asking[id] || e == nil || e.state(o.clk.Now(), o.stateRule()) != EdgeUp {
		return
	}
	rid, ch, err := o.requestResync(e)
	if err != nil {
		o.log.Warn("replica recovery: cannot ask the edge to resync", "edge", id, "err", err)
		return
	}
	r.asking[id] = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t := o.clk.NewTimer(confirmTimeout)
		defer t.Stop()
		var s ResyncStatus
		var ok bool
		select {
		case s, ok = <-ch:
		case <-t.C():
			o.resyncs.forget(rid)
		case <-ctx.Done():
			o.resyncs.forget(rid)
		}
		r.mu.Lock()
		delete(r.asking, id)
		if ok && s.Outcome != "failed" {
			r.confirmed[id] = max(r.confirmed[id], lsn)
		} else if ok {
			o.log.Warn("replica recovery: edge could not take what it owes; asking again later", "edge", id, "err", s.Error, "failed", s.Failed)
		}
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}()
}

// switchPlanLocked puts p in force, saving the recovery record first when
// p is not the base plan. Callers hold recov.mu.
func (o *Origin) switchPlanLocked(ctx context.Context, p *placement.Plan, why string) error {
	if err := o.saveRecoveryLocked(ctx, p); err != nil {
		return err
	}
	ent, err := o.putPlan(ctx, p)
	if err != nil {
		return err
	}
	lost := slices.Sorted(maps.Keys(o.recov.lost))
	o.log.Info("placement plan in force changed by replica recovery", "lsn", ent.LSN, "why", why, "lost", lost,
		"base", samePlacement(p, o.recov.base))
	// The record goes once the base is back and no edge is lost.
	return o.saveRecoveryLocked(ctx, p)
}

// saveRecoveryLocked writes the recovery record when inForce differs from
// the base plan or edges are lost, and removes it otherwise. Callers hold
// recov.mu.
func (o *Origin) saveRecoveryLocked(ctx context.Context, inForce *placement.Plan) error {
	r := o.recov
	if len(r.lost) == 0 && samePlacement(inForce, r.base) {
		if r.record == nil {
			return nil
		}
		if _, err := o.propose(ctx, &command{Entry: deleteEntry(placement.PlanNamespace, placement.RecoveryKey, o.clk.Now())}); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove placement recovery record: %w", err)
		}
		r.record = nil
		return nil
	}
	base, err := r.base.Marshal()
	if err != nil {
		return err
	}
	b, err := json.Marshal(recoveryRecord{Lost: r.lost, Base: base})
	if err != nil {
		return err
	}
	if bytes.Equal(b, r.record) {
		return nil
	}
	if _, err := o.publish(ctx, requestID{}, placement.PlanNamespace, placement.RecoveryKey, bytes.NewReader(b), maxPlanSize*2, PutMeta{
		ContentType: "application/json",
		ModTime:     o.clk.Now(),
	}); err != nil {
		return fmt.Errorf("save placement recovery record: %w", err)
	}
	r.record = b
	return nil
}

// samePlacement reports whether a and b give every class and object the
// same replica set (in any order).
func samePlacement(a, b *placement.Plan) bool {
	if a == nil || b == nil {
		return a == b
	}
	return maps.EqualFunc(setsOf(a), setsOf(b), func(x, y []string) bool { return slices.Equal(x, y) })
}

// setsOf maps each class ("class:" name) and object ("object:"
// namespace:key) of p to its sorted replica set.
func setsOf(p *placement.Plan) map[string][]string {
	m := make(map[string][]string, len(p.Classes)+len(p.Objects))
	for _, c := range p.Classes {
		m["class:"+c.Name] = slices.Sorted(slices.Values(c.Replicas))
	}
	for _, ob := range p.Objects {
		m["object:"+ob.Namespace+":"+ob.Key] = slices.Sorted(slices.Values(ob.Replicas))
	}
	return m
}

// unionPlacement is next with each replica set widened by the edges cur
// gives the same set: the plan under which both cur's and next's holders
// hold. It has next's sets only: a set next drops has no holders to wait
// for.
func unionPlacement(cur, next *placement.Plan) *placement.Plan {
	if cur == nil {
		return next
	}
	had := setsOf(cur)
	u := &placement.Plan{Version: next.Version, GeneratedAt: next.GeneratedAt, Seed: next.Seed, Objective: next.Objective,
		Violations: next.Violations}
	widen := func(name string, ids []string) []string {
		out := slices.Clone(ids)
		for _, id := range had[name] {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
		return out
	}
	for _, c := range next.Classes {
		c.Prefixes = slices.Clone(c.Prefixes)
		c.Replicas = widen("class:"+c.Name, c.Replicas)
		u.Classes = append(u.Classes, c)
	}
	for _, ob := range next.Objects {
		ob.Replicas = widen("object:"+ob.Namespace+":"+ob.Key, ob.Replicas)
		u.Objects = append(u.Objects, ob)
	}
	return u
}

// keepersOfShrinking returns, sorted, the edges next gives the sets that
// lose an edge from cur to next: those that must hold such a set before
// the edges leaving it may drop it.
func keepersOfShrinking(cur, next *placement.Plan) []string {
	had, will := setsOf(cur), setsOf(next)
	var out []string
	for name, ids := range had {
		if slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(will[name], id) }) {
			out = append(out, will[name]...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
