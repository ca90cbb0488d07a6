package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/simwan"
	"github.com/geocdn/geocdn/origin"
)

// BenchmarkPullWAN measures pull-through on a simulated WAN in real time:
// an origin in Washington DC as the shield, one edge in each region of
// the latency matrix, and an upstream website beside the origin (on
// loopback, answering after pullBenchService, as a dynamic site would).
// Like BenchmarkPurgeWAN it is not run under synctest: the numbers
// include every real cost on top of the simulated propagation.
//
// Two measurements, printed as markdown tables on stdout for
// bench/run.sh:
//
//   - Miss latency per region: a URL no one has asked for (the origin
//     fetches it upstream), the same URL at another edge (the origin has
//     it: a shield hit), and again at the first edge (an edge hit).
//   - Origin offload: clients at every edge request a Zipf-distributed
//     set of URLs with a realistic mix of Cache-Control; the upstream's
//     requests per 1,000 client requests, next to what the edges alone
//     would have fetched at the least.
//
// Run it as
//
//	go test -run '^$' -bench '^BenchmarkPullWAN$' -benchtime 1x ./internal/cluster
func BenchmarkPullWAN(b *testing.B) {
	const (
		originRegion  = "Washington DC"
		latencyKeys   = 8 // per region
		latencyCap    = 120 * time.Second
		zipfURLs      = 5000
		zipfS         = 1.1
		zipfRequests  = 20000
		zipfClients   = 32
		zipfCap       = 180 * time.Second
		latencyBody   = 16 << 10
		zipfBodyBytes = 8 << 10
	)
	m := simwan.DefaultMatrix()
	var specs []WANEdge
	for _, r := range m.Regions() {
		if r.Name == originRegion {
			continue // an edge beside the origin measures nothing the others do not
		}
		specs = append(specs, WANEdge{ID: strings.ToLower(strings.ReplaceAll(r.Name, " ", "-")), Region: r.Name})
	}
	for range b.N {
		site := newBenchSite(latencyBody, zipfBodyBytes)
		u, _ := url.Parse(site.URL)
		w, err := StartWAN(WANConfig{
			Dir: b.TempDir(), OriginRegion: originRegion, Edges: specs, Matrix: m,
			LeaseTerm: 2 * time.Second, PublishTimeout: 30 * time.Second,
			// One replica: the origin pushes a pulled version to one edge
			// (which may be another than the one that asked), so that most
			// second requests elsewhere are shield hits, not edge hits.
			Replicas:  1,
			Upstreams: []origin.Upstream{{Namespace: objkey.DefaultNamespace, URL: u, Mode: origin.PullOnly}},
			Logger:    slog.New(slog.DiscardHandler),
		})
		if err != nil {
			site.Close()
			b.Fatal(err)
		}
		tr := w.Client.Transport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = zipfClients
		c := &http.Client{Transport: tr}
		func() {
			defer func() {
				tr.CloseIdleConnections()
				if err := w.Close(); err != nil {
					b.Errorf("close: %v", err)
				}
				site.Close()
			}()
			b.StopTimer()
			wanBenchWait(b, w, "every edge healthy", 60*time.Second, func() bool { return wanAllHealthy(w) })
			b.StartTimer()
			lat := measurePullLatency(b, w, c, site, latencyKeys, latencyCap)
			off := measureOffload(b, w, c, site, zipfURLs, zipfS, zipfRequests, zipfClients, zipfCap)
			b.StopTimer()

			var t strings.Builder
			fmt.Fprintf(&t, "**Miss latency through the shield: origin in %s, one edge in each of %d regions, the upstream beside the origin answering in %v, one replica; %d URLs per region, one request at a time**\n",
				originRegion, len(specs), pullBenchService, latencyKeys)
			fmt.Fprintln(&t, "| edge region | RTT to origin ms | cold miss p50 ms | cold miss max ms | shield hit p50 ms | shield hit max ms | pushed before asked | edge hit p50 ms | upstream requests |")
			fmt.Fprintln(&t, "|---|---|---|---|---|---|---|---|---|")
			var all pullLatency
			for _, e := range specs {
				l := lat[e.Region]
				out, _ := m.OneWay(e.Region, originRegion)
				back, _ := m.OneWay(originRegion, e.Region)
				cp50, _, cmx := durationPercentiles(l.cold)
				sp50, _, smx := durationPercentiles(l.shield)
				hp50, _, _ := durationPercentiles(l.hit)
				fmt.Fprintf(&t, "| %s | %.0f | %.1f | %.1f | %s | %s | %d | %.2f | %d |\n", e.Region, millis(out+back),
					millis(cp50), millis(cmx), millisOrNone(sp50, len(l.shield)), millisOrNone(smx, len(l.shield)), l.pushed, millis(hp50), l.upstream)
				all.cold = append(all.cold, l.cold...)
				all.shield = append(all.shield, l.shield...)
				all.hit = append(all.hit, l.hit...)
				all.upstream += l.upstream
				all.pushed += l.pushed
				all.failed += l.failed
			}
			cp50, cp99, _ := durationPercentiles(all.cold)
			sp50, sp99, _ := durationPercentiles(all.shield)
			hp50, hp99, _ := durationPercentiles(all.hit)
			fmt.Fprintf(&t, "| all (%d cold misses, %d shield hits; p50, p99) | — | %.1f | %.1f (p99) | %s | %s (p99) | %d | %.2f (p99 %.2f) | %d |\n",
				len(all.cold), len(all.shield), millis(cp50), millis(cp99), millisOrNone(sp50, len(all.shield)), millisOrNone(sp99, len(all.shield)),
				all.pushed, millis(hp50), millis(hp99), all.upstream)
			fmt.Fprintln(&t)
			fmt.Fprintf(&t, "**Origin offload: %d requests from %d clients spread over %d edges, Zipf (s=%.1f) over %d URLs; 80%% max-age=3600, 10%% max-age=2 with an ETag, 5%% no-store, 5%% private**\n",
				off.requests, zipfClients, len(specs), zipfS, zipfURLs)
			fmt.Fprintln(&t, "| client requests | failed | upstream 200s | upstream 304s | upstream requests per 1,000 | of which not storable (passed through) | per 1,000 if every edge fetched for itself (at least) | distinct URLs per 1,000 | took s |")
			fmt.Fprintln(&t, "|---|---|---|---|---|---|---|---|---|")
			per := func(n int) float64 { return 1000 * float64(n) / float64(max(off.requests, 1)) }
			fmt.Fprintf(&t, "| %d | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f |\n", off.requests, off.failed,
				off.full, off.notModified, per(off.full+off.notModified), per(off.passed),
				per(off.edgeAlone), per(off.distinct), off.took.Seconds())
			fmt.Print(t.String())

			b.ReportMetric(millis(cp50), "cold-miss-p50-ms")
			b.ReportMetric(millis(sp50), "shield-hit-p50-ms")
			b.ReportMetric(per(off.full+off.notModified), "upstream/1000")
			if all.failed > 0 || off.failed > 0 {
				b.Errorf("%d latency requests and %d offload requests failed", all.failed, off.failed)
			}
		}()
	}
}

