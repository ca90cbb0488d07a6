package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/origin"
)

// maxEdgeList bounds the origin's /v1/edges answer (a few hundred bytes
// an edge).
const maxEdgeList = 16 << 20

// EdgeView is the router's view of one edge.
type EdgeView struct {
	ID, Region, PublicURL string
	// OriginState is the state the origin last reported.
	OriginState origin.EdgeState
	// Probed is true once a probe has finished; ProbeOK is its result and
	// ProbeError why it failed.
	Probed     bool
	ProbeOK    bool
	ProbeError string
	// Routable: the origin says up and the last probe succeeded.
	Routable bool
}

// membership keeps the edge list fetched from the origin and the result
// of each edge's probes, and rebuilds the router's Table whenever the set
// of routable edges or their public details change.
type membership struct {
	r *Router

	mu      sync.Mutex
	members map[string]*member
	// ctx is the context probers run under; nil before run.
	ctx context.Context
	// installed is the edge set of the Table last installed, sorted by
	// id, so changes that do not alter it keep the Table and its caches.
	installed []Edge
	wg        sync.WaitGroup
}

type member struct {
	status   origin.EdgeStatus
	probed   bool
	probeOK  bool
	probeErr string
	routable bool
	stop     context.CancelFunc
}

func newMembership(r *Router) *membership {
	return &membership{r: r, members: make(map[string]*member)}
}

// run fetches the edge list every MembershipInterval until ctx ends, then
// waits for every prober to stop.
func (m *membership) run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	if m.r.cfg.Holders == nil && m.r.cfg.PlanInterval > 0 {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.planLoop(ctx)
		}()
	}
	tk := m.r.clk.NewTicker(m.r.cfg.MembershipInterval)
	defer tk.Stop()
	failing := false
	for {
		err := m.refresh(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			m.r.metrics.pollErrors.Inc()
			// Keep routing on the last list: the edges' own /healthz
			// still turns 503 when they lose their lease, and an origin
			// outage must not stop delivery. Log the first failure of a
			// run of them only.
			if !failing {
				m.r.log.Warn("router: fetching the edge list failed; routing on the last one", "origin", m.r.cfg.OriginAdmin, "err", err)
			}
			failing = true
		case err == nil && failing:
			m.r.log.Info("router: edge list fetched again", "origin", m.r.cfg.OriginAdmin)
			failing = false
		}
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, mb := range m.members {
				mb.stop()
			}
			m.mu.Unlock()
			m.wg.Wait()
			return
		case <-tk.C():
		}
	}
}

// refresh fetches GET /v1/edges and applies it.
func (m *membership) refresh(ctx context.Context) error {
	list, err := m.fetch(ctx)
	if err != nil {
		return err
	}
	m.apply(list)
	return nil
}

func (m *membership) fetch(ctx context.Context) ([]origin.EdgeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, m.r.cfg.ProbeTimeout)
	defer cancel()
	u := strings.TrimRight(m.r.cfg.OriginAdmin, "/") + "/v1/edges"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.r.cfg.Token)
	resp, err := m.r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	var list []origin.EdgeStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxEdgeList)).Decode(&list); err != nil {
		return nil, fmt.Errorf("GET %s: decode edge list: %w", u, err)
	}
	return list, nil
}

// apply makes the edge list current: probers start for new edges and stop
// for those gone.
func (m *membership) apply(list []origin.EdgeStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return
	}
	seen := make(map[string]bool, len(list))
	changed := false
	for _, s := range list {
		if err := checkEdge(s); err != nil {
			m.r.log.Debug("router: ignoring edge", "id", s.ID, "err", err)
			continue
		}
		if seen[s.ID] {
			continue
		}
		seen[s.ID] = true
		mb, ok := m.members[s.ID]
		if !ok {
			ctx, stop := context.WithCancel(m.ctx)
			mb = &member{status: s, stop: stop}
			m.members[s.ID] = mb
			m.wg.Add(1)
			go m.probeLoop(ctx, s.ID)
			changed = true
			continue
		}
		old := mb.status
		mb.status = s
		if old.State != s.State || old.PublicURL != s.PublicURL || old.Lat != s.Lat || old.Lon != s.Lon || old.Region != s.Region ||
			!slices.Equal(old.RTT, s.RTT) {
			if old.PublicURL != s.PublicURL {
				// A probe of the old address says nothing of the new.
				mb.probed, mb.probeOK = false, false
			}
			changed = true
		}
	}
	for id, mb := range m.members {
		if !seen[id] {
			mb.stop()
			delete(m.members, id)
			changed = true
			m.r.log.Info("router: edge left the origin's list", "id", id)
		}
	}
	if changed {
		m.rebuildLocked()
	}
}

