package loadtest

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// syntheticRun records a 30-second run from three regions: lhr's edge is
// killed at 10 s and restarted at 15 s (connection errors between), the
// hit ratio climbs as the caches warm, and a few answers are corrupt or
// stale.
func syntheticRun() (*Recorder, RunInfo) {
	r := NewRecorder()
	rng := rand.New(rand.NewPCG(7, 7))
	regions := []struct {
		name string
		rtt  time.Duration
	}{{"lhr", 8 * time.Millisecond}, {"nyc", 70 * time.Millisecond}, {"sin", 160 * time.Millisecond}}
	const perSecond = 200
	for i := range 30 * perSecond {
		at := time.Duration(i) * time.Second / perSecond
		reg := regions[i%len(regions)]
		s := Sample{
			Intended: at,
			Latency:  time.Duration(500+rng.ExpFloat64()*1500) * time.Microsecond,
			Region:   reg.name, Edge: reg.name + "-1", Op: OpGet, Status: 200,
			Key: "loadtest/syn/" + strconv.Itoa(rng.IntN(100)), Bytes: 4096,
		}
		if i%10 == 0 {
			s.Op = OpHead
			s.Bytes = 0
		}
		s.Modelled = s.Latency + reg.rtt
		if rng.Float64() < 0.5+0.45*at.Seconds()/30 {
			s.Hit = true
		} else {
			s.Fill = true
			s.Latency += 5 * time.Millisecond
			s.Modelled += 5 * time.Millisecond
		}
		if reg.name == "lhr" && at >= 10*time.Second && at < 15*time.Second {
			s = Sample{Intended: at, Latency: 300 * time.Microsecond, Region: "lhr", Op: OpGet, Class: ClassConnect, Key: s.Key, Detail: "connection refused"}
		}
		switch i {
		case 1234:
			s.Class, s.Detail = ClassCorrupt, "body hashes to 9f2c…, ETag says 77aa…"
		case 4321:
			s.Class, s.Detail = ClassStale, "read v3 after v4 was acknowledged"
		}
		r.Record(s)
	}
	r.Record(Sample{Intended: 12 * time.Second, Latency: 40 * time.Millisecond, Region: "nyc", Op: OpPublishReq, Status: 201})
	r.Record(Sample{Intended: 20 * time.Second, Latency: 60 * time.Millisecond, Region: "nyc", Op: OpPurgeReq, Status: 200})

	counters := func(hits, fills float64) map[string]float64 {
		return map[string]float64{
			"geocdn_edge_hits_total":                    hits,
			"geocdn_edge_misses_total":                  fills,
			`geocdn_edge_fills_total{result="ok"}`:      fills,
			`geocdn_edge_fills_total{result="error"}`:   1,
			"geocdn_edge_fill_bytes_total":              fills * 4096,
			"geocdn_edge_served_bytes_total":            (hits + fills) * 4096,
			"geocdn_edge_purged_total":                  3,
			`geocdn_edge_pushes_total{result="stored"}`: 10,
			"go_gc_cycles_total":                        99,
		}
	}
	info := RunInfo{
		Scenario:    "synthetic",
		File:        "testdata/loadtest/synthetic.yaml",
		Description: "three regions, one edge killed",
		Seed:        18446744073709551557, // beyond float64's exact integers
		Target:      "router http://127.0.0.1:8080",
		Start:       time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Duration:    30 * time.Second,
		Events: []EventRecord{
			{At: 15 * time.Second, Description: "restart lhr-1"},
			{At: 10 * time.Second, Description: "kill lhr-1"},
			{At: 20 * time.Second, Description: "purge prefix loadtest/syn/"},
			{At: 25 * time.Second, Description: `publish <script>alert("x")</script>`, Err: "503 from origin"},
		},
		EdgesBefore: map[string]map[string]float64{
			"lhr-1": counters(100, 50), "nyc-1": counters(0, 0), "sin-1": counters(10, 10),
		},
		EdgesAfter: map[string]map[string]float64{
			// lhr-1 restarted: its counters went back to zero and count
			// from the restart.
			"lhr-1": counters(800, 40), "nyc-1": counters(1500, 300), "sin-1": counters(1400, 310),
		},
		Convergence: &Convergence{
			Converged: []string{"lhr-1", "nyc-1", "sin-1"},
			Lagging:   map[string]string{},
			Checked:   300,
		},
		Regions: []RegionInfo{{"lhr", 3}, {"nyc", 3}, {"sin", 3}, {"syd", 1}},
	}
	return r, info
}