// millisOrNone formats d in ms, or "—" when it is of no samples.
func millisOrNone(d time.Duration, samples int) string {
	if samples == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", millis(d))
}

// offloadClass is the Cache-Control class of /z/n, 0 to 19 (see
// benchSite): scrambled so that the most popular URLs are not all of one.
func offloadClass(n int) int { return n * 7 % 20 }

// pullBenchService is how long the benchmark's upstream takes to answer.
const pullBenchService = 20 * time.Millisecond

// benchSite is the upstream of BenchmarkPullWAN. /lat/... is fresh for an
// hour. /z/N carries the offload mix by N's class: 0 and 1 max-age=2 with
// an ETag (and answer 304 to it), 2 no-store, 3 private, the rest
// max-age=3600 (offloadClass). It counts what it answered.
type benchSite struct {
	*httptest.Server
	full, notModified, passed atomic.Int64
	mu                        sync.Mutex
	perPath                   map[string]int
}

func newBenchSite(latencyBody, zipfBody int) *benchSite {
	s := &benchSite{perPath: map[string]int{}}
	// Every body differs: the same bytes under two URLs are one blob,
	// which an edge holding one would serve the other from.
	body := func(path string, n int) string { return path + strings.Repeat(" ", max(n-len(path), 0)) }
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(pullBenchService)
		s.mu.Lock()
		s.perPath[r.URL.Path]++
		s.mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		if strings.HasPrefix(r.URL.Path, "/lat/") {
			h.Set("Cache-Control", "max-age=3600")
			s.full.Add(1)
			io.WriteString(w, body(r.URL.Path, latencyBody))
			return
		}
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/z/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		switch offloadClass(n) {
		case 0, 1:
			h.Set("Cache-Control", "max-age=2")
			h.Set("ETag", `"z`+strconv.Itoa(n)+`"`)
			if r.Header.Get("If-None-Match") == `"z`+strconv.Itoa(n)+`"` {
				s.notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
		case 2:
			h.Set("Cache-Control", "no-store")
			s.passed.Add(1)
		case 3:
			h.Set("Cache-Control", "private, max-age=60")
			s.passed.Add(1)
		default:
			h.Set("Cache-Control", "max-age=3600")
		}
		s.full.Add(1)
		io.WriteString(w, body(r.URL.Path, zipfBody))
	}))
	return s
}

func (s *benchSite) hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perPath[path]
}

