package cluster

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

var (
	scrubRounds  = flag.Int("geocdn.scrubrounds", 5, "interleaved rounds (one run with the scrubber, one without) of each BenchmarkScrubHits case")
	scrubRunTime = flag.Duration("geocdn.scrubruntime", 3*time.Second, "length of each BenchmarkScrubHits run")
)

const (
	// scrubBallast is the blob bytes on the edge besides the hit set: at
	// the default rate (20 MiB/s) a pass over them lasts about 5 s, longer
	// than a run, so the scrubber reads through every run it is meant to.
	scrubBallast   = 96
	scrubConns     = 16
	scrubMaxPerRun = 2_000_000
)

// BenchmarkScrubHits measures what the edge's background scrubber costs
// the hit path: hits against one edge over loopback with the scrubber
// reading at its default rate (20 MiB/s) and with it idle, in interleaved
// runs (off, on, then on, off, ...; -geocdn.scrubrounds rounds of
// -geocdn.scrubruntime runs), side by side in one process. Run it with
// -benchtime 1x.
//
// The edge holds the hit set (256 objects of the case's size) and 96 blobs
// of 1 MiB, all published with w=all and read once (so every object is a
// hit from the hot tier or the page cache). A run is 16 keep-alive
// connections, each sending GETs of random keys of the set one after
// another, for a fixed time (at most 2,000,000 requests); every response
// must be a 200 with X-Cache: HIT and the whole body. Latencies, request
// sent to body read, go to an HdrHistogram per mode. A run with the
// scrubber starts a pass (ScrubNow) and waits until it runs; the pass
// must still be running when the run ends, and the next run waits for it
// to finish; a run without must see the scrubber read nothing.
//
// Reported: p50/p99/p999 in µs and req/s of each mode (all runs merged),
// p99-ratio (median over rounds of p99 with / p99 without), scrub-MB/s
// (bytes the scrubber read during the runs with it, per second: the rate
// it keeps under load) and pass-MB/s (its whole passes, blob bytes over
// pass duration).
func BenchmarkScrubHits(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"hot-1KiB", 1 << 10}, {"disk-64KiB", 64 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			for range b.N {
				benchScrubHits(b, size.n)
			}
		})
	}
}

