package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// EdgeState is the origin's view of an edge's health.
type EdgeState string

const (
	// EdgeUp: connected and heartbeating.
	EdgeUp EdgeState = "up"
	// EdgeSuspect: heartbeats missed, lease not yet expired.
	EdgeSuspect EdgeState = "suspect"
	// EdgeDown: lease expired or never granted since the origin started.
	EdgeDown EdgeState = "down"
)

// edgeInfo is what an edge announces about itself; persisted so the
// replica rule and /v1/edges survive an origin restart.
type edgeInfo struct {
	ID          string  `json:"id"`
	Region      string  `json:"region"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	FaultDomain string  `json:"fault_domain"`
	PublicURL   string  `json:"public_url"`
}

// edge is the origin's state for one edge id. Lease state is per edge id,
// not per connection: a reconnect keeps it.
type edge struct {
	info edgeInfo

	mu      sync.Mutex
	control *quic.Conn
	// ctrl is the control connection's hello stream, where the origin
	// answers heartbeats and asks for resyncs; ctrlMu serialises frames
	// written on it.
	ctrl          *quic.Stream
	ctrlMu        sync.Mutex
	lastResync    *ResyncStatus
	data          *quic.Conn
	dataReady     chan struct{} // closed and replaced when data changes
	watermark     uint64        // highest LSN the edge acknowledged applying
	lastHeartbeat time.Time
	leaseExpires  time.Time
	// pushCursor is the LSN up to which the pusher has considered the log;
	// reset to the edge's watermark on every control reconnect.
	pushCursor uint64
	// unpushed holds the LSNs of pushes started but not settled (stored
	// or refused by the edge). A reconnect restarts the cursor before the
	// oldest, even when the edge's log watermark is past it: the log entry
	// may have arrived while its content did not.
	unpushed      map[uint64]struct{}
	pushWake      chan struct{}
	pusherRunning bool
	// planSync asks the pusher to offer the edge everything it owes under
	// a newly applied plan.
	planSync bool

	// scrub is the edge's latest scrub report (edgescrub.go), replaced,
	// never changed, by the next.
	scrub *ScrubProgress
	// rtt is the edge's latest RTT report (edgertt.go), replaced, never
	// changed, by the next.
	rtt []NetworkRTT
}

func newEdge(info edgeInfo) *edge {
	return &edge{info: info, dataReady: make(chan struct{}), pushWake: make(chan struct{}, 1), unpushed: make(map[uint64]struct{})}
}

func (e *edge) pushSettled(lsn uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.unpushed, lsn)
}

// restartPushes moves the push cursor to the edge's announced watermark,
// or before the oldest unsettled push if that is earlier. Callers hold mu.
func (e *edge) restartPushesLocked(watermark uint64) {
	cursor := watermark
	for lsn := range e.unpushed {
		cursor = min(cursor, lsn-1)
	}
	clear(e.unpushed)
	e.pushCursor = cursor
}

// writeControl writes f on st, a control stream of the edge, serialised
// with sendControl.
func (e *edge) writeControl(st *quic.Stream, f wire.Frame) error {
	e.ctrlMu.Lock()
	defer e.ctrlMu.Unlock()
	return wire.WriteFrame(st, f)
}

// sendControl writes f on the edge's control stream.
func (e *edge) sendControl(f wire.Frame) error {
	e.mu.Lock()
	st := e.ctrl
	e.mu.Unlock()
	if st == nil {
		return errors.New("not connected")
	}
	e.ctrlMu.Lock()
	defer e.ctrlMu.Unlock()
	return wire.WriteFrame(st, f)
}

func (e *edge) wakePusher() {
	select {
	case e.pushWake <- struct{}{}:
	default:
	}
}

// dataConn returns the current data connection, or nil and a channel that is
// closed when it changes.
func (e *edge) dataConn() (*quic.Conn, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.data, e.dataReady
}

func (e *edge) setData(c *quic.Conn) (old *quic.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old = e.data
	e.data = c
	close(e.dataReady)
	e.dataReady = make(chan struct{})
	return old
}

// clearData forgets c if it is still the current data connection.
func (e *edge) clearData(c *quic.Conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.data == c {
		e.data = nil
		close(e.dataReady)
		e.dataReady = make(chan struct{})
	}
}

// stateRule is what an edge's state is judged by: the heartbeat interval,
// and until when after an origin start an edge not heard from yet may
// still hold a lease granted before the restart.
type stateRule struct {
	heartbeat    time.Duration
	unknownUntil time.Time
}

// state derives the edge's health at now.
func (e *edge) state(now time.Time, r stateRule) EdgeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stateLocked(now, r)
}

func (e *edge) stateLocked(now time.Time, r stateRule) EdgeState {
	heartbeat := r.heartbeat
	switch {
	case e.leaseExpires.IsZero() && now.Before(r.unknownUntil):
		// A lease from before the restart may still run: not known down.
		return EdgeSuspect
	case e.leaseExpires.IsZero() || !now.Before(e.leaseExpires):
		return EdgeDown
	case e.control == nil || now.Sub(e.lastHeartbeat) > 3*heartbeat:
		return EdgeSuspect
	}
	return EdgeUp
}

// EdgeStatus is one row of GET /v1/edges.
type EdgeStatus struct {
	ID           string    `json:"id"`
	Region       string    `json:"region"`
	Lat          float64   `json:"lat"`
	Lon          float64   `json:"lon"`
	FaultDomain  string    `json:"fault_domain"`
	PublicURL    string    `json:"public_url"`
	State        EdgeState `json:"state"`
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	Watermark    uint64    `json:"watermark"`
	Lag          uint64    `json:"lag"`
	// LastResync is the edge's latest anti-entropy report, if any since
	// the origin started.
	LastResync *ResyncStatus `json:"last_resync,omitempty"`
	// LostSince is set while the edge is treated as lost: its lease was
	// expired longer than --reassign-after, and the replicas the plan
	// gives it are held by other edges until it returns.
	LostSince time.Time `json:"lost_since,omitzero"`
	// Scrub is the edge's blob scrubbing as the edge last reported it, if
	// it has since the origin started.
	Scrub *ScrubProgress `json:"scrub,omitempty"`
	// RTT is the edge's measured RTT per client network, as it last
	// reported it (the networks with the most traffic).
	RTT []NetworkRTT `json:"rtt,omitempty"`
	// Origin is the origin the edge follows the log from (the cluster's
	// leader), while it is connected.
	Origin string `json:"origin,omitempty"`
}

// registry holds every edge the origin has heard of.
type registry struct {
	path string // edges.json

	mu    sync.Mutex
	edges map[string]*edge
}

func loadRegistry(path string) (*registry, error) {
	r := &registry{path: path, edges: make(map[string]*edge)}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read edge registry: %w", err)
	}
	var infos []edgeInfo
	if err := json.Unmarshal(b, &infos); err != nil {
		return nil, fmt.Errorf("parse edge registry %s: %w", path, err)
	}
	for _, in := range infos {
		r.edges[in.ID] = newEdge(in)
	}
	return r, nil
}

// announce records what an edge says about itself and returns its state.
func (r *registry) announce(info edgeInfo) (*edge, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.edges[info.ID]
	if ok && e.info == info {
		return e, nil
	}
	if !ok {
		e = newEdge(info)
		r.edges[info.ID] = e
	} else {
		e.info = info
	}
	return e, r.saveLocked()
}

func (r *registry) get(id string) *edge {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.edges[id]
}

// all returns every edge, sorted by id.
func (r *registry) all() []*edge {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*edge, 0, len(r.edges))
	for _, e := range r.edges {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.ID < out[j].info.ID })
	return out
}

func (r *registry) saveLocked() error {
	infos := make([]edgeInfo, 0, len(r.edges))
	for _, e := range r.edges {
		infos = append(infos, e.info)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].ID < infos[j].ID })
	b, err := json.MarshalIndent(infos, "", "  ")
	if err != nil {
		return err
	}
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write edge registry: %w", err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		return fmt.Errorf("write edge registry: %w", err)
	}
	return nil
}

// replicaSet picks the edges that must hold ns/key under the static rule:
// k edges by rendezvous (highest random weight) hashing, so adding an edge
// moves only the objects it wins. k == 0 or k ≥ the number of edges means
// every edge, recorded as an empty list.
func (r *registry) replicaSet(ns, key string, k int) []string {
	if k == 0 {
		return nil
	}
	r.mu.Lock()
	ids := make([]string, 0, len(r.edges))
	for id := range r.edges {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if k >= len(ids) {
		return nil
	}
	type scored struct {
		id    string
		score uint64
	}
	s := make([]scored, len(ids))
	for i, id := range ids {
		h := fnv.New64a()
		h.Write([]byte(ns))
		h.Write([]byte{0})
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(id))
		s[i] = scored{id, h.Sum64()}
	}
	sort.Slice(s, func(i, j int) bool {
		if s[i].score != s[j].score {
			return s[i].score > s[j].score
		}
		return s[i].id < s[j].id
	})
	out := make([]string, k)
	for i := range out {
		out[i] = s[i].id
	}
	slices.Sort(out)
	return out
}

// inReplicaSet reports whether edge id must hold a replica of e.
func inReplicaSet(e wire.LogEntry, id string) bool {
	return len(e.Replicas) == 0 || slices.Contains(e.Replicas, id)
}

// waitData blocks until the edge has a data connection or ctx ends.
func (e *edge) waitData(ctx context.Context) (*quic.Conn, error) {
	for {
		c, ch := e.dataConn()
		if c != nil {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// infos lists what every known edge said of itself, sorted by id.
func (r *registry) infos() []edgeInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]edgeInfo, 0, len(r.edges))
	for _, e := range r.edges {
		out = append(out, e.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// merge records edges another origin of the cluster knows: unknown ones
// are added and known ones take the info given.
func (r *registry) merge(infos []edgeInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, in := range infos {
		if pki.ValidID(in.ID) != nil {
			continue
		}
		e, ok := r.edges[in.ID]
		switch {
		case !ok:
			r.edges[in.ID] = newEdge(in)
		case e.info != in:
			e.info = in
		default:
			continue
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return r.saveLocked()
}
