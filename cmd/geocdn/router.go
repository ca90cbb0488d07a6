package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/internal/tlscert"
	"github.com/geocdn/geocdn/router"
)

func routerCommand() *cli.Command {
	d := router.DefaultConfig()
	return &cli.Command{
		Name:  "router",
		Usage: "send clients to their nearest healthy edge, by HTTP redirect (302) or DNS, using a GeoIP2 City database",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "http", Value: d.HTTPAddr, Usage: "listen address for redirects, /v1/route, /healthz and /metrics", EnvVars: env("http")},
			&cli.StringFlag{Name: "origin-admin", Usage: "origin admin API base URL, whose /v1/edges lists the edges", Required: true, EnvVars: env("origin-admin")},
			&cli.StringFlag{Name: "geoip", Usage: "GeoIP2 or GeoLite2 City database (.mmdb), verified when opened; reopened when it changes or on SIGHUP", Required: true, EnvVars: env("geoip")},
			&cli.DurationFlag{Name: "geoip-reload-interval", Value: 30 * time.Second, EnvVars: env("geoip-reload-interval"),
				Usage: "how often the --geoip file is checked for changes (0 or negative: only on SIGHUP)"},
			&cli.StringFlag{Name: "trusted-proxies", Usage: "comma-separated CIDRs or addresses whose --client-ip-header is believed (e.g. 127.0.0.0/8,::1)", EnvVars: env("trusted-proxies")},
			&cli.StringFlag{Name: "client-ip-header", Value: d.ClientIPHeader, Usage: "header trusted proxies append the client to: X-Forwarded-For or Forwarded", EnvVars: env("client-ip-header")},
			&cli.StringFlag{Name: "default-location", Usage: "LAT,LON for clients the database places nowhere (default: spread them over every edge)", EnvVars: env("default-location")},
			&cli.StringFlag{Name: "country-locations", Usage: "override where clients known only by country are placed: CC=LAT,LON;CC=LAT,LON", EnvVars: env("country-locations")},
			&cli.IntFlag{Name: "max-accuracy", Value: d.MaxAccuracyKm, Usage: "largest GeoIP accuracy radius (km) at which a record's own coordinates are used, city or not (beyond it: its country's point)", EnvVars: env("max-accuracy")},
			&cli.DurationFlag{Name: "equivalence", Value: d.Equivalence, Usage: "edges within this estimated RTT of the nearest share clients by rendezvous hashing", EnvVars: env("equivalence")},
			&cli.DurationFlag{Name: "membership-interval", Value: d.MembershipInterval, Usage: "how often the origin's edge list is fetched (at most 1s)", EnvVars: env("membership-interval")},
			&cli.DurationFlag{Name: "probe-interval", Value: d.ProbeInterval, Usage: "how often each edge's /healthz is probed (at most 500ms)", EnvVars: env("probe-interval")},
			&cli.DurationFlag{Name: "probe-timeout", Value: d.ProbeTimeout, Usage: "timeout of one probe or edge-list fetch (at most 2s)", EnvVars: env("probe-timeout")},
			&cli.StringFlag{Name: "https", Value: "127.0.0.1:8448", EnvVars: env("https"),
				Usage: "listen address of the same API over TLS (HTTP/1.1 and HTTP/2), served when --tls-cert is given"},
			&cli.StringFlag{Name: "edge-ca", EnvVars: env("edge-ca"),
				Usage: "PEM certificates that edges serving https:// public URLs are checked against when probed (default: the system's roots)"},
			&cli.StringFlag{Name: "dns", EnvVars: env("dns"),
				Usage: "listen address (UDP and TCP, one port) of the DNS front end, e.g. 127.0.0.1:8053 (default: no DNS)"},
			&cli.StringFlag{Name: "dns-zone", EnvVars: env("dns-zone"),
				Usage: "zone the DNS front end is authoritative for, e.g. cdn.example.com (required with --dns)"},
			&cli.StringFlag{Name: "dns-names", EnvVars: env("dns-names"),
				Usage: "comma-separated hostnames in the zone answered with the nearest edge's addresses (default: the zone's apex)"},
			&cli.DurationFlag{Name: "dns-ttl", Value: router.DefaultDNSTTL, EnvVars: env("dns-ttl"),
				Usage: "TTL of DNS answers, and of negative answers (1s to 1h)"},
			&cli.StringFlag{Name: "dns-ns", EnvVars: env("dns-ns"),
				Usage: "the zone's nameservers, NAME=ADDR,ADDR;NAME: names in the zone need their addresses (default: ns.<zone> at the --dns address)"},
			&cli.StringFlag{Name: "dns-edge-addrs", EnvVars: env("dns-edge-addrs"),
				Usage: "addresses DNS answers with, by edge id: ID=ADDR,ADDR;ID=ADDR (default: the host of the edge's public URL when it is an IP address; other edges are left out of DNS)"},
			readyFileFlag(),
		}, append(tlsFlags("the router's HTTPS listener"), tokenFlags...)...),
		Action: func(c *cli.Context) error {
			tok, err := loadToken(c)
			if err != nil {
				return err
			}
			trusted, err := router.ParseTrustedProxies(c.String("trusted-proxies"))
			if err != nil {
				return fmt.Errorf("--trusted-proxies: %w", err)
			}
			var def *geo.Point
			if s := c.String("default-location"); s != "" {
				p, err := router.ParseLocation(s)
				if err != nil {
					return fmt.Errorf("--default-location: %w", err)
				}
				def = &p
			}
			countries, err := parseCountryLocations(c.String("country-locations"))
			if err != nil {
				return fmt.Errorf("--country-locations: %w", err)
			}
			var edgeCAs *x509.CertPool
			if f := c.String("edge-ca"); f != "" {
				pemBytes, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--edge-ca: %w", err)
				}
				edgeCAs = x509.NewCertPool()
				if !edgeCAs.AppendCertsFromPEM(pemBytes) {
					return fmt.Errorf("--edge-ca %s: no PEM certificate in it", f)
				}
			}
			pairs, err := tlsPairs(c)
			if err != nil {
				return err
			}
			if c.String("dns") != "" && c.String("dns-zone") == "" {
				return fmt.Errorf("--dns-zone: required with --dns")
			}
			var dnsNames []string
			for n := range strings.SplitSeq(c.String("dns-names"), ",") {
				if n = strings.TrimSpace(n); n != "" {
					dnsNames = append(dnsNames, n)
				}
			}
			dnsNS, err := router.ParseNameAddrs(c.String("dns-ns"))
			if err != nil {
				return fmt.Errorf("--dns-ns: %w", err)
			}
			edgeAddrs, err := router.ParseEdgeAddrs(c.String("dns-edge-addrs"))
			if err != nil {
				return fmt.Errorf("--dns-edge-addrs: %w", err)
			}
			reg := prometheus.NewRegistry()
			var certs *tlscert.Store
			var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
			if len(pairs) > 0 {
				if certs, err = loadTLS(pairs, c.Bool("tls-strict-sni"), reg, "geocdn_router"); err != nil {
					return err
				}
				getCert = certs.GetCertificate
			}
			r, err := router.New(router.Config{
				HTTPAddr: c.String("http"), OriginAdmin: c.String("origin-admin"), Token: tok,
				GeoIPPath: c.String("geoip"), MaxAccuracyKm: c.Int("max-accuracy"),
				DefaultLocation: def, CountryLocations: countries,
				TrustedProxies: trusted, ClientIPHeader: c.String("client-ip-header"),
				Equivalence: c.Duration("equivalence"), MembershipInterval: c.Duration("membership-interval"),
				ProbeInterval: c.Duration("probe-interval"), ProbeTimeout: c.Duration("probe-timeout"),
				Logger:      slog.Default(),
				Certificate: getCert, HTTPSAddr: c.String("https"), EdgeRootCAs: edgeCAs, Registry: reg,
				GeoIPReloadInterval: geoipInterval(c.Duration("geoip-reload-interval")),
				DNSAddr:             c.String("dns"), DNSZone: c.String("dns-zone"), DNSNames: dnsNames,
				DNSTTL: c.Duration("dns-ttl"), DNSNameservers: dnsNS, DNSEdgeAddrs: edgeAddrs,
			})
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			if certs != nil {
				reloadTLS(ctx, certs, c.Duration("tls-reload-interval"))
			}
			onSIGHUP(ctx, func() {
				if err := r.ReloadGeoIP(); err == nil {
					slog.Info("geoip database reloaded on SIGHUP")
				}
			})
			return ready.Serve(ctx, c.String("ready-file"), ready.File{Role: "router", HTTP: addrString(r.HTTPAddr()), HTTPS: addrString(r.HTTPSAddr()), DNS: addrString(r.DNSAddr())}, r.Run)
		},
	}
}

// geoipInterval maps the flag's "0 or negative: never" to router.Config's
// (whose zero is the default).
func geoipInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// parseCountryLocations parses "US=39.83,-98.58;CA=43.65,-79.38".
func parseCountryLocations(s string) (map[string]geo.Point, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]geo.Point{}
	for f := range strings.SplitSeq(s, ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		cc, loc, ok := strings.Cut(f, "=")
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if !ok || len(cc) != 2 {
			return nil, fmt.Errorf("%q: want CC=LAT,LON with a two-letter country code", f)
		}
		p, err := router.ParseLocation(loc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cc, err)
		}
		out[cc] = p
	}
	return out, nil
}