func benchScrubHits(b *testing.B, size int) {
	c, err := Start(Config{
		Dir:            b.TempDir(),
		Edges:          []EdgeSpec{{ID: "e1", Region: "local"}},
		ResyncInterval: 24 * time.Hour,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	en := c.Edges()[0]
	waitForWithin(b, "edge healthy", 30*time.Second, func() bool { return en.Edge().Healthy() })
	client := &http.Client{Timeout: time.Minute}
	rng := rand.New(rand.NewPCG(uint64(size), 1))
	body := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprintf("hits/%03d", i)
		benchPublish(b, c, client, keys[i], body(size))
	}
	for i := range scrubBallast {
		benchPublish(b, c, client, fmt.Sprintf("ballast/%03d", i), body(1<<20))
	}
	e := en.Edge()
	// Read everything once (the ballast too, so both modes find the same
	// page cache), then let a pass that may be running end.
	for _, k := range keys {
		benchHit(b, client, en.URL+"/"+k, size)
	}
	for i := range scrubBallast {
		benchHit(b, client, fmt.Sprintf("%s/ballast/%03d", en.URL, i), 1<<20)
	}
	waitForWithin(b, "no scrub pass running", 2*time.Minute, func() bool { return !e.ScrubStatus().Running })

	hist := map[bool]*hdrhistogram.Histogram{false: newLatencyHist(), true: newLatencyHist()}
	reqs := map[bool]int64{}
	elapsed := map[bool]time.Duration{}
	var ratios []float64
	var scrubBytes int64
	var scrubTime time.Duration
	passesBefore := e.ScrubStatus().LastFullPass
	for r := range *scrubRounds {
		var p99 [2]float64
		for k, on := range []bool{r%2 == 1, r%2 == 0} {
			if on {
				before := e.ScrubStatus()
				e.ScrubNow()
				waitForWithin(b, "scrub pass started", 10*time.Second, func() bool {
					st := e.ScrubStatus()
					return st.Running && st.Pass > before.Pass
				})
			}
			st0, t0 := e.ScrubStatus(), time.Now()
			h, n := hitLoad(b, client, en.URL, keys, size, *scrubRunTime)
			took := time.Since(t0)
			st1 := e.ScrubStatus()
			if on {
				if !st1.Running || st1.Pass != st0.Pass {
					b.Fatalf("scrub pass %d ended before the run did (%v): make the ballast larger", st0.Pass, took)
				}
				scrubBytes += st1.BytesRead - st0.BytesRead
				scrubTime += took
				waitForWithin(b, "scrub pass done", 2*time.Minute, func() bool { return !e.ScrubStatus().Running })
			} else if st1.BytesRead != st0.BytesRead || st1.Running {
				b.Fatalf("the scrubber read %d bytes during a run without it", st1.BytesRead-st0.BytesRead)
			}
			hist[on].Merge(h)
			reqs[on] += n
			elapsed[on] += took
			p99[k] = float64(h.ValueAtQuantile(99))
			b.Logf("round %d, scrubber %s: %d requests, %.0f req/s, p50 %d µs, p99 %d µs", r+1, onOff(on),
				n, float64(n)/took.Seconds(), h.ValueAtQuantile(50), h.ValueAtQuantile(99))
		}
		// p99[0] is the first run of the round: off in even rounds.
		if r%2 == 0 {
			ratios = append(ratios, p99[1]/p99[0])
		} else {
			ratios = append(ratios, p99[0]/p99[1])
		}
	}
	st := e.ScrubStatus()
	for _, on := range []bool{false, true} {
		h := hist[on]
		m := onOff(on)
		b.ReportMetric(float64(h.ValueAtQuantile(50)), "p50-µs-"+m)
		b.ReportMetric(float64(h.ValueAtQuantile(99)), "p99-µs-"+m)
		b.ReportMetric(float64(h.ValueAtQuantile(99.9)), "p999-µs-"+m)
		b.ReportMetric(float64(reqs[on])/elapsed[on].Seconds(), "req/s-"+m)
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "p99-ratio")
	b.ReportMetric(float64(scrubBytes)/scrubTime.Seconds()/1e6, "scrub-MB/s")
	if passes := st.LastFullPass - passesBefore; passes > 0 && !st.LastPassFinished.IsZero() {
		// The last full pass: its blob bytes over its duration.
		b.ReportMetric(float64(st.PassTotalBytes)/st.LastPassFinished.Sub(st.PassStarted).Seconds()/1e6, "pass-MB/s")
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
}

// hitLoad runs scrubConns connections of GETs of random keys against the
// edge at base for d (at most scrubMaxPerRun requests) and returns their
// latencies in µs and how many completed.
func hitLoad(b *testing.B, client *http.Client, base string, keys []string, size int, d time.Duration) (*hdrhistogram.Histogram, int64) {
	tr := &http.Transport{MaxIdleConnsPerHost: scrubConns, MaxConnsPerHost: scrubConns}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	deadline := time.Now().Add(d)
	var (
		mu    sync.Mutex
		total = newLatencyHist()
		count int64
		wg    sync.WaitGroup
		fail  error
	)
	var budget atomic.Int64
	budget.Store(scrubMaxPerRun)
	for w := range scrubConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := newLatencyHist()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			buf := make([]byte, size+1)
			var n int64
			var err error
			for time.Now().Before(deadline) {
				if budget.Add(-1) < 0 {
					break
				}
				url := base + "/" + keys[rng.IntN(len(keys))]
				t0 := time.Now()
				if err = hitOnce(cl, url, buf, size); err != nil {
					break
				}
				h.RecordValue(max(time.Since(t0).Microseconds(), 1))
				n++
			}
			mu.Lock()
			defer mu.Unlock()
			total.Merge(h)
			count += n
			if err != nil && fail == nil {
				fail = err
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		b.Fatal(fail)
	}
	return total, count
}

// hitOnce GETs url and requires a hit of size bytes.
func hitOnce(cl *http.Client, url string, buf []byte, size int) error {
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.ReadFull(resp.Body, buf)
	if err != io.ErrUnexpectedEOF && err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "HIT" || n != size {
		return fmt.Errorf("GET %s: %d, X-Cache %q, %d bytes; want a 200 hit of %d", url, resp.StatusCode, resp.Header.Get("X-Cache"), n, size)
	}
	return nil
}

func benchHit(b *testing.B, client *http.Client, url string, size int) {
	b.Helper()
	buf := make([]byte, size+1)
	// The first read of a key may be its fill; the second must be a hit.
	if err := hitOnce(client, url, buf, size); err != nil {
		if err := hitOnce(client, url, buf, size); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPublish(b *testing.B, c *Cluster, client *http.Client, key string, body []byte) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPut, c.OriginURL()+"/v1/objects/"+key+"?w=all", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("publish %s: %d", key, resp.StatusCode)
	}
}
