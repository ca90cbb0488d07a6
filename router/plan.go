package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/placement"
)

// maxPlan bounds the origin's GET /v1/placement answer.
const maxPlan = 64 << 20

// errNoPlan: the origin has no plan applied (its static rule is in force).
var errNoPlan = errors.New("no placement plan applied")

// planLoop keeps the plan in force, fetched from the origin's
// GET /v1/placement every PlanInterval, so decisions prefer the edges that
// hold an object. Without a plan (404) or before the first fetch the plan
// is unknown and decisions ignore it. A failed fetch keeps the last plan:
// a plan is a preference, never a reason to refuse a client.
func (m *membership) planLoop(ctx context.Context) {
	tk := m.r.clk.NewTicker(m.r.cfg.PlanInterval)
	defer tk.Stop()
	var lsn string
	for {
		p, l, err := m.fetchPlan(ctx, lsn)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errNoPlan):
			if m.r.plan.Swap(nil) != nil {
				m.r.log.Info("router: placement plan withdrawn; spreading by key only")
			}
			lsn = ""
		case err != nil:
			m.r.log.Debug("router: fetching the placement plan failed; keeping the last one", "err", err)
		case p != nil:
			m.r.plan.Store(p)
			lsn = l
			m.r.log.Info("router: placement plan in force", "lsn", l, "classes", len(p.Classes), "objects", len(p.Objects))
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C():
		}
	}
}

// fetchPlan returns the plan in force and its LSN, or a nil plan when its
// LSN is still have.
func (m *membership) fetchPlan(ctx context.Context, have string) (*placement.Plan, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*m.r.cfg.ProbeTimeout)
	defer cancel()
	u := strings.TrimRight(m.r.cfg.OriginAdmin, "/") + "/v1/placement"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+m.r.cfg.Token)
	resp, err := m.r.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, "", errNoPlan
	case resp.StatusCode != http.StatusOK:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, "", fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	lsn := resp.Header.Get(origin.HeaderLSN)
	if lsn != "" && lsn == have {
		return nil, lsn, nil // unchanged: skip parsing a large plan again
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPlan+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	if len(b) > maxPlan {
		return nil, "", fmt.Errorf("GET %s: plan larger than %d bytes", u, maxPlan)
	}
	p, err := placement.UnmarshalPlan(b)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", u, err)
	}
	return p, lsn, nil
}

// planHolders is Config.Holders when the router follows the origin's plan.
func (r *Router) planHolders(namespace, key string) []string {
	p := r.plan.Load()
	if p == nil {
		return nil
	}
	return p.ReplicasFor(namespace, key)
}
