package loadtest

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
)

// The HTML report is one file with nothing to fetch: its charts are SVG
// drawn here, its style is inline, and its Content-Security-Policy forbids
// every load, so it can be mailed, archived or opened offline and still
// look the same, and cannot leak that it was opened.
//
//go:embed assets/report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"n": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
}).Parse(reportHTML))

// Chart geometry, in SVG user units; the SVG scales to its container.
const (
	chartW      = 600
	chartH      = 300
	plotLeft    = 52
	plotRight   = 16
	plotTop     = 34
	plotBottom  = 44
	maxHoverCol = 600 // hover columns per time chart, so long runs stay small
	maxDots     = 120 // points drawn as dots up to this many per line
	markerRows  = 4   // rows of event labels at the top of a time chart
	markerCharW = 6.2 // estimated width of a character of a label
)

// WriteHTML writes rep as one self-contained HTML page: headline figures,
// charts of latency, request rate and hit ratio over time (with the run's
// events marked) and of latency by region, then the text report's tables.
func WriteHTML(w io.Writer, rep *Report) error {
	if err := reportTmpl.Execute(w, newHTMLPage(rep)); err != nil {
		return fmt.Errorf("loadtest: write HTML report: %w", err)
	}
	return nil
}

// htmlPage is what the template shows, everything formatted.
type htmlPage struct {
	R       *Report
	Title   string
	Start   string
	Dur     string
	Cards   []card
	Charts  []*chart
	Tables  []table
	Errors  string
	Bad     []badList
	Events  []eventRow
	Conv    []convRow
	Offload string
}

type card struct {
	Label, Value, Note string
	Bad                bool // draws the card in the alarm colour
}

type badList struct {
	Title   string
	Count   int64
	Samples []BadSample
}

type eventRow struct{ T, Description, Error string }

type convRow struct {
	ID, State, Detail string
	Bad               bool
}

func newHTMLPage(rep *Report) *htmlPage {
	p := &htmlPage{
		R:      rep,
		Title:  "Load test " + rep.Scenario,
		Start:  rep.Start.Format(time.RFC1123),
		Dur:    fmtSeconds(rep.DurationS),
		Tables: rep.tables(),
		Errors: fmtClasses(rep.Errors.ByClass),
	}
	if rep.Start.IsZero() {
		p.Start = "-"
	}
	o := rep.Overall
	p.Cards = []card{
		{Label: "Requests", Value: fmtCount(float64(o.Requests)), Note: fmt.Sprintf("%.1f/s", o.Rate)},
		{Label: "p50 latency", Value: fmtMs(o.P50) + " ms", Note: "modelled " + fmtMs(o.Modelled.P50) + " ms"},
		{Label: "p99 latency", Value: fmtMs(o.P99) + " ms", Note: "modelled " + fmtMs(o.Modelled.P99) + " ms"},
		{Label: "Hit ratio", Value: fmt.Sprintf("%.1f%%", 100*o.HitRatio), Note: humanize.IBytes(uint64(max(o.Bytes, 0))) + " received"},
		{Label: "Errors", Value: fmtCount(float64(rep.Errors.Total)), Note: p.Errors, Bad: rep.Errors.Total > 0},
		{Label: "Corrupt / stale", Value: fmt.Sprintf("%d / %d", rep.Corrupt, rep.Stale), Bad: rep.Corrupt+rep.Stale > 0},
	}
	if off := rep.OriginOffload; off != nil {
		p.Offload = fmt.Sprintf("%.1f%%", 100*off.Offload)
		p.Cards = append(p.Cards, card{Label: "Origin offload", Value: p.Offload,
			Note: fmt.Sprintf("%s fills / %s reads", fmtCount(off.Fills), fmtCount(float64(off.Requests)))})
	}
	if c := rep.Convergence; c != nil && c.Convergence != nil {
		v, note := "yes", fmt.Sprintf("%d edges, %d reads checked", len(c.Converged), c.Checked)
		if !c.OK {
			v = "NO"
			note = fmt.Sprintf("%d lagging, %d acknowledged missing", len(c.Lagging), c.MissingCount)
		}
		p.Cards = append(p.Cards, card{Label: "Converged", Value: v, Note: note, Bad: !c.OK})
		for _, id := range c.Converged {
			p.Conv = append(p.Conv, convRow{ID: id, State: "converged"})
		}
		for _, id := range slices.Sorted(maps.Keys(c.Lagging)) {
			p.Conv = append(p.Conv, convRow{ID: id, State: "LAGGING", Detail: c.Lagging[id], Bad: true})
		}
		for _, id := range c.Skipped {
			p.Conv = append(p.Conv, convRow{ID: id, State: "skipped", Detail: "left down by a fault event"})
		}
	}
	for _, b := range []badList{
		{"Corrupt answers", rep.Corrupt, rep.CorruptSamples},
		{"Stale answers", rep.Stale, rep.StaleSamples},
	} {
		if b.Count > 0 {
			if len(b.Samples) > 50 {
				b.Samples = b.Samples[:50]
			}
			p.Bad = append(p.Bad, b)
		}
	}
	for _, e := range rep.Events {
		p.Events = append(p.Events, eventRow{T: fmtSeconds(e.T), Description: e.Description, Error: e.Error})
	}
	p.Charts = []*chart{
		latencyChart(rep),
		regionChart(rep),
		hitRatioChart(rep),
		rateChart(rep),
	}
	return p
}

