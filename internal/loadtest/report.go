package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/dustin/go-humanize"
)

// ReportSchema names the version of the Report's JSON layout. Fields may
// be added within a version; a field is never renamed, removed or given a
// different meaning without a new version.
const ReportSchema = "geocdn-loadtest/1"

// Report is a finished run, ready to print (WriteText), save (WriteJSON)
// or chart (WriteHTML). Its JSON form is the stable, documented schema in
// the README's "Reports": times since the run's start are in seconds ("t"), latencies
// in milliseconds ("_ms"), sizes in bytes, ratios in [0, 1]. Lists are
// never null, so a consumer can iterate without checking.
type Report struct {
	Schema      string `json:"schema"` // ReportSchema
	Scenario    string `json:"scenario"`
	File        string `json:"file,omitempty"` // the scenario file
	Description string `json:"description,omitempty"`
	// Seed is a string: a 64-bit seed does not survive a trip through a
	// float64, which is what many JSON readers turn numbers into.
	Seed   uint64    `json:"seed,string"`
	Target string    `json:"target"`
	Start  time.Time `json:"start"`
	// DurationS is how long the run lasted, in seconds; every rate is
	// over it.
	DurationS float64 `json:"duration_s"`
	// Interrupted is true when the run was stopped before its end: its
	// figures cover what ran.
	Interrupted bool `json:"interrupted"`

	Overall Stats   `json:"overall"`
	Regions []Stats `json:"regions"` // by name
	Ops     []Stats `json:"ops"`     // GET, HEAD, conditional GET, Range GET, publish, purge, then others

	Errors  ErrorCounts `json:"errors"`
	Corrupt int64       `json:"corrupt"` // answers of class corrupt, all counted
	Stale   int64       `json:"stale"`   // answers of class stale, all counted
	// CorruptSamples and StaleSamples are the first 1000 of each.
	CorruptSamples []BadSample `json:"corrupt_samples"`
	StaleSamples   []BadSample `json:"stale_samples"`

	// Timeline is one entry per second of the run, by the time each
	// request was meant to start, empty seconds included.
	Timeline []Window `json:"timeline"`

	// OriginOffload is null when no edge's counters were scraped.
	OriginOffload *Offload      `json:"origin_offload"`
	Edges         []EdgeReport  `json:"edges"`
	Events        []ReportEvent `json:"events"`
	// Convergence is null when the run did not check it (an
	// interrupted run).
	Convergence *ConvergenceResult `json:"convergence"`
}

// Stats are the figures of a set of samples: the whole run, a region (the
// client's) or an op.
type Stats struct {
	Name string `json:"name,omitempty"` // region or op; empty for the overall figures
	// Share is a region's share of the clients, as the scenario weighs
	// them (0 to 1); absent for the overall figures and ops.
	Share    float64 `json:"share,omitempty"`
	Requests int64   `json:"requests"`
	Rate     float64 `json:"rate"` // requests per second over the run
	// Latency, flattened into p50_ms, p90_ms, …: measured on loopback,
	// from the request's intended start to its last byte, errors
	// included, overload (never sent) excluded.
	Latency
	// Modelled adds the latency model's round trip from the client's
	// region to the edge that answered: what a user there would see.
	// Samples no edge answered are left out.
	Modelled Latency `json:"modelled"`
	Hits     int64   `json:"hits"`
	Fills    int64   `json:"fills"`
	// HitRatio is hits ÷ (hits + fills): answers without a cache status
	// (errors, writes) count for neither.
	HitRatio float64     `json:"hit_ratio"`
	Bytes    int64       `json:"bytes"` // body bytes received
	Errors   ErrorCounts `json:"errors"`
}

// Latency is a latency distribution's summary, in milliseconds. Every
// figure is zero when there was no sample.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// ErrorCounts counts failed requests. ByClass has one entry per class
// seen (connect, timeout, 4xx, 5xx, corrupt, stale, overload, redirect)
// and is never null.
type ErrorCounts struct {
	Total   int64            `json:"total"`
	ByClass map[string]int64 `json:"by_class"`
}