func syntheticReport() *Report {
	r, info := syntheticRun()
	return r.Report(info)
}

func TestReportJSONSchema(t *testing.T) {
	var buf bytes.Buffer
	if err := syntheticReport().WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, buf.String())
	}

	type kind int
	const (
		str kind = iota
		num
		boolean
		obj
		arr
		null
	)
	kindOf := func(v any) kind {
		switch v.(type) {
		case string:
			return str
		case float64:
			return num
		case bool:
			return boolean
		case map[string]any:
			return obj
		case []any:
			return arr
		}
		return null
	}
	// get follows a path of keys; "0" indexes an array.
	get := func(path string) (any, bool) {
		var v any = doc
		for _, k := range strings.Split(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				var ok bool
				if v, ok = x[k]; !ok {
					return nil, false
				}
			case []any:
				if k != "0" || len(x) == 0 {
					return nil, false
				}
				v = x[0]
			default:
				return nil, false
			}
		}
		return v, true
	}
	tests := []struct {
		path string
		want kind
	}{
		{"schema", str},
		{"scenario", str},
		{"seed", str},
		{"target", str},
		{"start", str},
		{"duration_s", num},
		{"interrupted", boolean},
		{"overall.requests", num},
		{"overall.rate", num},
		{"overall.p50_ms", num},
		{"overall.p90_ms", num},
		{"overall.p99_ms", num},
		{"overall.p999_ms", num},
		{"overall.modelled.p50_ms", num},
		{"overall.modelled.p99_ms", num},
		{"overall.hit_ratio", num},
		{"overall.bytes", num},
		{"regions", arr},
		{"regions.0.name", str},
		{"regions.0.share", num},
		{"regions.0.requests", num},
		{"regions.0.p50_ms", num},
		{"regions.0.p90_ms", num},
		{"regions.0.p99_ms", num},
		{"regions.0.p999_ms", num},
		{"regions.0.modelled.p50_ms", num},
		{"regions.0.modelled.p99_ms", num},
		{"regions.0.hit_ratio", num},
		{"regions.0.bytes", num},
		{"regions.0.errors.total", num},
		{"regions.0.errors.by_class", obj},
		{"regions.0.errors.by_class.connect", num},
		{"ops.0.name", str},
		{"ops.0.p99_ms", num},
		{"errors.total", num},
		{"errors.by_class", obj},
		{"errors.by_class.corrupt", num},
		{"corrupt", num},
		{"stale", num},
		{"corrupt_samples.0.key", str},
		{"corrupt_samples.0.detail", str},
		{"stale_samples.0.t", num},
		{"timeline.0.t", num},
		{"timeline.0.requests", num},
		{"timeline.0.errors", num},
		{"timeline.0.hits", num},
		{"timeline.0.rate", num},
		{"timeline.0.hit_ratio", num},
		{"timeline.0.p50_ms", num},
		{"timeline.0.p99_ms", num},
		{"origin_offload.fills", num},
		{"origin_offload.requests", num},
		{"origin_offload.fill_ratio", num},
		{"origin_offload.offload", num},
		{"edges.0.id", str},
		{"edges.0.before", obj},
		{"edges.0.after", obj},
		{"edges.0.delta", obj},
		{"edges.0.delta.geocdn_edge_hits_total", num},
		{"events.0.t", num},
		{"events.0.description", str},
		{"convergence.ok", boolean},
		{"convergence.missing_count", num},
	}
	for _, tt := range tests {
		v, ok := get(tt.path)
		if !ok {
			t.Errorf("%s: missing", tt.path)
			continue
		}
		if got := kindOf(v); got != tt.want {
			t.Errorf("%s = %#v: kind %d, want %d", tt.path, v, got, tt.want)
		}
	}
	if v, _ := get("schema"); v != ReportSchema || ReportSchema != "geocdn-loadtest/1" {
		t.Errorf("schema = %v, want geocdn-loadtest/1", v)
	}
	if v, _ := get("seed"); v != "18446744073709551557" {
		t.Errorf("seed = %v, want the exact 64-bit seed as a string", v)
	}
	if v, _ := get("events.0.description"); v != "kill lhr-1" {
		t.Errorf("events[0] = %v, want kill lhr-1 (events sorted by time)", v)
	}
	if _, ok := get("edges.0.before.go_gc_cycles_total"); ok {
		t.Error("edge counters include go_gc_cycles_total, want only geocdn_*")
	}

	// It reads back into a Report.
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Seed != 18446744073709551557 || len(back.Regions) != 4 || back.Regions[3].Name != "syd" {
		t.Errorf("round trip: seed %d, regions %+v", back.Seed, back.Regions)
	}
}

