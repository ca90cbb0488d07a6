package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/internal/samplesite"
	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/router"
)

// devEdges are the development cluster's edges, at real cities of the
// measured inter-region RTT table.
var devEdges = []cluster.EdgeSpec{
	{ID: "iad", Region: "us-east", Lat: 38.90, Lon: -77.04},
	{ID: "dfw", Region: "us-central", Lat: 32.78, Lon: -96.80},
	{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
	{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
	{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
	{ID: "syd", Region: "ap-southeast", Lat: -33.87, Lon: 151.21},
	{ID: "gru", Region: "sa-east", Lat: -23.55, Lon: -46.63},
}

func devCommand() *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run an origin (or --origins N), 7 edges and a router on loopback with sample content (Ctrl-C stops)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "processes", EnvVars: env("dev-processes"), Usage: "run each node as a child process of this binary " +
				"(output in DATA/logs/NODE.log) and serve a control API that kills, pauses, resumes and restarts edges " +
				"(on base+200, named in the banner and as \"control\" in --ready-file; bearer token: the admin token). " +
				"Without it every node runs inside this one process and there is no control API"},
			&cli.StringFlag{Name: "data", Usage: "data directory (default: a temporary one, removed on exit)", EnvVars: env("dev-data")},
			&cli.IntFlag{Name: "base-port", Value: 8080, Usage: "origin admin and QUIC on this port, edges on the next ones, their admin listeners 1000 higher, " +
				"the router 100 higher, the control API of --processes 200 higher; 0 puts every listener on a port the kernel picks (see the banner or --ready-file)", EnvVars: env("base-port")},
			&cli.StringFlag{Name: "content", Value: "testdata/sample", Usage: "directory whose files are published at start", EnvVars: env("content")},
			&cli.DurationFlag{Name: "lease", Value: 2 * time.Second, Usage: "edge lease term", EnvVars: env("lease")},
			&cli.IntFlag{Name: "origins", Value: 1, EnvVars: env("dev-origins"), Usage: "how many origins, as one raft cluster " +
				"(3 or 5 survive the loss of 1 or 2); the first is on the base port, the others on ports the kernel picks"},
			&cli.StringFlag{Name: "geoip", Value: "testdata/geoip-test.mmdb", Usage: "GeoIP2 City database of the dev router", EnvVars: env("dev-geoip")},
			readyFileFlag(),
		},
		Action: func(c *cli.Context) error {
			base := c.Int("base-port")
			// The last edge's admin listener is the highest port.
			if top := 1000 + len(devEdges); base < 0 || base+top > 65535 {
				return fmt.Errorf("--base-port %d: want 0 or a port up to %d (the dev cluster uses ports up to base+%d)",
					base, 65535-top, top)
			}
			// addr is the listener at base+off; every one on port 0 when
			// base is 0.
			addr := func(off int) string {
				if base == 0 {
					return "127.0.0.1:0"
				}
				return fmt.Sprintf("127.0.0.1:%d", base+off)
			}
			if n := c.Int("origins"); n < 1 || n > 7 {
				return fmt.Errorf("--origins %d: want 1 to 7", n)
			}
			dir := c.String("data")
			if dir == "" {
				tmp, err := os.MkdirTemp("", "geocdn-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			// The sample website the default namespace pulls through,
			// beside the published sample content.
			site, err := startSampleSite(addr(300))
			if err != nil {
				return err
			}
			defer site.Close()
			if c.Bool("processes") {
				return runDevProcesses(c, dir, addr, site.url)
			}
			specs := make([]cluster.EdgeSpec, len(devEdges))
			for i, s := range devEdges {
				s.HTTPAddr = addr(1 + i)
				s.AdminAddr = addr(1001 + i)
				s.HTTPSAddr = addr(devHTTPSOffset + i)
				specs[i] = s
			}
			// The edges' development certificate, issued by the cluster's
			// CA once it exists; no client connects before.
			var webCert atomic.Pointer[tls.Certificate]
			cl, err := cluster.Start(cluster.Config{
				Dir: dir, Edges: specs, LeaseTerm: c.Duration("lease"),
				OriginHTTPAddr: addr(0),
				OriginQUICAddr: addr(0),
				Origins:        c.Int("origins"),
				Logger:         slog.Default(),
				Upstreams:      []origin.Upstream{site.upstream()},
				EdgeCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					if c := webCert.Load(); c != nil {
						return c, nil
					}
					return nil, errors.New("the development certificate is not issued yet")
				},
			})
			if err != nil {
				return err
			}
			defer cl.Close()
			caFile, err := devWebCert(cl.CA, dir, &webCert)
			if err != nil {
				return err
			}
			tokenFile := filepath.Join(dir, "token")
			if err := os.WriteFile(tokenFile, []byte(cl.Token+"\n"), 0o600); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			keys, err := publishDir(ctx, cl.OriginURL(), cl.Token, c.String("content"))
			if err != nil {
				return err
			}
			// The dev router trusts loopback, so X-Forwarded-For can play
			// a client anywhere in the test GeoIP database.
			frankfurt := geo.Point{Lat: 50.11, Lon: 8.68}
			rt, err := router.New(router.Config{
				HTTPAddr: addr(100), OriginAdmin: cl.OriginURL(), Token: cl.Token,
				GeoIPPath: c.String("geoip"), DefaultLocation: &frankfurt,
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
				Logger:         slog.Default(),
			})
			if err != nil {
				return err
			}
			rtDone := make(chan error, 1)
			go func() { rtDone <- rt.Run(ctx) }()
			defer func() { <-rtDone }()
			b := inProcessBanner(cl, dir, keys, "http://"+rt.HTTPAddr().String())
			b.site, b.caFile = site.url, caFile
			printDev(b)
			if path := c.String("ready-file"); path != "" {
				// Written last: the sample content is on every edge by now.
				f := devReady(cl, rt, tokenFile)
				if err := ready.Write(path, f); err != nil {
					stop()
					return err
				}
				defer ready.Remove(path, f.PID)
			}
			<-ctx.Done()
			fmt.Println("\nstopping…")
			return nil
		},
	}
}

