package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxMetricsBytes bounds a scraped /metrics body; an edge's is a few tens
// of KiB.
const maxMetricsBytes = 16 << 20

// ScrapeCounters fetches the Prometheus exposition at url (an edge's
// /metrics) and returns its counters as ParseCounters does. client nil
// means http.DefaultClient.
func ScrapeCounters(ctx context.Context, client *http.Client, url string) (map[string]float64, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("loadtest: scrape %s: %w", url, err)
	}
	// Ask for the classic text format: every exporter speaks it, and
	// OpenMetrics would add _created series.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadtest: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loadtest: scrape %s: status %s", url, resp.Status)
	}
	body := io.LimitReader(resp.Body, maxMetricsBytes)
	format := expfmt.ResponseFormat(resp.Header)
	if format.FormatType() == expfmt.TypeProtoDelim {
		dec := expfmt.NewDecoder(body, format)
		fams := make(map[string]*dto.MetricFamily)
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, fmt.Errorf("loadtest: scrape %s: %w", url, err)
			}
			fams[mf.GetName()] = &mf
		}
		return counters(fams), nil
	}
	m, err := ParseCounters(body)
	if err != nil {
		return nil, fmt.Errorf("loadtest: scrape %s: %w", url, err)
	}
	return m, nil
}

// ParseCounters reads Prometheus text exposition and returns the value of
// every counter series, keyed by name and labels as Prometheus prints
// them: `geocdn_edge_hits_total`, `geocdn_edge_fills_total{result="ok"}`
// (labels sorted by name). Gauges, histograms and summaries are left out:
// only a counter's difference over a run means something.
func ParseCounters(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("loadtest: parse metrics: %w", err)
	}
	return counters(fams), nil
}

func counters(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for name, mf := range fams {
		if mf.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[seriesKey(name, m.GetLabel())] = m.GetCounter().GetValue()
		}
	}
	return out
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	ls := make([]*dto.LabelPair, len(labels))
	copy(ls, labels)
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetName() < ls[j].GetName() })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.GetValue()))
	}
	b.WriteByte('}')
	return b.String()
}

// DiffCounters returns after − before for every series in after. A series
// missing from before counts from zero. A series that went down was
// reset (the edge restarted), so its delta is its value after, the count
// since the restart: like Prometheus' increase(), it is then a lower
// bound.
func DiffCounters(before, after map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(after))
	for k, a := range after {
		b := before[k]
		if a < b {
			out[k] = a
		} else {
			out[k] = a - b
		}
	}
	return out
}

// CounterSum adds up every series of the counter name in m, whatever its
// labels: CounterSum(m, "geocdn_edge_fills_total") counts fills of every
// result.
func CounterSum(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || (strings.HasPrefix(k, name) && k[len(name)] == '{') {
			sum += v
		}
	}
	return sum
}
