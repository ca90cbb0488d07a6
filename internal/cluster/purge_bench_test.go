package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/simwan"
	"github.com/geocdn/geocdn/origin"
)

// BenchmarkPurgeWAN measures purges on a simulated WAN in real time: an
// origin in Washington DC and two edges in each of the latency matrix's
// regions, so the farthest edge (Sydney) is a measured 214 ms round trip
// away. It is not run under synctest on purpose: simwan's delays are
// time.AfterFunc, so outside a bubble they are real delays and the numbers
// include every real cost (QUIC, TLS, bbolt, scheduling) on top of the
// simulated propagation.
//
// One iteration does the whole measurement; run it as
//
//	go test -run '^$' -bench '^BenchmarkPurgeWAN$' -benchtime 1x ./internal/cluster
//
// It prints markdown tables on stdout (lines starting with "**" or "|")
// for bench/run.sh; see bench/README.md for what each column means.
func BenchmarkPurgeWAN(b *testing.B) {
	const (
		originRegion = "Washington DC"
		edgesPerReg  = 2
		lease        = 2 * time.Second
		// latencyPurges wait=true purges are timed one after another, up
		// to latencyCap in all: enough for a p99 that is not the max.
		latencyPurges = 100
		latencyCap    = 90 * time.Second
		// floodPurges wait=false purges from floodClients clients, up to
		// floodCap until every edge has applied the last one.
		floodPurges  = 2000
		floodClients = 8
		floodCap     = 120 * time.Second
		// publishes w=all, consistency=bounded(5s), one after another.
		publishes  = 20
		publishCap = 60 * time.Second
		// The target: p99 of a purge within the farthest RTT plus slack.
		slack = 25 * time.Millisecond
	)
	m := simwan.DefaultMatrix()
	var specs []WANEdge
	for _, r := range m.Regions() {
		slug := strings.ToLower(strings.ReplaceAll(r.Name, " ", "-"))
		for i := range edgesPerReg {
			specs = append(specs, WANEdge{ID: fmt.Sprintf("%s-%d", slug, i+1), Region: r.Name})
		}
	}
	// A purge is one trip out (log entry) and one back (ack); the matrix is
	// not quite symmetric, so take each direction's half of its own RTT.
	var farthest time.Duration
	var farthestRegion string
	for _, e := range specs {
		out, _ := m.OneWay(originRegion, e.Region)
		back, _ := m.OneWay(e.Region, originRegion)
		if out+back > farthest {
			farthest, farthestRegion = out+back, e.Region
		}
	}
	target := farthest + slack

	for range b.N {
		w, err := StartWAN(WANConfig{
			Dir: b.TempDir(), OriginRegion: originRegion, Edges: specs, Matrix: m,
			LeaseTerm: lease, PublishTimeout: 30 * time.Second,
			// Twenty edges log every reconnect and lease change; the
			// benchmark reports outcomes, and any failure is counted.
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		// The benchmark's own client: the cluster's transport keeps two idle
		// connections per host, which the concurrent phases would churn.
		tr := w.Client.Transport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = floodClients
		pc := &purgeClient{w: w, c: &http.Client{Transport: tr}}
		// Everything the iteration started is stopped, whatever happens.
		func() {
			defer func() {
				tr.CloseIdleConnections()
				if err := w.Close(); err != nil {
					b.Errorf("close: %v", err)
				}
			}()
			b.StopTimer()
			wanBenchWait(b, w, "every edge healthy", 60*time.Second, func() bool { return wanAllHealthy(w) })
			pubStart := time.Now()
			if err := pc.publishAll(purgeBenchObjects, floodClients); err != nil {
				b.Fatal(err)
			}
			b.Logf("published %d objects w=all to %d edges in %v", purgeBenchObjects, len(specs), time.Since(pubStart).Round(time.Millisecond))
			// One unrecorded purge of a key nobody published: it opens the
			// HTTP connection and, if the setup was quick, waits out the
			// origin's lease-term rule after its start, neither of which is
			// a purge's steady cost.
			if _, _, err := pc.purge(context.Background(), "warm-up", true); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()

			lat := measurePurgeLatency(b, pc, len(specs), latencyPurges, latencyCap)
			wanBenchWait(b, w, "every edge healthy after the latency phase", 60*time.Second, func() bool { return wanAllHealthy(w) })
			fl := measurePurgeFlood(b, pc, floodPurges, floodClients, floodCap)
			wanBenchWait(b, w, "every edge healthy after the flood", 60*time.Second, func() bool { return wanAllHealthy(w) })
			pub := measureBoundedPublish(b, pc, len(specs), publishes, publishCap)
			// A strong publish returns when the version is visible at
			// every edge: the publish-to-visible-everywhere latency.
			strong := measurePublish(b, pc, len(specs), publishes, publishCap, "strong", "w=all&consistency=strong")
			b.StopTimer()

			p50, p99, mx := durationPercentiles(lat.took)
			cp50, cp99, cmx := durationPercentiles(lat.wall)
			b.ReportMetric(millis(p50), "p50-ms")
			b.ReportMetric(millis(p99), "p99-ms")
			b.ReportMetric(millis(mx), "max-ms")
			b.ReportMetric(millis(cp99), "client-p99-ms")
			b.ReportMetric(millis(farthest), "farthest-rtt-ms")
			b.ReportMetric(fl.perSec(), "purges/s")
			pp50, pp99, pmx := durationPercentiles(pub.wall)
			if len(pub.wall) > 0 {
				b.ReportMetric(millis(pp50), "publish-p50-ms")
			}
			if len(lat.took) < 50 {
				b.Errorf("only %d purges measured within %v; want at least 50", len(lat.took), latencyCap)
			}

			var t strings.Builder
			fmt.Fprintf(&t, "**Purge latency: origin in %s, %d edges (%d in each of %d regions), lease %v, farthest edge %s (RTT %.0f ms); target p99 ≤ %.0f ms**\n",
				originRegion, len(specs), edgesPerReg, len(specs)/edgesPerReg, lease, farthestRegion, millis(farthest), millis(target))
			fmt.Fprintln(&t, "| measurement | samples | failed | p50 ms | p99 ms | max ms | farthest RTT ms | p99 target ms | p99 within target |")
			fmt.Fprintln(&t, "|---|---|---|---|---|---|---|---|---|")
			row := func(name string, n, failed int, p50, p99, mx time.Duration, judged bool) {
				verdict, tgt, rtt := "—", "—", "—"
				if judged {
					verdict, tgt, rtt = "no", fmt.Sprintf("%.0f", millis(target)), fmt.Sprintf("%.0f", millis(farthest))
					if p99 <= target {
						verdict = "yes"
					}
				}
				fmt.Fprintf(&t, "| %s | %d | %d | %.1f | %.1f | %.1f | %s | %s | %s |\n", name, n, failed, millis(p50), millis(p99), millis(mx), rtt, tgt, verdict)
			}
			row("purge wait=true, origin's took_ms (whole ms)", len(lat.took), lat.failed, p50, p99, mx, true)
			row("purge wait=true, client wall time", len(lat.wall), lat.failed, cp50, cp99, cmx, true)
			row("publish 1 KiB w=all consistency=bounded(5s), client wall time to 201", len(pub.wall), pub.failed, pp50, pp99, pmx, false)
			sp50, sp99, spmx := durationPercentiles(strong.wall)
			row("publish 1 KiB w=all consistency=strong (visible at every edge), client wall time to 201", len(strong.wall), strong.failed, sp50, sp99, spmx, false)
			fmt.Fprintln(&t)
			fmt.Fprintf(&t, "**Invalidation throughput: %d purges wait=false from %d concurrent clients, until every one of %d edges applied the last**\n",
				fl.sent, floodClients, len(specs))
			fmt.Fprintln(&t, "| purges | clients | failed | all answered ms | every edge applied ms | origin saw every ack ms | purges/s (applied everywhere) |")
			fmt.Fprintln(&t, "|---|---|---|---|---|---|---|")
			fmt.Fprintf(&t, "| %d | %d | %d | %.0f | %s | %s | %.0f |\n", fl.sent, floodClients, fl.failed,
				millis(fl.answered), millisOrTimeout(fl.applied), millisOrTimeout(fl.acked), fl.perSec())
			// Stdout, not b.Log: the testing package trims a benchmark's log
			// to ten lines.
			fmt.Print(t.String())
		}()
	}
}

// purgeLatencyResult holds the timed wait=true purges.
type purgeLatencyResult struct {
	took, wall []time.Duration
	failed     int
}

// measurePurgeLatency purges one key at a time with wait=true, n times or
// until limit passes, and keeps both the origin's took_ms and the client's
// wall time of each purge that every edge acknowledged.
func measurePurgeLatency(b *testing.B, pc *purgeClient, edges, n int, limit time.Duration) purgeLatencyResult {
	var r purgeLatencyResult
	end := time.Now().Add(limit)
	for i := 0; i < n && time.Now().Before(end); i++ {
		start := time.Now()
		res, status, err := pc.purge(context.Background(), purgeBenchKey(i), true)
		wall := time.Since(start)
		// Only a purge every edge acknowledged is a sample: an expired
		// lease answers sooner but is not what is being measured.
		if err != nil || status != http.StatusOK || len(res.Acked) != edges || len(res.Expired) != 0 {
			r.failed++
			b.Logf("purge %d: status %d acked %d/%d expired %v: %v", i, status, len(res.Acked), edges, res.Expired, err)
			continue
		}
		r.took = append(r.took, time.Duration(res.TookMS)*time.Millisecond)
		r.wall = append(r.wall, wall)
	}
	return r
}

// purgeFloodResult is the wait=false phase. applied and acked are zero when
// the cap passed first.
type purgeFloodResult struct {
	sent, failed             int
	answered, applied, acked time.Duration
	lastLSN                  uint64
}

// perSec is the purges applied by every edge per second, from the first
// request to the moment the slowest edge reached the last one.
func (f purgeFloodResult) perSec() float64 {
	if f.applied <= 0 {
		return 0
	}
	return float64(f.sent-f.failed) / f.applied.Seconds()
}

// measurePurgeFlood fires n purges with wait=false from clients goroutines and
// then polls, every millisecond, both the edges' own watermarks and the
// origin's view of them until each reaches the highest LSN answered.
func measurePurgeFlood(b *testing.B, pc *purgeClient, n, clients int, limit time.Duration) purgeFloodResult {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var r purgeFloodResult
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				res, status, err := pc.purge(ctx, purgeBenchKey(i), false)
				mu.Lock()
				r.sent++
				if err != nil || status != http.StatusOK {
					r.failed++
				} else {
					r.lastLSN = max(r.lastLSN, res.LSN)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.answered = time.Since(start)
	if r.failed > 0 {
		b.Errorf("flood: %d of %d purges failed", r.failed, r.sent)
	}
	for ctx.Err() == nil && (r.applied == 0 || r.acked == 0) {
		if r.applied == 0 && wanEdgesApplied(pc.w, r.lastLSN) {
			r.applied = time.Since(start)
		}
		if r.acked == 0 && wanOriginSawAcks(pc.w, r.lastLSN) {
			r.acked = time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	if r.applied == 0 || r.acked == 0 {
		b.Errorf("flood: not every edge reached LSN %d within %v", r.lastLSN, limit)
	}
	return r
}

// boundedPublishResult is the w=all publish phase.
type boundedPublishResult struct {
	wall   []time.Duration
	failed int
}

// measureBoundedPublish publishes n fresh 1 KiB objects one after another with
// w=all and consistency=bounded(5s) and times each PUT until its 201: the
// object is stored on every edge by then, which is what the number means.
func measureBoundedPublish(b *testing.B, pc *purgeClient, edges, n int, limit time.Duration) boundedPublishResult {
	return measurePublish(b, pc, edges, n, limit, "bounded", "w=all&consistency=bounded(5s)")
}

// measurePublish publishes n fresh 1 KiB objects one after another with
// query and times each PUT until its 201.
func measurePublish(b *testing.B, pc *purgeClient, edges, n int, limit time.Duration, prefix, query string) boundedPublishResult {
	var r boundedPublishResult
	body := bytes.Repeat([]byte("p"), 1024)
	end := time.Now().Add(limit)
	for i := 0; i < n && time.Now().Before(end); i++ {
		start := time.Now()
		res, status, err := pc.publish(fmt.Sprintf("%s-%03d", prefix, i), body, query)
		wall := time.Since(start)
		if err != nil || status != http.StatusCreated || len(res.Acked) != edges {
			r.failed++
			b.Logf("publish %d: status %d acked %d/%d: %v", i, status, len(res.Acked), edges, err)
			continue
		}
		r.wall = append(r.wall, wall)
	}
	return r
}

// purgeClient talks to a WAN's origin admin API.
type purgeClient struct {
	w *WAN
	c *http.Client
}

// purgeBenchObjects objects are published before anything is timed; each
// purge names one of them, in turn. The latency phase purges each once, so
// every timed wait=true purge evicts a cached object on every edge.
const purgeBenchObjects = 100

func purgeBenchKey(i int) string { return fmt.Sprintf("obj-%03d", i%purgeBenchObjects) }

func (pc *purgeClient) purge(ctx context.Context, key string, wait bool) (origin.PurgeResult, int, error) {
	var res origin.PurgeResult
	body, _ := json.Marshal(origin.PurgeRequest{Keys: []string{key}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/purge?wait=%t", pc.w.OriginURL(), wait), bytes.NewReader(body))
	if err != nil {
		return res, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+pc.w.Token)
	req.Header.Set("Content-Type", "application/json")
	status, err := pc.do(req, &res)
	return res, status, err
}

func (pc *purgeClient) publish(key string, body []byte, query string) (origin.PublishResult, int, error) {
	var res origin.PublishResult
	req, err := http.NewRequest(http.MethodPut, pc.w.OriginURL()+"/v1/objects/"+key+"?"+query, bytes.NewReader(body))
	if err != nil {
		return res, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+pc.w.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	status, err := pc.do(req, &res)
	return res, status, err
}

// do sends req and decodes the JSON answer into v; the body is read to
// the end so the connection is reused.
func (pc *purgeClient) do(req *http.Request, v any) (int, error) {
	resp, err := pc.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %d %q: %w", req.URL.Path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, nil
}

// publishAll publishes purgeBenchKey(0) … purgeBenchKey(n-1) with w=all from workers
// goroutines, so setup does not take n sequential WAN round trips.
func (pc *purgeClient) publishAll(n, workers int) error {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key := purgeBenchKey(i)
				res, status, err := pc.publish(key, []byte("content of "+key), "w=all")
				if err == nil && (status != http.StatusCreated || len(res.Acked) != len(pc.w.Edges())) {
					err = fmt.Errorf("publish %s: status %d acked %v: %s", key, status, res.Acked, res.Error)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func wanAllHealthy(w *WAN) bool {
	for _, e := range w.Edges() {
		if ed := e.Edge(); ed == nil || !ed.Healthy() {
			return false
		}
	}
	return true
}

// wanEdgesApplied reports whether every edge's own log has reached lsn.
func wanEdgesApplied(w *WAN, lsn uint64) bool {
	for _, e := range w.Edges() {
		if ed := e.Edge(); ed == nil || ed.Watermark() < lsn {
			return false
		}
	}
	return true
}

// wanOriginSawAcks reports whether the origin has an ack of lsn from every
// edge, which is what a wait=true purge waits for.
func wanOriginSawAcks(w *WAN, lsn uint64) bool {
	o := w.Origin()
	if o == nil {
		return false
	}
	st := o.Edges()
	if len(st) != len(w.Edges()) {
		return false
	}
	for _, s := range st {
		if s.Watermark < lsn {
			return false
		}
	}
	return true
}

// wanBenchWait polls cond every 10 ms for up to limit.
func wanBenchWait(b *testing.B, w *WAN, what string, limit time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			var lag []string
			if o := w.Origin(); o != nil {
				for _, s := range o.Edges() {
					lag = append(lag, fmt.Sprintf("%s:%s", s.ID, s.State))
				}
			}
			b.Fatalf("timed out after %v waiting for %s (%s)", limit, what, strings.Join(lag, " "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// durationPercentiles returns the nearest-rank p50 and p99 and the max of ds.
func durationPercentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(i, 0)]
	}
	return rank(0.50), rank(0.99), s[len(s)-1]
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func millisOrTimeout(d time.Duration) string {
	if d <= 0 {
		return "timed out"
	}
	return fmt.Sprintf("%.0f", millis(d))
}
