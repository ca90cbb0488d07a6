package cluster

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/rttstat"
	"github.com/geocdn/geocdn/internal/simwan"
	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/router"
)

// TestMeasuredRTTOverridesGeography: a client in Paris, whose nearest
// edge on the map is London, but whose path to London is slow (90 ms)
// and to Frankfurt fast (12 ms), as when a network's transit goes the
// long way round. The client fetches over HTTP/3 on the simulated WAN;
// each edge measures its connections' RTT, reports the medians to the
// origin, and a router built from the origin's edge list sends the
// client's network to Frankfurt by measurement, where the model alone
// sends it to London.
func TestMeasuredRTTOverridesGeography(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		paris := geo.Point{Lat: 48.86, Lon: 2.35}
		m, err := simwan.NewMatrix([]simwan.Region{
			{Name: "Washington DC", Lat: 38.90, Lon: -77.04},
			{Name: "London", Lat: 51.51, Lon: -0.13},
			{Name: "Frankfurt", Lat: 50.11, Lon: 8.68},
			{Name: "Paris", Lat: paris.Lat, Lon: paris.Lon},
		}, [][]float64{
			{0, 76, 90, 80},
			{76, 0, 15, 90},
			{90, 15, 0, 12},
			{80, 90, 12, 0},
		})
		if err != nil {
			t.Fatal(err)
		}
		// The edges' web certificate, from a CA of its own (the WAN's
		// node CA is made inside StartWAN).
		webCA, err := pki.NewCA(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := webCA.IssueWeb([]string{"*.edge.wan"}, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pool := webCA.Pool
		w, err := StartWAN(WANConfig{
			Dir: t.TempDir(), Matrix: m, IntraRegion: time.Millisecond, Logger: testLogger(t),
			Edges:           []WANEdge{{"lhr", "London"}, {"fra", "Frankfurt"}},
			EdgeCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		waitFor(t, "both edges healthy", func() bool {
			for _, e := range w.Edges() {
				if ed := e.Edge(); ed == nil || !ed.Healthy() {
					return false
				}
			}
			return true
		})
		client, err := w.Net.AddHost("client-paris", "Paris")
		if err != nil {
			t.Fatal(err)
		}
		network := rttstat.Network(client)

		// Ten connections to each edge, one request each: each
		// connection's handshake is one RTT sample.
		port := 40000
		for _, id := range []string{"lhr", "fra"} {
			h3, err := w.H3Addr(id)
			if err != nil {
				t.Fatal(err)
			}
			for range 10 {
				port++
				pc, err := w.Net.Listen("client-paris", port)
				if err != nil {
					t.Fatal(err)
				}
				tr := &quic.Transport{Conn: pc}
				rt := &http3.Transport{
					TLSClientConfig: &tls.Config{RootCAs: pool},
					Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
						return tr.DialEarly(ctx, h3, tc, qc)
					},
				}
				resp, err := (&http.Client{Transport: rt}).Get("https://" + id + ".edge.wan/healthz")
				if err != nil {
					t.Fatalf("GET over HTTP/3 from Paris to %s: %v", id, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: status %d", id, resp.StatusCode)
				}
				rt.Close()
				tr.Close()
				pc.Close()
			}
		}

		// The origin lists both edges' measurements of the network.
		measured := func(st origin.EdgeStatus) (origin.NetworkRTT, bool) {
			for _, r := range st.RTT {
				if r.Network == network.String() {
					return r, true
				}
			}
			return origin.NetworkRTT{}, false
		}
		var rows []origin.EdgeStatus
		waitFor(t, "the origin listing both edges' RTT to "+network.String(), func() bool {
			rows = w.Origin().Edges()
			n := 0
			for _, st := range rows {
				// Ten connections, decayed a little since.
				if r, ok := measured(st); ok && r.Samples >= router.DefaultMinRTTSamples {
					n++
				}
			}
			return n == 2
		})
		for _, st := range rows {
			r, _ := measured(st)
			want := map[string]float64{"lhr": 90, "fra": 12}[st.ID]
			if r.MedianMs < want*0.85 || r.MedianMs > want*1.25 {
				t.Errorf("%s measured %.1f ms to %s, want about %v", st.ID, r.MedianMs, network, want)
			}
		}

		// A router over that edge list.
		var edges []router.Edge
		for _, st := range rows {
			edges = append(edges, router.EdgeFromStatus(st))
		}
		tab := router.NewTable(edges, router.TableOptions{})
		loc := geoip.Location{Point: paris, Source: geoip.SourceCity, Reason: "Paris"}
		byModel, err := tab.Decide(router.Query{Location: loc, Affinity: 1})
		if err != nil || byModel.Edge != "lhr" || byModel.RTTSource != "model" {
			t.Fatalf("by the model alone: %s (%s), %v; want London, the nearer on the map", byModel.Edge, byModel.RTTSource, err)
		}
		byMeasure, err := tab.Decide(router.Query{Location: loc, Affinity: 1, Network: network})
		if err != nil || byMeasure.Edge != "fra" || byMeasure.RTTSource != "measured" {
			t.Fatalf("with measurements: %s (%s), %v: %s; want Frankfurt by measurement", byMeasure.Edge, byMeasure.RTTSource, err, byMeasure.Reason)
		}
		if other := netip.MustParseAddr("192.0.2.1"); rttstat.Network(other) == network {
			t.Fatal("test premise: another network")
		}
	})
}
