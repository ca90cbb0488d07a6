package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/placement"
)

// maxPlanSize bounds a placement plan body.
const maxPlanSize = 64 << 20

// loadPlan reads the plan in force from the store at start-up.
func (o *Origin) loadPlan() error {
	b, ent, err := o.readSystemObject(placement.PlanKey)
	if b == nil || err != nil {
		return err
	}
	p, err := placement.UnmarshalPlan(b)
	if err != nil {
		return fmt.Errorf("placement plan in force (lsn %d): %w", ent.LSN, err)
	}
	o.plan.Store(p)
	o.planLSN.Store(ent.LSN)
	return nil
}

// readSystemObject reads the body of the reserved object key of the
// placement namespace; nil and no error when there is none.
func (o *Origin) readSystemObject(key string) ([]byte, wire.LogEntry, error) {
	ent, err := o.store.get(placement.PlanNamespace, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ent, nil
	} else if err != nil {
		return nil, ent, err
	}
	b, err := o.readBlob(ent.Digest)
	if err != nil {
		return nil, ent, fmt.Errorf("%s/%s (lsn %d): %w", placement.PlanNamespace, key, ent.LSN, err)
	}
	return b, ent, nil
}

func (o *Origin) readBlob(d wire.Digest) ([]byte, error) {
	f, err := o.store.openBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// replicaSet is the edges that must hold ns/key: the plan in force where it
// covers the key, else the static rule (--replicas). Nil means every edge.
func (o *Origin) replicaSet(ns, key string) []string {
	if placement.IsPlanObject(ns, key) {
		return nil
	}
	if p := o.plan.Load(); p != nil {
		if r := p.ReplicasFor(ns, key); r != nil {
			slices.Sort(r)
			return r
		}
	}
	return o.edges.replicaSet(ns, key, o.cfg.Replicas)
}

// owes reports whether edge id must hold a pushed replica of ent under the
// plan in force now, which may differ from the set recorded at publish.
func (o *Origin) owes(ent wire.LogEntry, id string) bool {
	if placement.IsOriginOnly(ent.Namespace, ent.Key) {
		return false
	}
	if p := o.plan.Load(); p != nil && !placement.IsPlanObject(ent.Namespace, ent.Key) {
		if r := p.ReplicasFor(ent.Namespace, ent.Key); r != nil {
			return slices.Contains(r, id)
		}
	}
	return inReplicaSet(ent, id)
}

// handlePlanGet answers the plan in force.
func (o *Origin) handlePlanGet(w http.ResponseWriter, r *http.Request) {
	ent, err := o.store.get(placement.PlanNamespace, placement.PlanKey)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no placement plan applied; the static rule is in force (replicas=%d, 0 = every edge)", o.cfg.Replicas))
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	b, err := o.readBlob(ent.Digest)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	w.Write(b)
}

// PlanResult is the answer to PUT /v1/placement.
type PlanResult struct {
	LSN     uint64   `json:"lsn"`
	Edges   []string `json:"edges"`
	Classes int      `json:"classes"`
	Objects int      `json:"objects"`
}

// handlePlanPut puts a plan in force: it becomes a log entry (the plan
// object), edges switch to it at that point of the log and unpin replicas
// they no longer owe, and the origin pushes every object to the edges
// newly in its set.
func (o *Origin) handlePlanPut(w http.ResponseWriter, r *http.Request) {
	if o.isClosing() {
		writeError(w, http.StatusServiceUnavailable, "origin shutting down")
		return
	}
	if !requireJSON(w, r) {
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPlanSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("plan exceeds %d bytes", maxPlanSize))
			return
		}
		writeError(w, http.StatusBadRequest, "reading plan: "+err.Error())
		return
	}
	p, err := placement.UnmarshalPlan(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var unknown []string
	for _, id := range p.Edges() {
		if o.edges.get(id) == nil {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("plan names edges the origin has never seen: %v", unknown))
		return
	}
	// While edges are lost, the operator's plan becomes the base and
	// its reassigned form is put in force.
	o.recov.mu.Lock()
	inForce := p
	if len(o.recov.lost) > 0 {
		base := o.recov.base
		o.recov.base = p
		if inForce, err = o.recoveryTarget(r.Context()); err != nil {
			o.recov.base = base
			o.recov.mu.Unlock()
			writeError(w, http.StatusConflict, fmt.Sprintf("edges %v are lost and their replicas cannot be placed elsewhere: %v", slices.Sorted(maps.Keys(o.recov.lost)), err))
			return
		}
	}
	o.recov.base = p
	err = o.saveRecoveryLocked(r.Context(), inForce)
	var ent wire.LogEntry
	if err == nil {
		ent, err = o.putPlan(r.Context(), inForce)
	}
	if err == nil {
		err = o.saveRecoveryLocked(r.Context(), inForce)
	}
	o.recov.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	o.log.Info("placement plan applied", "lsn", ent.LSN, "edges", len(p.Edges()), "classes", len(p.Classes), "objects", len(p.Objects))
	w.Header().Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	writeJSON(w, http.StatusOK, PlanResult{LSN: ent.LSN, Edges: p.Edges(), Classes: len(p.Classes), Objects: len(p.Objects)})
}

// putPlan puts p in force: it becomes a log entry (the plan object),
// edges switch to it at that point of the log and unpin replicas they no
// longer owe, and the origin pushes every object to the edges newly in
// its set.
func (o *Origin) putPlan(ctx context.Context, p *placement.Plan) (wire.LogEntry, error) {
	b, err := p.Marshal()
	if err != nil {
		return wire.LogEntry{}, err
	}
	ent, err := o.publish(ctx, requestID{}, placement.PlanNamespace, placement.PlanKey, bytes.NewReader(b), maxPlanSize, PutMeta{
		ContentType: "application/json",
		ModTime:     o.clk.Now(),
	})
	if err != nil {
		return wire.LogEntry{}, err
	}
	o.plan.Store(p)
	o.planLSN.Store(ent.LSN)
	for _, e := range o.edges.all() {
		e.mu.Lock()
		e.planSync = true
		e.mu.Unlock()
		e.wakePusher()
	}
	return ent, nil
}

// syncPlan offers every current object edge e owes under the plan in force;
// objects it already holds cost one round trip ("have").
func (o *Origin) syncPlan(ctx context.Context, e *edge, push func(wire.LogEntry) bool) error {
	return o.store.forEachObject(func(ent wire.LogEntry) error {
		if ent.Op == wire.OpPut && o.owes(ent, e.info.ID) {
			if !push(ent) {
				return ctx.Err()
			}
		}
		return nil
	})
}
