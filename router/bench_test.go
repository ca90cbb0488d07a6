package router

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/rttstat"
)

// benchClients are addresses of every city of the test database, several
// hosts each, IPv4 and IPv6, plus fallbacks and unknowns.
func benchClients() []netip.Addr {
	var out []netip.Addr
	for city := range 32 {
		for host := 1; host <= 14; host += 3 {
			v4 := [4]byte{192, 0, 2, byte(16*city + host)}
			if city >= 16 {
				v4 = [4]byte{198, 51, 100, byte(16*(city-16) + host)}
			}
			out = append(out, netip.AddrFrom4(v4))
			v6 := netip.MustParseAddr("2001:db8::").As16()
			v6[5] = byte(city + 1)
			v6[15] = byte(host)
			out = append(out, netip.AddrFrom16(v6))
		}
	}
	for _, s := range []string{"203.0.113.5", ipUSCentroid, "203.0.113.33", "203.0.113.50", ipUnknown} {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func benchRouter(b *testing.B, cacheEntries int) *Router {
	return benchRouterWith(b, cacheEntries, false)
}

// benchRouterWith is benchRouter, and with measured every network of
// benchClients has measured RTTs from three edges, with enough samples.
func benchRouterWith(b *testing.B, cacheEntries int, measured bool) *Router {
	r, err := New(Config{
		HTTPAddr: "-", OriginAdmin: "http://127.0.0.1:1", Token: "bench-token-0123456789",
		GeoIPPath: testDB, CacheEntries: cacheEntries,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	edges := manyEdges(1000)
	if measured {
		for i, c := range benchClients() {
			for j := range 3 {
				e := &edges[(7*i+331*j)%len(edges)]
				e.RTT = append(e.RTT, MeasuredRTT{Network: rttstat.Network(c), RTT: time.Duration(5+10*j) * time.Millisecond, Samples: 20})
			}
		}
	}
	r.table.Store(r.newTable(edges))
	return r
}

// BenchmarkDecide measures routing decisions with 1,000 edges: GeoIP
// lookup, ranking by estimated RTT, rendezvous hashing on the key.
// "cached" is the steady state (per-network locations and per-location
// rankings cached); "uncached" pays the database lookup and a scan of
// every edge on each decision. The "-measured" variants have measured
// RTTs from three edges for every client's network, which rank those
// edges instead of the model. Run with -cpu 1 for one core.
func BenchmarkDecide(b *testing.B) {
	clients := benchClients()
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("assets/img/%05d.jpg", i)
	}
	for _, bc := range []struct {
		name     string
		entries  int
		measured bool
	}{{"cached", 0, false}, {"uncached", -1, false}, {"cached-measured", 0, true}, {"uncached-measured", -1, true}} {
		b.Run(bc.name, func(b *testing.B) {
			r := benchRouterWith(b, bc.entries, bc.measured)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := r.Decide(clients[i%len(clients)], "default", keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkDecideParallel is BenchmarkDecide/cached from every P.
func BenchmarkDecideParallel(b *testing.B) {
	clients := benchClients()
	r := benchRouter(b, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := r.Decide(clients[i%len(clients)], "default", "assets/app.js"); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// discardWriter is a ResponseWriter that keeps nothing, so
// BenchmarkHandler measures the handler, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandler is the redirect path of the HTTP front end without the
// network: key validation, X-Forwarded-For from a trusted proxy, decision
// among 1,000 edges, Location. bench/router.sh measures it under wrk.
func BenchmarkHandler(b *testing.B) {
	r := benchRouter(b, 0)
	r.trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h := r.Handler()
	clients := benchClients()
	reqs := make([]*http.Request, 256)
	for i := range reqs {
		req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/assets/%05d.js?v=1", i), nil)
		req.RemoteAddr = "127.0.0.1:5555"
		req.Header.Set("X-Forwarded-For", clients[i%len(clients)].String())
		reqs[i] = req
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, reqs[i%len(reqs)])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redirects/s")
}
