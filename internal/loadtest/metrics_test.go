package loadtest

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const metricsText = `# HELP geocdn_edge_hits_total Object requests answered from the local store.
# TYPE geocdn_edge_hits_total counter
geocdn_edge_hits_total 1234
# HELP geocdn_edge_fills_total Fills from the origin by result: ok, not_found, error.
# TYPE geocdn_edge_fills_total counter
geocdn_edge_fills_total{result="error"} 2
geocdn_edge_fills_total{result="not_found"} 0
geocdn_edge_fills_total{result="ok"} 56
# HELP geocdn_edge_fill_bytes_total Content bytes stored by successful fills.
# TYPE geocdn_edge_fill_bytes_total counter
geocdn_edge_fill_bytes_total 5.24288e+06
# HELP geocdn_edge_watermark Highest log sequence number the edge has applied.
# TYPE geocdn_edge_watermark gauge
geocdn_edge_watermark 77
# HELP geocdn_edge_fill_duration_seconds Time to fill one object from the origin.
# TYPE geocdn_edge_fill_duration_seconds histogram
geocdn_edge_fill_duration_seconds_bucket{le="0.001"} 1
geocdn_edge_fill_duration_seconds_bucket{le="+Inf"} 58
geocdn_edge_fill_duration_seconds_sum 1.5
geocdn_edge_fill_duration_seconds_count 58
# TYPE multi_label_total counter
multi_label_total{z="1",a="say \"hi\""} 3
`

func TestMetricsParseCounters(t *testing.T) {
	got, err := ParseCounters(strings.NewReader(metricsText))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"geocdn_edge_hits_total":                      1234,
		`geocdn_edge_fills_total{result="error"}`:     2,
		`geocdn_edge_fills_total{result="not_found"}`: 0,
		`geocdn_edge_fills_total{result="ok"}`:        56,
		"geocdn_edge_fill_bytes_total":                5 << 20,
		// Labels sorted by name, values quoted as Prometheus prints them.
		`multi_label_total{a="say \"hi\"",z="1"}`: 3,
	}
	if !maps.Equal(got, want) {
		t.Errorf("ParseCounters =\n%v\nwant\n%v", got, want)
	}
	if s := CounterSum(got, "geocdn_edge_fills_total"); s != 58 {
		t.Errorf("CounterSum(fills) = %v, want 58", s)
	}
	if s := CounterSum(got, "geocdn_edge_fill"); s != 0 {
		t.Errorf("CounterSum of a name prefix = %v, want 0", s)
	}
}

func TestMetricsParseCountersError(t *testing.T) {
	if _, err := ParseCounters(strings.NewReader("geocdn_edge_hits_total one two\n")); err == nil {
		t.Error("ParseCounters of a malformed line: no error")
	}
}

func TestMetricsDiffCounters(t *testing.T) {
	before := map[string]float64{"a": 10, "b": 5, "gone": 7}
	after := map[string]float64{"a": 25, "b": 2, "new": 4}
	got := DiffCounters(before, after)
	// b went down: a reset, counted from zero; new counts from zero;
	// gone, no longer exported, has no delta.
	want := map[string]float64{"a": 15, "b": 2, "new": 4}
	if !maps.Equal(got, want) {
		t.Errorf("DiffCounters = %v, want %v", got, want)
	}
}

// TestMetricsScrape scrapes a real client_golang registry served on
// loopback, as an edge's /metrics is.
func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "geocdn_edge_hits_total", Help: "h"})
	fills := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "geocdn_edge_fills_total", Help: "f"}, []string{"result"})
	reg.MustRegister(hits, fills)
	hits.Add(7)
	fills.WithLabelValues("ok").Add(3)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	ctx := context.Background()
	before, err := ScrapeCounters(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	hits.Add(10)
	fills.WithLabelValues("ok").Add(2)
	fills.WithLabelValues("error").Inc()
	after, err := ScrapeCounters(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	d := DiffCounters(before, after)
	want := map[string]float64{
		"geocdn_edge_hits_total":                  10,
		`geocdn_edge_fills_total{result="ok"}`:    2,
		`geocdn_edge_fills_total{result="error"}`: 1,
	}
	if !maps.Equal(d, want) {
		t.Errorf("delta = %v, want %v", d, want)
	}

	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	if _, err := ScrapeCounters(ctx, bad.Client(), bad.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("scrape of a 404: err = %v, want one naming the status", err)
	}
}