func checkEdge(s origin.EdgeStatus) error {
	if s.ID == "" {
		return errors.New("no id")
	}
	u, err := url.Parse(s.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("public url %q is not an http(s) URL", s.PublicURL)
	}
	if !validPoint(geo.Point{Lat: s.Lat, Lon: s.Lon}) {
		return fmt.Errorf("coordinates %v,%v out of range", s.Lat, s.Lon)
	}
	return nil
}

// probeLoop probes one edge every ProbeInterval until ctx ends.
func (m *membership) probeLoop(ctx context.Context, id string) {
	defer m.wg.Done()
	tk := m.r.clk.NewTicker(m.r.cfg.ProbeInterval)
	defer tk.Stop()
	for {
		m.probe(ctx, id)
		select {
		case <-ctx.Done():
			return
		case <-tk.C():
		}
	}
}

func (m *membership) probe(ctx context.Context, id string) {
	m.mu.Lock()
	mb, ok := m.members[id]
	var base string
	if ok {
		base = mb.status.PublicURL
	}
	m.mu.Unlock()
	if !ok {
		return
	}
	err := m.get(ctx, strings.TrimRight(base, "/")+"/healthz")
	if ctx.Err() != nil {
		return // stopping: the result means nothing
	}
	if err != nil {
		m.r.metrics.probeFailures.Inc()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.members[id]; !ok || cur != mb || mb.status.PublicURL != base {
		return // removed or moved while the probe ran
	}
	wasOK, wasProbed := mb.probeOK, mb.probed
	mb.probed, mb.probeOK = true, err == nil
	mb.probeErr = ""
	if err != nil {
		mb.probeErr = err.Error()
	}
	if !wasProbed || wasOK != mb.probeOK {
		m.rebuildLocked()
	}
}

// get asks url and wants a 200 within ProbeTimeout.
func (m *membership) get(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, m.r.cfg.ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := m.r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so the connection is reused for the next probe.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// rebuildLocked recomputes who is routable and installs a new Table when
// the routable set or any routable edge's details changed.
func (m *membership) rebuildLocked() {
	edges := make([]Edge, 0, len(m.members))
	for id, mb := range m.members {
		routable := mb.status.State == origin.EdgeUp && mb.probed && mb.probeOK
		if routable != mb.routable {
			mb.routable = routable
			if routable {
				m.r.log.Info("router: edge routable", "id", id, "url", mb.status.PublicURL)
			} else {
				m.r.log.Info("router: edge not routable", "id", id, "origin_state", mb.status.State, "probed", mb.probed, "probe_error", mb.probeErr)
			}
		}
		if routable {
			edges = append(edges, EdgeFromStatus(mb.status))
		}
	}
	slices.SortFunc(edges, func(a, b Edge) int { return strings.Compare(a.ID, b.ID) })
	if slices.EqualFunc(edges, m.installed, sameEdge) {
		return
	}
	m.installed = edges
	m.r.table.Store(m.r.newTable(edges))
}

func (m *membership) view() []EdgeView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]EdgeView, 0, len(m.members))
	for _, mb := range m.members {
		s := mb.status
		out = append(out, EdgeView{
			ID: s.ID, Region: s.Region, PublicURL: s.PublicURL, OriginState: s.State,
			Probed: mb.probed, ProbeOK: mb.probeOK, ProbeError: mb.probeErr, Routable: mb.routable,
		})
	}
	slices.SortFunc(out, func(a, b EdgeView) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// known is the number of edges in the list and of routable ones, for
// metrics.
func (m *membership) known() (all, routable int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range m.members {
		all++
		if mb.routable {
			routable++
		}
	}
	return all, routable
}

// EdgeFromStatus is the routable edge a GET /v1/edges row describes, with
// the RTTs it measured; whether it is healthy is the caller's to judge.
func EdgeFromStatus(s origin.EdgeStatus) Edge {
	return Edge{ID: s.ID, Region: s.Region, Lat: s.Lat, Lon: s.Lon, PublicURL: s.PublicURL, Healthy: true, RTT: measuredRTTs(s.RTT)}
}

// sameEdge reports whether a and b would make the same table.
func sameEdge(a, b Edge) bool {
	return a.ID == b.ID && a.Region == b.Region && a.Lat == b.Lat && a.Lon == b.Lon &&
		a.PublicURL == b.PublicURL && a.Healthy == b.Healthy && slices.Equal(a.RTT, b.RTT)
}

// measuredRTTs is an edge's rtt list of GET /v1/edges as the table takes
// it; rows that do not parse are left out.
func measuredRTTs(rows []origin.NetworkRTT) []MeasuredRTT {
	var out []MeasuredRTT
	for _, r := range rows {
		p, err := netip.ParsePrefix(r.Network)
		if err != nil || r.MedianMs <= 0 || r.Samples <= 0 {
			continue
		}
		out = append(out, MeasuredRTT{Network: p.Masked(), RTT: time.Duration(r.MedianMs * float64(time.Millisecond)), Samples: r.Samples})
	}
	return out
}