// chart is one SVG chart, laid out in user units.
type chart struct {
	ID, Title, Note string
	W, H            float64
	PX, PY, PW, PH  float64 // the plot area
	XTicks, YTicks  []tick
	XLabel, YLabel  string
	Legend          []legendItem
	Lines           []line
	Bars            []bar
	Markers         []marker
	Hover           []hover
	// Empty, when set, is shown instead of the data.
	Empty string
	// RotateX slants the x tick labels, so many categories (a region
	// each) stay readable; the chart grows below the plot to hold them.
	RotateX bool
}

type tick struct {
	P     float64 // position on its axis
	Label string
}

type legendItem struct{ Class, Name string }

type line struct {
	Class, Name string
	D           string // SVG path data; a gap in the data is a gap in the line
	Dots        []point
}

type point struct{ X, Y float64 }

type bar struct {
	X, Y, W, H   float64
	Class, Title string
}

type marker struct {
	X, LabelX, LabelY float64
	Label             string
	// Anchor is the label's text-anchor: labels near the right edge end
	// at their line instead of starting there.
	Anchor string
}

type hover struct {
	X, W  float64
	Title string
}

// Right and Bottom are the plot area's far edges, CX and CY its centre,
// TickEnd where the x axis' tick marks end.
func (c *chart) Right() float64   { return c.PX + c.PW }
func (c *chart) Bottom() float64  { return c.PY + c.PH }
func (c *chart) CX() float64      { return c.PX + c.PW/2 }
func (c *chart) CY() float64      { return c.PY + c.PH/2 }
func (c *chart) TickEnd() float64 { return c.Bottom() + 5 }

func newChart(id, title string) *chart {
	return &chart{
		ID: id, Title: title, W: chartW, H: chartH,
		PX: plotLeft, PY: plotTop,
		PW: chartW - plotLeft - plotRight,
		PH: chartH - plotTop - plotBottom,
	}
}

// timeAxis sets up a time chart's x axis, event markers and hover columns
// and returns the mapping from seconds to x.
func (c *chart) timeAxis(rep *Report, tip func(first, last int) string) func(float64) float64 {
	span := rep.DurationS
	if n := float64(len(rep.Timeline)); n > span {
		span = n
	}
	if span <= 0 {
		span = 1
	}
	x := func(t float64) float64 { return c.PX + t/span*c.PW }
	step := niceStep(span, 8, []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600})
	for k := 0.0; k*step <= span+1e-9; k++ {
		c.XTicks = append(c.XTicks, tick{P: x(k * step), Label: fmtTick(k * step)})
	}
	c.XLabel = "time since start"

	// Each label goes on the first of a few rows where it overlaps no
	// label already placed, judged by an estimate of its width.
	var rows [markerRows][][2]float64
	for i, e := range rep.Events {
		if e.T < 0 || e.T > span {
			continue
		}
		m := marker{X: x(e.T), Label: e.Description, Anchor: "start"}
		w := float64(utf8.RuneCountInString(e.Description))*markerCharW + 4
		lo, hi := m.X+4, m.X+4+w
		m.LabelX = lo
		if hi > c.Right() {
			m.Anchor, m.LabelX = "end", m.X-4
			lo, hi = m.X-4-w, m.X-4
		}
		row := i % markerRows
		for r := range rows {
			if !slices.ContainsFunc(rows[r], func(iv [2]float64) bool { return lo < iv[1] && iv[0] < hi }) {
				row = r
				break
			}
		}
		rows[row] = append(rows[row], [2]float64{lo, hi})
		m.LabelY = c.PY + 11 + float64(row)*13
		c.Markers = append(c.Markers, m)
	}

	per := (len(rep.Timeline) + maxHoverCol - 1) / maxHoverCol
	for i := 0; i < len(rep.Timeline); i += max(per, 1) {
		last := min(i+per, len(rep.Timeline)) - 1
		t0, t1 := rep.Timeline[i].T, rep.Timeline[last].T+1
		c.Hover = append(c.Hover, hover{X: x(t0), W: x(min(t1, span)) - x(t0),
			Title: fmt.Sprintf("%s–%s: %s", fmtTick(t0), fmtTick(min(t1, span)), tip(i, last))})
	}
	return x
}