// Window is one second of the timeline.
type Window struct {
	T        float64 `json:"t"` // the window's start, seconds from the run's start
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Hits     int64   `json:"hits"`
	Fills    int64   `json:"fills"`
	Bytes    int64   `json:"bytes"`
	// Rate is requests per second: Requests, except in a last window
	// shorter than a second.
	Rate     float64 `json:"rate"`
	HitRatio float64 `json:"hit_ratio"`
	// P50 and P99 are within about 3% (zero when Requests is zero).
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// BadSample is one corrupt or stale answer.
type BadSample struct {
	T         float64 `json:"t"` // intended start, seconds from the run's start
	Region    string  `json:"region"`
	Edge      string  `json:"edge"`
	Op        string  `json:"op"`
	Key       string  `json:"key"`
	Status    int     `json:"status"`
	LatencyMs float64 `json:"latency_ms"`
	Detail    string  `json:"detail"`
}

// Offload is how much of the read traffic the edges kept from the origin,
// from the edges' fill counters and the run's read requests (publishes
// and purges aside). Fills from traffic other than the run's count too, so
// on a shared cluster it is a bound, not a measure.
type Offload struct {
	Fills    float64 `json:"fills"`    // sum of geocdn_edge_fills_total deltas, every result
	Requests int64   `json:"requests"` // read requests the run sent
	// FillRatio is Fills ÷ Requests: the share of reads that went to the
	// origin. Offload is 1 − FillRatio, floored at 0.
	FillRatio float64 `json:"fill_ratio"`
	Offload   float64 `json:"offload"`
}

// EdgeReport is one edge's counters around the run. Keys are a series'
// name and labels as Prometheus prints them, e.g.
// geocdn_edge_fills_total{result="ok"}; only geocdn_* counters are kept.
type EdgeReport struct {
	ID     string             `json:"id"`
	Before map[string]float64 `json:"before"`
	After  map[string]float64 `json:"after"`
	Delta  map[string]float64 `json:"delta"`
	// Error says why the figures are missing or partial, e.g. an edge
	// that could not be scraped after the run (killed by an event).
	Error string `json:"error,omitempty"`
}

// ReportEvent is something that happened to the run, for the charts'
// markers.
type ReportEvent struct {
	T           float64 `json:"t"` // seconds from the run's start
	Description string  `json:"description"`
	Error       string  `json:"error,omitempty"` // why it failed, if it did
}

// ConvergenceResult is the end-of-run convergence check as reported: the
// runner's Convergence, flattened, with its verdict.
type ConvergenceResult struct {
	// OK is true when every edge converged and no acknowledged publish
	// is missing.
	OK bool `json:"ok"`
	*Convergence
}

// RunInfo is what the runner knows about a run that the samples do not
// tell: it goes into the Report beside the Recorder's figures.
type RunInfo struct {
	Scenario    string
	File        string // the scenario file
	Description string
	Seed        uint64 // the seed used, not 0
	// Target describes where requests went, e.g. "router
	// http://127.0.0.1:8080".
	Target string
	Start  time.Time
	// Duration is how long the run lasted; zero means the span of the
	// recorded samples' intended starts, rounded up to a second.
	Duration time.Duration
	// Interrupted is set when the run was stopped before its end.
	Interrupted bool
	Events      []EventRecord
	// EdgesBefore and EdgesAfter are each edge's counters (as
	// ScrapeCounters returns them) by edge id, read before and after the
	// run. An edge missing from either could not be scraped.
	EdgesBefore, EdgesAfter map[string]map[string]float64
	// Convergence is nil when the run did not check it.
	Convergence *Convergence
	// Regions are the client regions the run drew from, with their
	// weights; a region listed here gets a row even if it has no sample.
	Regions []RegionInfo
}

// RegionInfo is a client region as the run weighed it.
type RegionInfo struct {
	Name string
	// Weight is the region's share of the clients, in any unit: the
	// report shows each region's share of the total.
	Weight float64
}

// opOrder is the order ops appear in a report: reads by how common they
// are in a typical mix, then writes.
var opOrder = []Op{OpGet, OpHead, OpConditional, OpRange, OpPublishReq, OpPurgeReq}

// Report builds the run's report from what was recorded and info. It may
// be called more than once.
func (r *Recorder) Report(info RunInfo) *Report {
	rep := &Report{
		Schema:         ReportSchema,
		Scenario:       info.Scenario,
		File:           info.File,
		Description:    info.Description,
		Interrupted:    info.Interrupted,
		Seed:           info.Seed,
		Target:         info.Target,
		Start:          info.Start,
		Regions:        []Stats{},
		Ops:            []Stats{},
		CorruptSamples: []BadSample{},
		StaleSamples:   []BadSample{},
		Timeline:       []Window{},
		Edges:          []EdgeReport{},
		Events:         []ReportEvent{},
	}
	if info.Convergence != nil {
		rep.Convergence = &ConvergenceResult{OK: info.Convergence.OK(), Convergence: info.Convergence}
	}

	r.tlMu.Lock()
	windows := make([]window, len(r.windows))
	for i, w := range r.windows {
		if w != nil {
			windows[i] = *w
		}
	}
	r.tlMu.Unlock()

	dur := info.Duration
	if dur <= 0 {
		dur = time.Duration(len(windows)) * time.Second
	}
	durS := dur.Seconds()
	rep.DurationS = durS

	var overall group
	byOp := make(map[Op]*group)
	names, regions := r.sortedRegions()
	share := make(map[string]float64)
	var total float64
	for _, ri := range info.Regions {
		total += ri.Weight
	}
	for _, ri := range info.Regions {
		if total > 0 {
			share[ri.Name] = ri.Weight / total
		}
		if _, ok := regions[ri.Name]; !ok {
			names = append(names, ri.Name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		rs := regions[name]
		if rs == nil {
			st := new(group).stats(name, durS)
			st.Share = share[name]
			rep.Regions = append(rep.Regions, st)
			continue
		}
		rs.mu.Lock()
		st := rs.all.stats(name, durS)
		st.Share = share[name]
		rep.Regions = append(rep.Regions, st)
		overall.merge(&rs.all)
		for _, o := range rs.ops {
			g := byOp[o.op]
			if g == nil {
				g = new(group)
				byOp[o.op] = g
			}
			g.merge(&o.g)
		}
		rs.mu.Unlock()
	}
	rep.Overall = overall.stats("", durS)
	r.writes.mu.Lock()
	for _, o := range r.writes.ops {
		g := byOp[o.op]
		if g == nil {
			g = new(group)
			byOp[o.op] = g
		}
		g.merge(&o.g)
	}
	var all group
	all.merge(&overall)
	all.merge(&r.writes.all)
	r.writes.mu.Unlock()
	rep.Errors = all.errorCounts()

	ops := make([]Op, 0, len(byOp))
	for op := range byOp {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		oi, oj := slices.Index(opOrder, ops[i]), slices.Index(opOrder, ops[j])
		if oi < 0 {
			oi = len(opOrder)
		}
		if oj < 0 {
			oj = len(opOrder)
		}
		if oi != oj {
			return oi < oj
		}
		return ops[i] < ops[j]
	})
	var reads int64
	for _, op := range ops {
		rep.Ops = append(rep.Ops, byOp[op].stats(string(op), durS))
		if op != OpPublishReq && op != OpPurgeReq {
			reads += byOp[op].requests
		}
	}

	n := max(len(windows), int(math.Ceil(durS)))
	for i := range n {
		var w window
		if i < len(windows) {
			w = windows[i]
		}
		width := 1.0
		if rest := durS - float64(i); rest > 0 && rest < 1 {
			width = rest
		}
		rep.Timeline = append(rep.Timeline, Window{
			T:        float64(i),
			Requests: w.requests,
			Errors:   w.errors,
			Hits:     w.hits,
			Fills:    w.fills,
			Bytes:    w.bytes,
			Rate:     float64(w.requests) / width,
			HitRatio: hitRatio(w.hits, w.fills),
			P50:      ms(w.lat.quantile(0.50)),
			P99:      ms(w.lat.quantile(0.99)),
		})
	}

	r.badMu.Lock()
	rep.Corrupt, rep.Stale = r.nCorrupt, r.nStale
	for _, s := range r.corrupt {
		rep.CorruptSamples = append(rep.CorruptSamples, badSample(s))
	}
	for _, s := range r.stale {
		rep.StaleSamples = append(rep.StaleSamples, badSample(s))
	}
	r.badMu.Unlock()

	var fills float64
	ids := make([]string, 0, len(info.EdgesBefore))
	for id := range info.EdgesBefore {
		ids = append(ids, id)
	}
	for id := range info.EdgesAfter {
		if _, ok := info.EdgesBefore[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		before, okB := info.EdgesBefore[id]
		after, okA := info.EdgesAfter[id]
		er := EdgeReport{ID: id, Before: onlyGeoCDN(before), After: onlyGeoCDN(after), Delta: map[string]float64{}}
		switch {
		case !okB:
			er.Error = "not scraped before the run"
		case !okA:
			er.Error = "not scraped after the run"
		default:
			er.Delta = DiffCounters(er.Before, er.After)
		}
		fills += CounterSum(er.Delta, "geocdn_edge_fills_total")
		rep.Edges = append(rep.Edges, er)
	}
	if len(ids) > 0 {
		o := &Offload{Fills: fills, Requests: reads}
		if reads > 0 {
			o.FillRatio = fills / float64(reads)
			o.Offload = max(0, 1-o.FillRatio)
		}
		rep.OriginOffload = o
	}

	for _, e := range info.Events {
		rep.Events = append(rep.Events, ReportEvent{T: e.At.Seconds(), Description: e.Description, Error: e.Err})
	}
	sort.SliceStable(rep.Events, func(i, j int) bool { return rep.Events[i].T < rep.Events[j].T })
	return rep
}

func (g *group) stats(name string, durS float64) Stats {
	s := Stats{
		Name:     name,
		Requests: g.requests,
		Latency:  latency(g.lat),
		Modelled: latency(g.mod),
		Hits:     g.hits,
		Fills:    g.fill,
		HitRatio: hitRatio(g.hits, g.fill),
		Bytes:    g.bytes,
		Errors:   g.errorCounts(),
	}
	if durS > 0 {
		s.Rate = float64(g.requests) / durS
	}
	return s
}

func (g *group) errorCounts() ErrorCounts {
	e := ErrorCounts{Total: g.errors, ByClass: make(map[string]int64, len(g.byClass))}
	for c, n := range g.byClass {
		e.ByClass[string(c)] = n
	}
	return e
}

func latency(h *hdr.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	q := func(p float64) float64 { return float64(h.ValueAtQuantile(p)) / 1000 }
	return Latency{
		P50:  q(50),
		P90:  q(90),
		P99:  q(99),
		P999: q(99.9),
		Max:  float64(h.Max()) / 1000,
		Mean: h.Mean() / 1000,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func badSample(s Sample) BadSample {
	return BadSample{
		T:         s.Intended.Seconds(),
		Region:    s.Region,
		Edge:      s.Edge,
		Op:        string(s.Op),
		Key:       s.Key,
		Status:    s.Status,
		LatencyMs: ms(s.Latency),
		Detail:    s.Detail,
	}
}

// onlyGeoCDN keeps the project's own counters: the Go runtime's and the
// process's would triple the report for nothing a load test asks about.
func onlyGeoCDN(m map[string]float64) map[string]float64 {
	out := make(map[string]float64)
	for k, v := range m {
		if strings.HasPrefix(k, "geocdn_") {
			out[k] = v
		}
	}
	return out
}

// WriteJSON writes rep as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("loadtest: write report: %w", err)
	}
	return nil
}

// edgeColumns are the edge counters a report shows, each summed over its
// labels.
var edgeColumns = []struct{ title, name string }{
	{"hits", "geocdn_edge_hits_total"},
	{"misses", "geocdn_edge_misses_total"},
	{"fills", "geocdn_edge_fills_total"},
	{"fill bytes", "geocdn_edge_fill_bytes_total"},
	{"served bytes", "geocdn_edge_served_bytes_total"},
	{"purged", "geocdn_edge_purged_total"},
	{"pushes", "geocdn_edge_pushes_total"},
}

// WriteText writes rep as aligned tables for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "Load test %q", rep.Scenario)
	if rep.Target != "" {
		fmt.Fprintf(ew, " against %s", rep.Target)
	}
	fmt.Fprintf(ew, "\nseed %d, started %s, ran %s", rep.Seed,
		rep.Start.Format(time.RFC3339), fmtSeconds(rep.DurationS))
	if rep.Interrupted {
		fmt.Fprint(ew, " (INTERRUPTED)")
	}
	fmt.Fprintln(ew)

	for _, t := range rep.tables() {
		fmt.Fprintf(ew, "\n%s\n", t.Title)
		writeTable(ew, t)
	}

	fmt.Fprintf(ew, "\nErrors: %d", rep.Errors.Total)
	if c := fmtClasses(rep.Errors.ByClass); c != "-" {
		fmt.Fprintf(ew, " (%s)", c)
	}
	fmt.Fprintf(ew, "; corrupt answers: %d; stale answers: %d\n", rep.Corrupt, rep.Stale)
	for _, l := range []struct {
		name string
		list []BadSample
		n    int64
	}{{"corrupt", rep.CorruptSamples, rep.Corrupt}, {"stale", rep.StaleSamples, rep.Stale}} {
		const show = 10
		for i, s := range l.list {
			if i == show {
				fmt.Fprintf(ew, "  … %d more %s (see the JSON report)\n", l.n-show, l.name)
				break
			}
			fmt.Fprintf(ew, "  %s at %s: %s %s from %s via %s: %s\n", l.name, fmtSeconds(s.T), s.Op, s.Key, s.Region, s.Edge, s.Detail)
		}
	}

	if o := rep.OriginOffload; o != nil {
		fmt.Fprintf(ew, "\nOrigin offload: %.1f%% (%s fills for %d read requests)\n",
			100*o.Offload, fmtCount(o.Fills), o.Requests)
	}
	if len(rep.Events) > 0 {
		fmt.Fprintf(ew, "\nEvents:\n")
		for _, e := range rep.Events {
			fmt.Fprintf(ew, "  %8s  %s", fmtSeconds(e.T), e.Description)
			if e.Error != "" {
				fmt.Fprintf(ew, " (failed: %s)", e.Error)
			}
			fmt.Fprintln(ew)
		}
	}
	if c := rep.Convergence; c != nil && c.Convergence != nil {
		verdict := "every edge converged, nothing acknowledged is missing"
		if !c.OK {
			verdict = "FAILED"
		}
		fmt.Fprintf(ew, "\nConvergence: %s (%d edges converged, %d lagging, %d skipped; %d reads checked, %d missing)\n",
			verdict, len(c.Converged), len(c.Lagging), len(c.Skipped), c.Checked, c.MissingCount)
		for _, id := range slices.Sorted(maps.Keys(c.Lagging)) {
			fmt.Fprintf(ew, "  edge %s lagging: %s\n", id, c.Lagging[id])
		}
		for i, k := range c.Missing {
			if i == 10 {
				fmt.Fprintf(ew, "  … %d more\n", c.MissingCount-10)
				break
			}
			fmt.Fprintf(ew, "  missing: %s\n", k)
		}
	}
	return ew.err
}

// table is one of the report's tables, shared by the text and HTML forms.
type table struct {
	Title string
	// ID names the table for the HTML form.
	ID   string
	Head []string
	Rows [][]string
}

var statsHead = []string{"requests", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
	"modelled p50", "modelled p99", "hit ratio", "bytes", "errors"}

func statsRow(name string, s Stats) []string {
	hit := "-" // no answer had a cache status: a ratio of 0 would mislead
	if s.Hits+s.Fills > 0 {
		hit = fmt.Sprintf("%.1f%%", 100*s.HitRatio)
	}
	return []string{name, fmtCount(float64(s.Requests)), fmt.Sprintf("%.1f", s.Rate),
		fmtMs(s.P50), fmtMs(s.P90), fmtMs(s.P99), fmtMs(s.P999), fmtMs(s.Max),
		fmtMs(s.Modelled.P50), fmtMs(s.Modelled.P99),
		hit, humanize.IBytes(uint64(max(s.Bytes, 0))),
		fmtClasses(s.Errors.ByClass)}
}

// tables returns the region, op and edge tables.
func (rep *Report) tables() []table {
	// Regions have a share column: how the scenario weighed them, to
	// compare with how many requests each got.
	regions := table{Title: "By client region", ID: "regions", Head: append([]string{"region", "share"}, statsHead...)}
	for _, s := range rep.Regions {
		share := "-"
		if s.Share > 0 {
			share = fmt.Sprintf("%.1f%%", 100*s.Share)
		}
		regions.Rows = append(regions.Rows, slices.Insert(statsRow(s.Name, s), 1, share))
	}
	regions.Rows = append(regions.Rows, slices.Insert(statsRow("overall", rep.Overall), 1, "-"))

	ops := table{Title: "By operation", ID: "ops", Head: append([]string{"op"}, statsHead...)}
	for _, s := range rep.Ops {
		ops.Rows = append(ops.Rows, statsRow(s.Name, s))
	}
	out := []table{regions, ops}

	if len(rep.Edges) > 0 {
		edges := table{Title: "Edge counters (change over the run)", ID: "edges", Head: []string{"edge"}}
		for _, c := range edgeColumns {
			edges.Head = append(edges.Head, c.title)
		}
		for _, e := range rep.Edges {
			row := []string{e.ID}
			for _, c := range edgeColumns {
				v := CounterSum(e.Delta, c.name)
				if strings.HasSuffix(c.name, "_bytes_total") {
					row = append(row, humanize.IBytes(uint64(max(v, 0))))
				} else {
					row = append(row, fmtCount(v))
				}
			}
			if e.Error != "" {
				row[0] += " (scrape failed: " + e.Error + ")"
			}
			edges.Rows = append(edges.Rows, row)
		}
		out = append(out, edges)
	}
	return out
}

// writeTable prints t with its figures right-aligned. The first column
// (names) is padded to one width so that it reads left-aligned, and an
// errors column, last, is left after the final tab, unaligned, since its
// text varies in length.
func writeTable(w io.Writer, t table) {
	lastText := t.Head[len(t.Head)-1] == "errors"
	width := 0
	for _, row := range append([][]string{t.Head}, t.Rows...) {
		width = max(width, utf8.RuneCountInString(row[0]))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, row := range append([][]string{t.Head}, t.Rows...) {
		cells := slices.Clone(row)
		cells[0] += strings.Repeat(" ", width-utf8.RuneCountInString(cells[0]))
		line := strings.Join(cells, "\t") + "\t"
		if lastText {
			// AlignRight pads on the left, so the unaligned cell needs
			// its own gap.
			line = strings.Join(cells[:len(cells)-1], "\t") + "\t  " + cells[len(cells)-1]
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

// fmtMs prints a latency in milliseconds with about three significant
// digits, so sub-millisecond loopback figures are not printed as 0.
func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtSeconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func fmtCount(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return humanize.Comma(int64(v))
	}
	return humanize.CommafWithDigits(v, 2)
}

// fmtClasses prints error counts as "5xx=3 timeout=2", classes sorted.
func fmtClasses(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// errWriter keeps the first write error so the printing code can ignore
// them and report it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = fmt.Errorf("loadtest: write report: %w", err)
	}
	return n, err
}
