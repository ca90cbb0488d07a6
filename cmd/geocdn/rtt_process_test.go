package main

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestMeasuredRTTProcesses, on the real clock with every node its own
// process: edges measure the RTT of their client connections (TCP_INFO),
// report per-network medians to the origin, the origin lists them in GET
// /v1/edges, and the router ranks by them: for a client of 127.0.0.0/24
// the measured edge comes first, whatever the map says, and /v1/route
// says which figure ranked each candidate.
func TestMeasuredRTTProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of processes and waits for a report interval (10 s)")
	}
	d := startDevProcesses(t)
	e := d.f.Edges[0]
	// Twelve connections, one request each.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for range 12 {
		if code, _ := fetch(c, "http://"+e.HTTP+"/healthz"); code != http.StatusOK {
			t.Fatalf("edge %s /healthz: %d", e.ID, code)
		}
	}

	var edges []struct {
		ID  string `json:"id"`
		RTT []struct {
			Network  string  `json:"network"`
			MedianMs float64 `json:"median_ms"`
			Samples  float64 `json:"samples"`
		} `json:"rtt"`
	}
	waitFor(t, "the origin listing "+e.ID+"'s RTT to 127.0.0.0/24", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+d.f.Origin.HTTP+"/v1/edges", nil)
		req.Header.Set("Authorization", "Bearer "+d.token)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&edges) != nil {
			return false
		}
		for _, row := range edges {
			for _, r := range row.RTT {
				if row.ID == e.ID && r.Network == "127.0.0.0/24" && r.Samples >= 12 {
					return true
				}
			}
		}
		return false
	}, d.p)
	for _, row := range edges {
		for _, r := range row.RTT {
			if r.Network == "127.0.0.0/24" && (r.MedianMs <= 0 || r.MedianMs > 50) {
				t.Errorf("%s: loopback RTT %v ms", row.ID, r.MedianMs)
			}
		}
	}

	// The router places 127.0.0.1 at dev's default location (Frankfurt)
	// and ranks every edge by the model, but the measured one by its
	// measurement: however far it is on the map, it is now the nearest,
	// first among the candidates.
	type candidate struct {
		Edge          string  `json:"edge"`
		EstRTTms      float64 `json:"est_rtt_ms"`
		MeasuredRTTms float64 `json:"measured_rtt_ms"`
	}
	var route struct {
		Edge       string      `json:"edge"`
		RTTSource  string      `json:"rtt_source"`
		Candidates []candidate `json:"candidates"`
	}
	waitFor(t, "the router ranking "+e.ID+" first for 127.0.0.1 by measurement", func() bool {
		resp, err := c.Get("http://" + d.f.Router.HTTP + "/v1/route?ip=127.0.0.1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return json.Unmarshal(b, &route) == nil && len(route.Candidates) > 0 && route.Candidates[0].Edge == e.ID &&
			route.Candidates[0].MeasuredRTTms > 0
	}, d.p)
	if first := route.Candidates[0]; first.MeasuredRTTms > 50 {
		t.Fatalf("route %+v: %s first by %v ms, want a loopback RTT", route, e.ID, first.MeasuredRTTms)
	}
	// rtt_source names what ranked the edge chosen: its measurement when
	// it has one.
	for _, c := range route.Candidates {
		if c.Edge == route.Edge && (c.MeasuredRTTms > 0) != (route.RTTSource == "measured") {
			t.Fatalf("route %+v: chose %s, measured %v ms, but rtt_source %q", route, c.Edge, c.MeasuredRTTms, route.RTTSource)
		}
	}
}
