package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/router"
)

// TestEndToEnd runs a 5 s scenario through a real router against an
// in-process cluster of three edges on loopback, with every operation,
// strong publishes, purges and a flash crowd, and checks the JSON
// report's schema and that nothing corrupt or stale was served.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a cluster and runs for about 10 s")
	}
	logger := slog.New(slog.DiscardHandler)
	cl, err := cluster.Start(cluster.Config{
		Dir: t.TempDir(), LeaseTerm: 2 * time.Second, Logger: logger,
		Edges: []cluster.EdgeSpec{
			{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13, AdminAddr: "127.0.0.1:0"},
			{ID: "iad", Region: "us-east", Lat: 38.90, Lon: -77.04, AdminAddr: "127.0.0.1:0"},
			{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69, AdminAddr: "127.0.0.1:0"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rt, err := router.New(router.Config{
		HTTPAddr: "127.0.0.1:0", OriginAdmin: cl.OriginURL(), Token: cl.Token,
		GeoIPPath:      "../../testdata/geoip-test.mmdb",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:         logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	rtDone := make(chan error, 1)
	go func() { rtDone <- rt.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-rtDone; err != nil {
			t.Errorf("router: %v", err)
		}
	}()

	// Wait for the origin to list every edge up, as geocdn dev does
	// before it says it is ready.
	target := Cluster{Router: "http://" + rt.HTTPAddr().String(), Origin: cl.OriginURL(), Token: cl.Token}
	for deadline := time.Now().Add(30 * time.Second); ; {
		sts, err := target.edgeStatuses(ctx, http.DefaultClient)
		up := 0
		for _, s := range sts {
			if s.State == "up" {
				up++
			}
		}
		if err == nil && up == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the origin lists %d edges up after 30 s (%v): %+v", up, err, sts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	metrics := map[string]string{}
	for _, en := range cl.Edges() {
		metrics[en.Spec.ID] = "http://" + en.Edge().AdminAddr().String() + "/metrics"
	}
	scn, err := ParseScenario("e2e.yaml", strings.NewReader(`
name: e2e
seed: 3
target: {kind: router, keep_edge: true, session_requests: 4}
clients: {demand: ../../testdata/demand.csv}
objects: {count: 60, zipf: 0.9, sizes: {weighted: [{size: 1KiB, weight: 3}, {size: 40KiB, weight: 1}]}}
arrivals:
  phases:
    - {ramp: 50..150, for: 2s}
    - {rate: 150, for: 3s}
mix: {get: 70, head: 10, conditional: 10, range: 10}
writes:
  - {op: publish, rate: 4, consistency: strong, w: all}
  - {op: purge, rate: 1, by: prefix}
events:
  - {at: 1s, publish: {key: e2e/hero.bin, size: 64KiB, consistency: strong, w: all}}
  - {at: 2s, focus: {key: e2e/hero.bin, share: 0.5, multiplier: 2, for: 2s}}
  - {at: 3s, purge: {by: tag, value: loadtest-e2e-t3}}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(t.Context(), Options{
		Scenario: scn, GeoIP: "../../testdata/geoip-test.mmdb", Logger: logger,
		Cluster:  Cluster{Router: target.Router, Origin: target.Origin, Token: target.Token, MetricsURLs: metrics},
		Converge: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "regions", "errors", "corrupt", "stale", "overall", "timeline", "origin_offload", "edges", "events", "convergence"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report.json has no %q", k)
		}
	}
	regions, _ := doc["regions"].([]any)
	if len(regions) == 0 {
		t.Fatal("report.json: no regions")
	}
	for _, r := range regions {
		m, _ := r.(map[string]any)
		for _, k := range []string{"name", "p99_ms", "hit_ratio", "requests"} {
			if _, ok := m[k]; !ok {
				t.Errorf("report.json: region %v has no %q", m["name"], k)
			}
		}
	}
	if doc["corrupt"] != 0.0 || doc["stale"] != 0.0 {
		t.Fatalf("corrupt %v, stale %v: %+v %+v", doc["corrupt"], doc["stale"], rep.CorruptSamples, rep.StaleSamples)
	}
	if f := rep.Failure(); f != "" {
		var text bytes.Buffer
		rep.WriteText(&text)
		t.Fatalf("run failed its checks: %s\n%s", f, text.String())
	}
	if rep.Overall.Requests < 500 {
		t.Fatalf("%d requests; the schedule makes about 650", rep.Overall.Requests)
	}
	if rep.Overall.HitRatio <= 0 {
		t.Fatalf("hit ratio %v: preloaded objects must be hits", rep.Overall.HitRatio)
	}
	if rep.OriginOffload == nil || len(rep.Edges) != 3 {
		t.Fatalf("origin offload %+v, %d edges' counters (%+v): want the counters of all 3", rep.OriginOffload, len(rep.Edges), rep.Edges)
	}
	if errs := rep.Errors.Total; errs > rep.Overall.Requests/100 {
		t.Fatalf("%d errors in %d requests: %+v", errs, rep.Overall.Requests, rep.Errors.ByClass)
	}
}