// yAxis sets a linear y axis from 0 to at least top and returns the
// mapping from values to y.
func (c *chart) yAxis(top float64, label string, format func(float64) string) func(float64) float64 {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		top = 1
	}
	step := niceStep(top, 5, nil)
	top = math.Ceil(top/step-1e-9) * step
	y := func(v float64) float64 { return c.PY + c.PH - v/top*c.PH }
	for k := 0.0; k*step <= top+step/2; k++ {
		c.YTicks = append(c.YTicks, tick{P: y(k * step), Label: format(k * step)})
	}
	c.YLabel = label
	return y
}

// windowMid is the middle of timeline window i, where its point is drawn.
func windowMid(rep *Report, i int) float64 {
	w := 1.0
	if rest := rep.DurationS - rep.Timeline[i].T; rest > 0 && rest < 1 {
		w = rest
	}
	return rep.Timeline[i].T + w/2
}

// addLine adds a line through the windows for which value reports ok.
func (c *chart) addLine(rep *Report, class, name string, x, y func(float64) float64, value func(Window) (float64, bool)) {
	var d strings.Builder
	var dots []point
	pen := false
	for i, w := range rep.Timeline {
		v, ok := value(w)
		if !ok {
			pen = false
			continue
		}
		px, py := x(windowMid(rep, i)), y(v)
		cmd := 'L'
		if !pen {
			cmd = 'M'
		}
		fmt.Fprintf(&d, "%c%.1f %.1f", cmd, px, py)
		pen = true
		dots = append(dots, point{px, py})
	}
	if len(dots) > maxDots {
		dots = nil
	}
	c.Lines = append(c.Lines, line{Class: class, Name: name, D: d.String(), Dots: dots})
	c.Legend = append(c.Legend, legendItem{Class: class, Name: name})
}

func latencyChart(rep *Report) *chart {
	c := newChart("latency-over-time", "Latency over time")
	c.Note = "measured on loopback, per second of intended start"
	var top float64
	for _, w := range rep.Timeline {
		top = max(top, w.P99)
	}
	x := c.timeAxis(rep, func(i, j int) string {
		var p50, p99 float64
		var n int64
		for _, w := range rep.Timeline[i : j+1] {
			p50, p99, n = max(p50, w.P50), max(p99, w.P99), n+w.Requests
		}
		return fmt.Sprintf("p50 %s ms, p99 %s ms (%s requests)", fmtMs(p50), fmtMs(p99), fmtCount(float64(n)))
	})
	y := c.yAxis(top, "ms", fmtAxis)
	c.addLine(rep, "s-p50", "p50", x, y, func(w Window) (float64, bool) { return w.P50, w.P99 > 0 })
	c.addLine(rep, "s-p99", "p99", x, y, func(w Window) (float64, bool) { return w.P99, w.P99 > 0 })
	if top == 0 {
		c.Empty = "no latency recorded"
	}
	return c
}

func rateChart(rep *Report) *chart {
	c := newChart("rate-over-time", "Request rate over time")
	c.Note = "requests and errors per second"
	var top float64
	for _, w := range rep.Timeline {
		top = max(top, w.Rate)
	}
	x := c.timeAxis(rep, func(i, j int) string {
		var n, e int64
		for _, w := range rep.Timeline[i : j+1] {
			n, e = n+w.Requests, e+w.Errors
		}
		return fmt.Sprintf("%s requests, %s errors", fmtCount(float64(n)), fmtCount(float64(e)))
	})
	y := c.yAxis(top, "req/s", fmtAxis)
	c.addLine(rep, "s-rate", "requests/s", x, y, func(w Window) (float64, bool) { return w.Rate, true })
	c.addLine(rep, "s-err", "errors/s", x, y, func(w Window) (float64, bool) {
		if w.Requests == 0 {
			return 0, true
		}
		return w.Rate * float64(w.Errors) / float64(w.Requests), true
	})
	if len(rep.Timeline) == 0 {
		c.Empty = "no requests recorded"
	}
	return c
}