func TestReportEmptyListsAreNotNull(t *testing.T) {
	var buf bytes.Buffer
	if err := NewRecorder().Report(RunInfo{Scenario: "empty"}).WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"regions", "ops", "corrupt_samples", "stale_samples", "timeline", "edges", "events"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("%s = %#v, want []", k, doc[k])
		}
	}
	for _, k := range []string{"origin_offload", "convergence"} {
		if v, ok := doc[k]; !ok || v != nil {
			t.Errorf("%s = %#v, want null", k, v)
		}
	}
	if m, ok := doc["errors"].(map[string]any)["by_class"].(map[string]any); !ok || len(m) != 0 {
		t.Errorf("errors.by_class = %#v, want {}", doc["errors"])
	}
}

func TestReportEdgesAndOffload(t *testing.T) {
	rep := syntheticReport()
	if len(rep.Edges) != 3 {
		t.Fatalf("edges = %+v, want 3", rep.Edges)
	}
	lhr := rep.Edges[0]
	// 50 → 40 fills is a reset: the delta is the 40 since the restart.
	if got := CounterSum(lhr.Delta, "geocdn_edge_fills_total"); lhr.ID != "lhr-1" || got != 40 {
		t.Errorf("lhr-1 fills delta = %v, want 40 (counter reset)", got)
	}
	if got := rep.Edges[1].Delta["geocdn_edge_hits_total"]; got != 1500 {
		t.Errorf("nyc-1 hits delta = %v, want 1500", got)
	}
	o := rep.OriginOffload
	if o == nil {
		t.Fatal("origin_offload is null")
	}
	var reads int64
	for _, s := range rep.Ops {
		if s.Name != string(OpPublishReq) && s.Name != string(OpPurgeReq) {
			reads += s.Requests
		}
	}
	wantFills := 40.0 + 300 + 300 // ok results; error results did not move
	if o.Fills != wantFills || o.Requests != reads || !approxRel(o.Offload, 1-wantFills/float64(reads), 1e-9) {
		t.Errorf("offload = %+v, want %v fills for %d reads", o, wantFills, reads)
	}
}

func TestReportEdgeNotScrapedAfter(t *testing.T) {
	rep := NewRecorder().Report(RunInfo{
		EdgesBefore: map[string]map[string]float64{"a": {"geocdn_edge_fills_total": 5}},
		EdgesAfter:  map[string]map[string]float64{},
	})
	if len(rep.Edges) != 1 || rep.Edges[0].Error == "" || len(rep.Edges[0].Delta) != 0 {
		t.Errorf("edges = %+v, want a with an error and no delta", rep.Edges)
	}
}

func TestReportText(t *testing.T) {
	var buf bytes.Buffer
	if err := syntheticReport().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	lines := strings.Split(out, "\n")
	// row returns the table row starting with name.
	row := func(name string) []string {
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == name {
				return f
			}
		}
		return nil
	}
	for _, name := range []string{"lhr", "nyc", "sin", "syd", "overall", "GET", "HEAD", "publish", "purge", "lhr-1", "nyc-1", "sin-1"} {
		if row(name) == nil {
			t.Errorf("no row for %s", name)
		}
	}
	if f := row("lhr"); len(f) < 14 || !strings.Contains(f[len(f)-1], "connect=") {
		t.Errorf("lhr row = %q, want its connect errors in the last column", f)
	}
	if f := row("syd"); f == nil || f[2] != "0" {
		t.Errorf("syd row = %q, want a row with 0 requests", f)
	}
	if f := row("nyc-1"); f == nil || f[1] != "1,500" {
		t.Errorf("nyc-1 row = %q, want 1,500 hits", f)
	}
	for _, want := range []string{
		"requests", "p99.9 ms", "hit ratio", // headings
		"Origin offload:", "kill lhr-1", "failed: 503 from origin",
		"corrupt answers: 1", "stale answers: 1", "read v3 after v4",
		"Convergence: every edge converged",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	// The tables are aligned: in every row of the region table, the p99
	// figure ends where its heading does.
	var head string
	for i, l := range lines {
		if strings.HasPrefix(l, "By client region") {
			head = lines[i+1]
			end := strings.Index(head, "p99 ms") + len("p99 ms")
			for _, r := range lines[i+2 : i+7] {
				if len(r) <= end || r[end-1] == ' ' || r[end] != ' ' {
					t.Errorf("misaligned row:\n%s\n%s", head, r)
				}
			}
		}
	}
	if head == "" {
		t.Error("no region table")
	}
}