// devHTTPSOffset is the offset from --base-port of the first edge's TLS
// listener (HTTP/3 on the same port over UDP).
const devHTTPSOffset = 401

// devWebCert issues the edges' development certificate from ca into
// cert, and writes ca's certificate to dir/ca.crt for clients to trust
// (curl --cacert), returning that path.
func devWebCert(ca *pki.CA, dir string, cert *atomic.Pointer[tls.Certificate]) (string, error) {
	c, err := ca.IssueWeb(pki.LoopbackHosts, time.Now(), 30*24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("development certificate: %w", err)
	}
	cert.Store(&c)
	path := filepath.Join(dir, pki.CACertFile)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// publishDir publishes every file under dir, keyed by its relative path,
// to the origin at originURL, and waits until every edge stored it
// (w=all).
func publishDir(ctx context.Context, originURL, token, dir string) ([]string, error) {
	var keys []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		u := originURL + "/v1/objects/" + escapeKey(key) + "?w=all"
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, f)
		if err != nil {
			return err
		}
		req.ContentLength = fi.Size()
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", contentTypeFor(key))
		req.Header.Set("Cache-Control", "public, max-age=60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("publish %s: %w", key, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("publish %s: origin answered %s", key, resp.Status)
		}
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sample content %s: %w", dir, err)
	}
	return keys, nil
}

// devReady is the dev cluster's ready file: every node it runs, under
// this one process.
func devReady(cl *cluster.Cluster, rt *router.Router, tokenFile string) ready.File {
	pid := os.Getpid()
	o := cl.Origin()
	f := ready.File{
		Role: "dev", PID: pid, TokenFile: tokenFile,
		Origin: &ready.File{Role: "origin", PID: pid, HTTP: o.HTTPAddr().String(), QUIC: o.QUICAddr().String()},
		Router: &ready.File{Role: "router", PID: pid, HTTP: rt.HTTPAddr().String()},
	}
	for _, en := range cl.Edges() {
		e := en.Edge()
		f.Edges = append(f.Edges, ready.File{Role: "edge", ID: e.ID(), PID: pid,
			HTTP: e.HTTPAddr().String(), HTTPS: addrString(e.HTTPSAddr()), HTTP3: addrString(e.HTTP3Addr()),
			Admin: addrString(e.AdminAddr()), QUIC: e.QUICAddr().String()})
	}
	return f
}

// devBanner is what the banner of geocdn dev shows.
type devBanner struct {
	dir, originURL, token, routerURL string
	edges                            []bannerEdge
	keys                             []string
	// With --processes: the control API's URL and where logs go.
	control, logs string
	// moreOrigins are the admin URLs of the origins after the first.
	moreOrigins []string
	// site is the URL of the sample website the default namespace pulls.
	site string
	// caFile is the dev CA's certificate, which clients of the edges'
	// HTTPS and HTTP/3 trust.
	caFile string
}

// sampleSite is the dev cluster's upstream web server.
type sampleSite struct {
	*http.Server
	url string
}

// startSampleSite serves internal/samplesite on addr.
func startSampleSite(addr string) (*sampleSite, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sample site: %w", err)
	}
	s := &sampleSite{
		Server: &http.Server{Handler: samplesite.Handler(time.Now()), ReadHeaderTimeout: 10 * time.Second},
		url:    "http://" + ln.Addr().String(),
	}
	go s.Serve(ln)
	return s, nil
}

