package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/internal/geo"
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
		Usage: "run an origin and 7 edges on loopback with sample content (Ctrl-C stops)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "data directory (default: a temporary one, removed on exit)", EnvVars: env("dev-data")},
			&cli.IntFlag{Name: "base-port", Value: 8080, Usage: "origin admin on this port, edges on the next ones, their admin listeners 1000 higher", EnvVars: env("base-port")},
			&cli.StringFlag{Name: "content", Value: "testdata/sample", Usage: "directory whose files are published at start", EnvVars: env("content")},
			&cli.DurationFlag{Name: "lease", Value: 2 * time.Second, Usage: "edge lease term", EnvVars: env("lease")},
			&cli.StringFlag{Name: "geoip", Value: "testdata/geoip-test.mmdb", Usage: "GeoIP2 City database of the dev router", EnvVars: env("dev-geoip")},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("data")
			if dir == "" {
				tmp, err := os.MkdirTemp("", "geocdn-dev-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			base := c.Int("base-port")
			specs := make([]cluster.EdgeSpec, len(devEdges))
			for i, s := range devEdges {
				s.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", base+1+i)
				s.AdminAddr = fmt.Sprintf("127.0.0.1:%d", base+1001+i)
				specs[i] = s
			}
			cl, err := cluster.Start(cluster.Config{
				Dir: dir, Edges: specs, LeaseTerm: c.Duration("lease"),
				OriginHTTPAddr: fmt.Sprintf("127.0.0.1:%d", base),
				OriginQUICAddr: fmt.Sprintf("127.0.0.1:%d", base),
				Logger:         slog.Default(),
			})
			if err != nil {
				return err
			}
			defer cl.Close()
			if err := os.WriteFile(filepath.Join(dir, "token"), []byte(cl.Token+"\n"), 0o600); err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			keys, err := publishDir(ctx, cl, c.String("content"))
			if err != nil {
				return err
			}
			// The dev router trusts loopback, so X-Forwarded-For can play
			// a client anywhere in the test GeoIP database.
			frankfurt := geo.Point{Lat: 50.11, Lon: 8.68}
			rt, err := router.New(router.Config{
				HTTPAddr: fmt.Sprintf("127.0.0.1:%d", base+100), OriginAdmin: cl.OriginURL(), Token: cl.Token,
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
			printDev(cl, dir, keys, "http://"+rt.HTTPAddr().String())
			<-ctx.Done()
			fmt.Println("\nstopping…")
			return nil
		},
	}
}

// publishDir publishes every file under dir, keyed by its relative path,
// and waits until every edge stored it (w=all).
func publishDir(ctx context.Context, cl *cluster.Cluster, dir string) ([]string, error) {
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
		u := cl.OriginURL() + "/v1/objects/" + escapeKey(key) + "?w=all"
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, f)
		if err != nil {
			return err
		}
		req.ContentLength = fi.Size()
		req.Header.Set("Authorization", "Bearer "+cl.Token)
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

func printDev(cl *cluster.Cluster, dir string, keys []string, routerURL string) {
	var b strings.Builder
	fmt.Fprintf(&b, "\ngeocdn dev cluster is up (data in %s)\n\n", dir)
	fmt.Fprintf(&b, "  router        %s   (302 to the nearest healthy edge)\n", routerURL)
	fmt.Fprintf(&b, "  origin admin  %s   token: %s (also in %s)\n", cl.OriginURL(), cl.Token, filepath.Join(dir, "token"))
	for _, e := range cl.Edges() {
		fmt.Fprintf(&b, "  edge %-4s %-13s %s   metrics http://%s/metrics\n", e.Spec.ID, e.Spec.Region, e.URL, e.Spec.AdminAddr)
	}
	fmt.Fprintf(&b, "\n  published: %s\n", strings.Join(keys, ", "))
	if len(keys) > 0 && len(cl.Edges()) > 0 {
		k := keys[0]
		for _, key := range keys {
			if strings.HasSuffix(key, ".html") {
				k = key
			}
		}
		fmt.Fprintf(&b, "\ntry (a client in Paris, then one in Tokyo):\n")
		fmt.Fprintf(&b, "  curl -iL -H 'X-Forwarded-For: 192.0.2.1' %s/%s\n", routerURL, escapeKey(k))
		fmt.Fprintf(&b, "  curl -s '%s/v1/route?ip=198.51.100.65&key=%s'\n", routerURL, escapeKey(k))
		fmt.Fprintf(&b, "  curl -s -H 'Authorization: Bearer %s' %s/v1/edges\n", cl.Token, cl.OriginURL())
		fmt.Fprintf(&b, "  echo hi | go run ./cmd/geocdn publish --origin %s --token %s hello.txt -\n", cl.OriginURL(), cl.Token)
	}
	b.WriteString("\nCtrl-C stops everything.\n")
	fmt.Print(b.String())
}
