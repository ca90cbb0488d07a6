package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/ready"
)

// Cluster is what a run talks to.
type Cluster struct {
	// Router is the router's URL (http://host:port); needed when the
	// scenario's target is the router.
	Router string
	// Origin is the origin's admin API URL and Token its admin token:
	// publishes, purges, and the list of edges.
	Origin string
	Token  string
	// Control is the control API of `geocdn dev --processes`, for
	// fault events; empty when the cluster has none.
	Control string
	// Edges are filled from the origin's /v1/edges by Discover; Metrics
	// URLs come from a dev ready file or MetricsURLs.
	Edges []Edge
	// MetricsURLs maps an edge id to its /metrics URL.
	MetricsURLs map[string]string
}

// Edge is one edge as the run sees it.
type Edge struct {
	ID, Region string
	Point      geo.Point
	// URL is the edge's public URL, where the router sends clients.
	URL string
	// Metrics is its /metrics URL, "" if unknown.
	Metrics string
	// host is URL's host:port, how a redirect is matched to the edge.
	host string
}

// ClusterFromReadyFile reads the ready file of `geocdn dev`: the
// router, origin, token and each edge's admin listener.
func ClusterFromReadyFile(path string) (Cluster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cluster{}, fmt.Errorf("dev ready file: %w", err)
	}
	var f ready.File
	if err := json.Unmarshal(b, &f); err != nil {
		return Cluster{}, fmt.Errorf("dev ready file %s: %w", path, err)
	}
	if f.Role != "dev" || f.Origin == nil {
		return Cluster{}, fmt.Errorf("dev ready file %s: role %q, want one written by geocdn dev", path, f.Role)
	}
	c := Cluster{Origin: "http://" + f.Origin.HTTP, MetricsURLs: map[string]string{}}
	if f.Router != nil {
		c.Router = "http://" + f.Router.HTTP
	}
	if f.Control != "" {
		c.Control = "http://" + f.Control
	}
	for _, e := range f.Edges {
		if e.Admin != "" {
			c.MetricsURLs[e.ID] = "http://" + e.Admin + "/metrics"
		}
	}
	if f.TokenFile != "" {
		tok, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return Cluster{}, fmt.Errorf("dev ready file %s: token: %w", path, err)
		}
		c.Token = strings.TrimSpace(string(tok))
	}
	return c, nil
}

// edgeStatus is the part of the origin's GET /v1/edges a run reads.
type edgeStatus struct {
	ID        string  `json:"id"`
	Region    string  `json:"region"`
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	PublicURL string  `json:"public_url"`
	State     string  `json:"state"`
	Watermark uint64  `json:"watermark"`
	Lag       uint64  `json:"lag"`
}

// edgeStatuses asks the origin for its edges.
func (c *Cluster) edgeStatuses(ctx context.Context, hc *http.Client) ([]edgeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Origin+"/v1/edges", nil)
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", c.Origin, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("origin unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("origin %s: GET /v1/edges: %w", c.Origin, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("origin %s: GET /v1/edges: %s: %s", c.Origin, resp.Status, strings.TrimSpace(string(body)))
	}
	var out []edgeStatus
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("origin %s: GET /v1/edges: %w", c.Origin, err)
	}
	return out, nil
}

// Discover fills Edges from the origin, failing fast with a clear
// message when the origin (or the router, if any) does not answer.
func (c *Cluster) Discover(ctx context.Context, hc *http.Client) error {
	if c.Origin == "" {
		return fmt.Errorf("no origin given: a run publishes and purges through the origin's admin API (--origin URL --token-file F, or --cluster READY-FILE)")
	}
	sts, err := c.edgeStatuses(ctx, hc)
	if err != nil {
		return err
	}
	c.Edges = c.Edges[:0]
	for _, s := range sts {
		e := Edge{ID: s.ID, Region: s.Region, Point: geo.Point{Lat: s.Lat, Lon: s.Lon}, URL: s.PublicURL,
			Metrics: c.MetricsURLs[s.ID]}
		if u, err := url.Parse(s.PublicURL); err == nil {
			e.host = u.Host
		}
		c.Edges = append(c.Edges, e)
	}
	if len(c.Edges) == 0 {
		return fmt.Errorf("origin %s knows no edge: nothing to load", c.Origin)
	}
	if c.Router != "" {
		if err := probe(ctx, hc, c.Router+"/healthz"); err != nil {
			return fmt.Errorf("router unreachable: %w", err)
		}
	}
	return nil
}

// edge returns the edge with id, or nil.
func (c *Cluster) edge(id string) *Edge {
	for i := range c.Edges {
		if c.Edges[i].ID == id {
			return &c.Edges[i]
		}
	}
	return nil
}

// edgeByHost returns the edge whose public URL has host (host:port), or
// nil.
func (c *Cluster) edgeByHost(host string) *Edge {
	for i := range c.Edges {
		if c.Edges[i].host == host {
			return &c.Edges[i]
		}
	}
	return nil
}

// probe GETs u within a short time: any answer is a reachable server.
func probe(ctx context.Context, hc *http.Client, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return nil
}