// upstream names the site as the default namespace's upstream.
func (s *sampleSite) upstream() origin.Upstream {
	u, _ := url.Parse(s.url)
	return origin.Upstream{Namespace: objkey.DefaultNamespace, URL: u}
}

type bannerEdge struct {
	id, region, url, admin string
	https                  string // the TLS listener's URL, if any
	pid                    int    // 0 in one process
}

func inProcessBanner(cl *cluster.Cluster, dir string, keys []string, routerURL string) devBanner {
	b := devBanner{dir: dir, originURL: cl.OriginURL(), token: cl.Token, routerURL: routerURL, keys: keys}
	for i := 1; i < cl.OriginCount(); i++ {
		b.moreOrigins = append(b.moreOrigins, cl.OriginURLN(i))
	}
	for _, e := range cl.Edges() {
		be := bannerEdge{id: e.Spec.ID, region: e.Spec.Region, url: e.URL, admin: addrString(e.Edge().AdminAddr())}
		if a := e.Edge().HTTPSAddr(); a != nil {
			be.https = "https://" + a.String()
		}
		b.edges = append(b.edges, be)
	}
	return b
}

func printDev(d devBanner) {
	var b strings.Builder
	fmt.Fprintf(&b, "\ngeocdn dev cluster is up (data in %s)\n\n", d.dir)
	fmt.Fprintf(&b, "  router        %s   (302 to the nearest healthy edge)\n", d.routerURL)
	fmt.Fprintf(&b, "  origin admin  %s   token: %s (also in %s)\n", d.originURL, d.token, filepath.Join(d.dir, "token"))
	for _, u := range d.moreOrigins {
		fmt.Fprintf(&b, "  origin admin  %s   (any origin takes every request; geocdn status lists the cluster)\n", u)
	}
	for _, e := range d.edges {
		fmt.Fprintf(&b, "  edge %-4s %-13s %s   metrics http://%s/metrics", e.id, e.region, e.url, e.admin)
		if e.https != "" {
			fmt.Fprintf(&b, "   %s (HTTP/2, HTTP/3)", e.https)
		}
		if e.pid != 0 {
			fmt.Fprintf(&b, "   pid %d", e.pid)
		}
		b.WriteString("\n")
	}
	if d.control != "" {
		fmt.Fprintf(&b, "  control       %s   (same token; GET /v1/dev/edges, POST /v1/dev/edges/ID/kill|pause|resume|restart)\n", d.control)
		fmt.Fprintf(&b, "  logs          %s\n", filepath.Join(d.logs, "NODE.log"))
	}
	fmt.Fprintf(&b, "\n  published: %s\n", strings.Join(d.keys, ", "))
	if d.site != "" {
		fmt.Fprintf(&b, "  pulled:    everything else, from the sample site %s (its pages: /site/)\n", d.site)
	}
	if len(d.keys) > 0 && len(d.edges) > 0 {
		k := d.keys[0]
		for _, key := range d.keys {
			if strings.HasSuffix(key, ".html") {
				k = key
			}
		}
		fmt.Fprintf(&b, "\ntry (a client in Paris, then one in Tokyo):\n")
		fmt.Fprintf(&b, "  curl -iL -H 'X-Forwarded-For: 192.0.2.1' %s/%s\n", d.routerURL, escapeKey(k))
		fmt.Fprintf(&b, "  curl -s '%s/v1/route?ip=198.51.100.65&key=%s'\n", d.routerURL, escapeKey(k))
		fmt.Fprintf(&b, "  curl -s -H 'Authorization: Bearer %s' %s/v1/edges\n", d.token, d.originURL)
		fmt.Fprintf(&b, "  echo hi | go run ./cmd/geocdn publish --origin %s --token %s hello.txt -\n", d.originURL, d.token)
		if d.site != "" {
			fmt.Fprintf(&b, "  curl -si %s/site/news | grep -i -e cache-status -e age   (twice: a miss, then a hit)\n", d.edges[0].url)
		}
		if d.caFile != "" && d.edges[0].https != "" {
			fmt.Fprintf(&b, "  curl --cacert %s --http2 -si %s/%s   (HTTPS; the dev CA issued the certificate)\n", d.caFile, d.edges[0].https, escapeKey(k))
			fmt.Fprintf(&b, "  curl --cacert %s --http3-only -si %s/%s   (HTTP/3, with a curl built with it)\n", d.caFile, d.edges[0].https, escapeKey(k))
		}
		if d.control != "" {
			fmt.Fprintf(&b, "  curl -s -X POST -H 'Authorization: Bearer %s' %s/v1/dev/edges/%s/pause\n", d.token, d.control, d.edges[0].id)
		}
	}
	b.WriteString("\nCtrl-C stops everything.\n")
	fmt.Print(b.String())
}