func hitRatioChart(rep *Report) *chart {
	c := newChart("hit-ratio-over-time", "Hit ratio over time")
	c.Note = "hits ÷ (hits + fills), per second"
	x := c.timeAxis(rep, func(i, j int) string {
		var h, f int64
		for _, w := range rep.Timeline[i : j+1] {
			h, f = h+w.Hits, f+w.Fills
		}
		return fmt.Sprintf("hit ratio %.1f%% (%s hits, %s fills)", 100*hitRatio(h, f), fmtCount(float64(h)), fmtCount(float64(f)))
	})
	y := c.yAxis(100, "%", func(v float64) string { return fmtAxis(v) + "%" })
	seen := false
	c.addLine(rep, "s-hit", "hit ratio", x, y, func(w Window) (float64, bool) {
		ok := w.Hits+w.Fills > 0
		seen = seen || ok
		return 100 * w.HitRatio, ok
	})
	if !seen {
		c.Empty = "no answer carried a cache status"
	}
	return c
}

func regionChart(rep *Report) *chart {
	c := newChart("region-latency", "Latency by client region")
	c.Note = "measured on loopback vs modelled for a user in the region"
	c.XLabel = "client region"
	var top float64
	for _, r := range rep.Regions {
		top = max(top, r.P99, r.Modelled.P99)
	}
	y := c.yAxis(top, "ms", fmtAxis)
	kinds := []struct {
		class, name string
		v           func(Stats) float64
	}{
		{"s-p50", "p50 measured", func(s Stats) float64 { return s.P50 }},
		{"s-p99", "p99 measured", func(s Stats) float64 { return s.P99 }},
		{"s-mp50", "p50 modelled", func(s Stats) float64 { return s.Modelled.P50 }},
		{"s-mp99", "p99 modelled", func(s Stats) float64 { return s.Modelled.P99 }},
	}
	for _, k := range kinds {
		c.Legend = append(c.Legend, legendItem{Class: k.class, Name: k.name})
	}
	n := len(rep.Regions)
	if n > 8 {
		c.RotateX = true
		c.H += 70
	}
	if n == 0 || top == 0 {
		c.Empty = "no latency recorded"
		return c
	}
	group := c.PW / float64(n)
	bw := min(group*0.8/float64(len(kinds)), 28)
	for i, r := range rep.Regions {
		left := c.PX + float64(i)*group + (group-bw*float64(len(kinds)))/2
		for j, k := range kinds {
			v := k.v(r)
			c.Bars = append(c.Bars, bar{
				X: left + float64(j)*bw, Y: y(v), W: bw - 1, H: c.PY + c.PH - y(v),
				Class: k.class, Title: fmt.Sprintf("%s %s: %s ms", r.Name, k.name, fmtMs(v)),
			})
		}
		c.XTicks = append(c.XTicks, tick{P: c.PX + (float64(i)+0.5)*group, Label: r.Name})
	}
	return c
}

// niceStep returns a step that divides span into about n intervals: one
// of steps if given (the first that is big enough), else 1, 2 or 5 times
// a power of ten.
func niceStep(span float64, n int, steps []float64) float64 {
	raw := span / float64(n)
	for _, s := range steps {
		if s >= raw {
			return s
		}
	}
	if len(steps) > 0 && raw > steps[len(steps)-1] {
		last := steps[len(steps)-1]
		return math.Ceil(raw/last) * last
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// fmtTick prints seconds for a time axis: 4.5s, 45s, 2m, 2m30s, 1h5m.
func fmtTick(t float64) string {
	if t < 60 {
		return strconv.FormatFloat(math.Round(t*10)/10, 'f', -1, 64) + "s"
	}
	sec := int64(math.Round(t))
	h, m, s := sec/3600, sec/60%60, sec%60
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 && h == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}

// fmtAxis prints an axis value short and without float noise: 0.3, 25,
// 1.5k, 2M.
func fmtAxis(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}