// pullLatency holds one region's timed requests.
type pullLatency struct {
	cold, shield, hit []time.Duration
	// pushed counts URLs pulled at another edge that were here before
	// they were asked for: the origin pushed them to their replica set.
	pushed, upstream, failed int
}

// measurePullLatency times, for n URLs per edge that no one has asked
// for: the cold miss at that edge; then the same URL at the next edge,
// where the origin has it (a shield hit, unless the origin pushed it
// there first); then the URL again at the first edge (an edge hit).
// Each sample counts for the edge that answered it.
func measurePullLatency(b *testing.B, w *WAN, c *http.Client, site *benchSite, n int, limit time.Duration) map[string]*pullLatency {
	edges := w.Edges()
	res := map[string]*pullLatency{}
	for _, en := range edges {
		res[en.Spec.Region] = &pullLatency{}
	}
	end := time.Now().Add(limit)
	get := func(en *EdgeNode, path string) (time.Duration, string, bool) {
		start := time.Now()
		resp, err := c.Get(en.URL + path)
		if err != nil {
			b.Logf("GET %s at %s: %v", path, en.Spec.ID, err)
			return 0, "", false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Logf("GET %s at %s: %d %v", path, en.Spec.ID, resp.StatusCode, err)
			return 0, "", false
		}
		return took, resp.Header.Get("Cache-Status"), true
	}
	pathOf := func(en *EdgeNode, k int) string { return fmt.Sprintf("/lat/%s/%d", en.Spec.ID, k) }
	for k := 0; k < n && time.Now().Before(end); k++ {
		for _, en := range edges {
			l := res[en.Spec.Region]
			path := pathOf(en, k)
			took, cs, ok := get(en, path)
			if !ok || !strings.Contains(cs, "fwd=uri-miss") {
				l.failed++
				b.Logf("cold GET %s: Cache-Status %q", path, cs)
				continue
			}
			l.cold = append(l.cold, took)
		}
		for i, en := range edges {
			l := res[en.Spec.Region]
			path := pathOf(edges[(i+len(edges)-1)%len(edges)], k)
			took, cs, ok := get(en, path)
			switch {
			case !ok:
				l.failed++
			case strings.HasPrefix(cs, "geocdn; hit"):
				l.pushed++
			default:
				l.shield = append(l.shield, took)
			}
		}
		for _, en := range edges {
			l := res[en.Spec.Region]
			path := pathOf(en, k)
			if took, cs, ok := get(en, path); ok && strings.HasPrefix(cs, "geocdn; hit") {
				l.hit = append(l.hit, took)
			} else {
				l.failed++
				b.Logf("repeat GET %s: Cache-Status %q", path, cs)
			}
			l.upstream += site.hits(path)
		}
	}
	return res
}

// offloadResult is what measureOffload saw.
type offloadResult struct {
	requests, failed          int
	full, notModified, passed int
	edgeAlone, distinct       int
	took                      time.Duration
}

// measureOffload sends total requests from clients concurrent clients,
// client i at edge i mod len(edges), for Zipf-distributed URLs, and counts
// the upstream's answers. edgeAlone is the number of distinct (edge, URL)
// pairs plus every request for a URL that may not be stored: the fewest
// upstream requests edges without a shield would have made.
func measureOffload(b *testing.B, w *WAN, c *http.Client, site *benchSite, urls int, s float64, total, clients int, limit time.Duration) offloadResult {
	edges := w.Edges()
	full0, nm0, pass0 := site.full.Load(), site.notModified.Load(), site.passed.Load()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var (
		next     atomic.Int64
		failed   atomic.Int64
		mu       sync.Mutex
		pairs    = map[[2]int]bool{}
		distinct = map[int]bool{}
		uncached int
	)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			en := edges[i%len(edges)]
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			z := rand.NewZipf(rng, s, 1, uint64(urls-1))
			for next.Add(1) <= int64(total) && ctx.Err() == nil {
				n := int(z.Uint64())
				mu.Lock()
				pairs[[2]int{i % len(edges), n}] = true
				distinct[n] = true
				if c := offloadClass(n); c == 2 || c == 3 {
					uncached++
				}
				mu.Unlock()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, en.URL+"/z/"+strconv.Itoa(n), nil)
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	sent := int(min(next.Load()-int64(clients), int64(total)))
	if ctx.Err() != nil {
		b.Errorf("offload: stopped at %v after %d requests", limit, sent)
	}
	cachedPairs := 0
	for p := range pairs {
		if c := offloadClass(p[1]); c != 2 && c != 3 {
			cachedPairs++
		}
	}
	return offloadResult{
		requests: sent, failed: int(failed.Load()),
		full: int(site.full.Load() - full0), notModified: int(site.notModified.Load() - nm0), passed: int(site.passed.Load() - pass0),
		edgeAlone: cachedPairs + uncached, distinct: len(distinct), took: time.Since(start),
	}
}
