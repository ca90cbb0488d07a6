package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/internal/tlscert"
	"github.com/geocdn/geocdn/invalidation"
	"github.com/geocdn/geocdn/origin"
)

var tokenFlags = []cli.Flag{
	&cli.StringFlag{Name: "token-file", Usage: "file holding the admin bearer token", EnvVars: env("token-file")},
	&cli.StringFlag{Name: "token", Usage: "admin bearer token (prefer --token-file outside tests)", EnvVars: env("token")},
}

// loadToken reads the admin token from --token-file or --token.
func loadToken(c *cli.Context) (string, error) {
	if f := c.String("token-file"); f != "" {
		return readToken("--token-file", f)
	}
	if tok := c.String("token"); tok != "" {
		return tok, nil
	}
	return "", errors.New("an admin token is required: --token-file, GEOCDN_TOKEN or --token")
}

// readToken reads a token from the file named by flag.
func readToken(flag, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s %s: file is empty", flag, file)
	}
	return tok, nil
}

var certFlags = []cli.Flag{
	&cli.StringFlag{Name: "ca", Usage: "cluster CA directory (ca.crt; with ca.key, dev only, the node issues its own certificate in memory)", Required: true, EnvVars: env("ca")},
	&cli.StringFlag{Name: "cert", Usage: "this node's certificate (from 'geocdn ca issue')", EnvVars: env("cert")},
	&cli.StringFlag{Name: "key", Usage: "this node's private key", EnvVars: env("key")},
}

// loadNodeCert returns the CA and this node's certificate: from --cert and
// --key, or, when the CA directory holds the CA key (development only),
// issued in memory — never written into the CA directory.
func loadNodeCert(c *cli.Context, id pki.Identity) (*pki.CA, tls.Certificate, error) {
	ca, err := pki.LoadCA(c.String("ca"))
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("--ca: %w", err)
	}
	if c.String("cert") != "" || c.String("key") != "" {
		cert, err := pki.LoadCertificate(c.String("cert"), c.String("key"))
		if err != nil {
			return nil, tls.Certificate{}, fmt.Errorf("--cert/--key: %w", err)
		}
		return ca, cert, nil
	}
	if ca.Key == nil {
		return nil, tls.Certificate{}, fmt.Errorf("--ca %s has no ca.key to issue a certificate with; pass --cert and --key from `geocdn ca issue`", c.String("ca"))
	}
	cert, err := ca.Issue(id, time.Now(), 30*24*time.Hour)
	return ca, cert, err
}

// sizeFlag parses a byte size like "256MiB" or "5GB".
func sizeFlag(c *cli.Context, name string) (int64, error) {
	s := c.String(name)
	if s == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("--%s %q: %w", name, s, err)
	}
	return int64(n), nil
}

// rateFlag parses a byte rate like "20MiB/s" or "20MiB" (per second).
func rateFlag(c *cli.Context, name string) (int64, error) {
	s := strings.TrimSpace(c.String(name))
	n, err := humanize.ParseBytes(strings.TrimSuffix(s, "/s"))
	if err != nil {
		return 0, fmt.Errorf("--%s %q: want bytes per second like 20MiB/s: %w", name, s, err)
	}
	return int64(n), nil
}

// readyFileFlag is --ready-file of every command that serves.
func readyFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "ready-file", EnvVars: env("ready-file"), Usage: "once serving, write JSON naming the role, id, " +
		"pid and every bound address (host:port) to this file, atomically (temp file and rename); removed on a clean exit. " +
		"Bind port 0 and read the ports from here"}
}

// addrString is a's host:port, "" for no address.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func originCommand() *cli.Command {
	d := origin.DefaultConfig()
	flags := fromConfigFile(append(append([]cli.Flag{
		&cli.StringFlag{Name: "id", Value: d.ID, Usage: "origin id (certificate identity geocdn://origin/<id>)", EnvVars: env("id")},
		&cli.StringFlag{Name: "data", Usage: "data directory", Required: true, EnvVars: env("data")},
		&cli.StringFlag{Name: "http", Value: d.HTTPAddr, Usage: "admin API listen address", EnvVars: env("http")},
		&cli.StringFlag{Name: "quic", Value: d.QUICAddr, Usage: "QUIC listen address for edges", EnvVars: env("quic")},
		&cli.StringFlag{Name: "max-object-size", Value: "5GiB", Usage: "largest body a publish may carry", EnvVars: env("max-object-size")},
		&cli.DurationFlag{Name: "lease", Value: d.LeaseTerm, EnvVars: env("lease"), Usage: fmt.Sprintf(
			"edge lease term; an edge treats its lease as over ρ·term + %v early (drift bound ρ = %g), counted from when it sent the renewal",
			invalidation.MarginBase, invalidation.DriftBound)},
		&cli.IntFlag{Name: "replicas", Usage: "push each object to this many edges (rendezvous hashing); 0 = every edge", EnvVars: env("replicas")},
		&cli.DurationFlag{Name: "publish-timeout", Value: d.PublishTimeout, Usage: "how long a publish with w>0 waits for edges", EnvVars: env("publish-timeout")},
		&cli.StringFlag{Name: "metrics-token-file", Usage: "file holding a bearer token that GET /metrics then requires (the admin token works there too); without it /metrics is public", EnvVars: env("metrics-token-file")},
		&cli.StringFlag{Name: "metrics-token", Usage: "as --metrics-token-file, given directly (prefer the file outside tests)", EnvVars: env("metrics-token")},
		&cli.StringFlag{Name: "scrub-rate", Value: humanize.IBytes(uint64(d.ScrubRate)) + "/s", EnvVars: env("scrub-rate"),
			Usage: "bytes per second the background scrubber may read to re-check blobs against their digests"},
		&cli.DurationFlag{Name: "scrub-interval", Value: d.ScrubInterval, EnvVars: env("scrub-interval"),
			Usage: "how often a scrub pass over every blob starts (a slower pass is followed by the next at once)"},
		&cli.StringFlag{Name: "log-retention", Value: d.LogRetention.String(), EnvVars: env("log-retention"),
			Usage: "how much of the replication log to keep: a count of entries (1000000) or a duration (168h); edges further behind catch up by snapshot"},
		&cli.DurationFlag{Name: "reassign-after", Value: d.ReassignAfter, EnvVars: env("reassign-after"),
			Usage: "treat an edge whose lease has been expired this long as lost and place the replicas the placement plan gives it on other edges until it returns; 0 = never"},
		&cli.StringFlag{Name: "raft", EnvVars: env("raft"), Usage: "TCP address of this origin's cluster port (raft, content and forwarded " +
			"admin requests between origins, mutually authenticated by the CA); without it the origin is a cluster of one"},
		&cli.StringSliceFlag{Name: "peers", EnvVars: env("peers"), Usage: "the members of a new cluster, this origin included, " +
			"as id=host:port of their --raft, comma-separated (o1=10.0.0.1:7001,o2=10.0.0.2:7001,o3=10.0.0.3:7001); used only on a data " +
			"directory without raft state"},
		&cli.StringFlag{Name: "join", EnvVars: env("join"), Usage: "admin URL of any member of an existing cluster, which this origin " +
			"(with --raft) asks to add it; without --peers or --join, an origin with --raft starts a cluster of one that others may join"},
		&cli.BoolFlag{Name: "group-commit", Value: true, EnvVars: env("group-commit"), Usage: "share log writes and fsyncs among " +
			"concurrent writes; false makes each write pay its own, for measuring what group commit saves"},
		&cli.DurationFlag{Name: "raft-timeout", Value: time.Second, EnvVars: env("raft-timeout"),
			Usage: "raft heartbeat and election timeout of a cluster of several origins; edges find a new leader within about two"},
		&cli.StringSliceFlag{Name: "upstream", EnvVars: env("upstream"), Usage: "pull-through: NAMESPACE=URL of the web server " +
			"whose pages the namespace serves (https://www.example.com), repeatable, one per namespace; a key not published is " +
			"fetched from it once, stored by its Cache-Control (RFC 9111) and replicated. Give every origin of a cluster the same"},
		&cli.StringSliceFlag{Name: "upstream-mode", EnvVars: env("upstream-mode"), Usage: "NAMESPACE=pull refuses publishes to " +
			"a namespace with an upstream (every object comes from it); NAMESPACE=mixed (the default) takes them, and a published key wins"},
		&cli.DurationFlag{Name: "upstream-connect-timeout", Value: 5 * time.Second, EnvVars: env("upstream-connect-timeout"),
			Usage: "bound on connecting to an upstream, TLS handshake included"},
		&cli.DurationFlag{Name: "upstream-first-byte-timeout", Value: 15 * time.Second, EnvVars: env("upstream-first-byte-timeout"),
			Usage: "bound on waiting for an upstream's response head; beyond it clients get 504"},
		&cli.DurationFlag{Name: "upstream-timeout", Value: time.Minute, EnvVars: env("upstream-timeout"),
			Usage: "bound on a whole fetch from an upstream, body included"},
		readyFileFlag(),
	}, certFlags...), tokenFlags...))
	return &cli.Command{
		Name:  "origin",
		Usage: "run an origin node",
		Flags: append(flags, &cli.StringFlag{Name: "config", EnvVars: env("config"), Usage: "YAML file of flag values by flag name " +
			"(upstream: [default=https://www.example.com], upstream-timeout: 30s, lease: 2s, ...); the command line and the " +
			"environment override it"}),
		Before:      altsrc.InitInputSourceWithContext(flags, configSource),
		Subcommands: []*cli.Command{originAddCommand(), originRemoveCommand()},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return fmt.Errorf("geocdn origin takes no arguments (got %q); did you mean geocdn origin add or remove?", c.Args().First())
			}
			tok, err := loadToken(c)
			if err != nil {
				return err
			}
			peers, err := parsePeers(c.StringSlice("peers"))
			if err != nil {
				return err
			}
			scrubRate, err := rateFlag(c, "scrub-rate")
			if err != nil {
				return err
			}
			retention, err := parseRetention(c.String("log-retention"))
			if err != nil {
				return err
			}
			ca, cert, err := loadNodeCert(c, pki.Identity{Role: pki.RoleOrigin, ID: c.String("id")})
			if err != nil {
				return err
			}
			maxSize, err := sizeFlag(c, "max-object-size")
			if err != nil {
				return err
			}
			reassign := c.Duration("reassign-after")
			switch {
			case reassign < 0:
				return fmt.Errorf("--reassign-after %v: must not be negative (0 turns reassignment off)", reassign)
			case reassign == 0:
				reassign = -1 // origin.Config: negative is off
			}
			ups, err := parseUpstreams(c.StringSlice("upstream"), c.StringSlice("upstream-mode"))
			if err != nil {
				return err
			}
			metricsTok := c.String("metrics-token")
			if f := c.String("metrics-token-file"); f != "" {
				if metricsTok, err = readToken("--metrics-token-file", f); err != nil {
					return err
				}
			}
			o, err := origin.New(origin.Config{
				ID: c.String("id"), DataDir: c.String("data"), HTTPAddr: c.String("http"), QUICAddr: c.String("quic"),
				CA: ca, Cert: cert, Token: tok, MetricsToken: metricsTok, MaxObjectSize: maxSize, LeaseTerm: c.Duration("lease"),
				Replicas: c.Int("replicas"), PublishTimeout: c.Duration("publish-timeout"),
				ScrubRate: scrubRate, ScrubInterval: c.Duration("scrub-interval"), LogRetention: retention,
				ReassignAfter: reassign, Logger: slog.Default(),
				RaftAddr: c.String("raft"), Peers: peers, Join: c.String("join"), RaftTimeout: c.Duration("raft-timeout"),
				NoGroupCommit: !c.Bool("group-commit"),
				Upstreams:     ups,
				UpstreamTimeouts: origin.UpstreamTimeouts{
					Connect: c.Duration("upstream-connect-timeout"), FirstByte: c.Duration("upstream-first-byte-timeout"),
					Total: c.Duration("upstream-timeout"),
				},
			})
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return ready.Serve(ctx, c.String("ready-file"), ready.File{
				Role: "origin", ID: c.String("id"), HTTP: o.HTTPAddr().String(), QUIC: o.QUICAddr().String(),
				Raft: addrString(o.RaftAddr()),
			}, o.Run)
		},
	}
}

// configSource reads --config, when given, as a YAML input source whose
// keys are flag names; without it, flags come from the command line and
// the environment alone.
func configSource(c *cli.Context) (altsrc.InputSourceContext, error) {
	path := c.String("config")
	if path == "" {
		return &altsrc.MapInputSource{}, nil
	}
	src, err := altsrc.NewYamlSourceFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	return src, nil
}

// fromConfigFile makes each flag one a --config file may set too.
func fromConfigFile(flags []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, len(flags))
	for i, f := range flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			out[i] = altsrc.NewStringFlag(f)
		case *cli.StringSliceFlag:
			out[i] = altsrc.NewStringSliceFlag(f)
		case *cli.DurationFlag:
			out[i] = altsrc.NewDurationFlag(f)
		case *cli.IntFlag:
			out[i] = altsrc.NewIntFlag(f)
		case *cli.BoolFlag:
			out[i] = altsrc.NewBoolFlag(f)
		case *cli.Float64Flag:
			out[i] = altsrc.NewFloat64Flag(f)
		default:
			out[i] = f
		}
	}
	return out
}

// parseUpstreams reads --upstream (NAMESPACE=URL) and --upstream-mode
// (NAMESPACE=pull|mixed); a mode for a namespace without an upstream is
// an error, as is a second upstream for one namespace.
func parseUpstreams(upstreams, modes []string) ([]origin.Upstream, error) {
	var ups []origin.Upstream
	at := map[string]int{}
	for _, s := range upstreams {
		up, err := origin.ParseUpstream(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--upstream: %w", err)
		}
		if _, dup := at[up.Namespace]; dup {
			return nil, fmt.Errorf("--upstream %q: namespace %q already has an upstream", s, up.Namespace)
		}
		at[up.Namespace] = len(ups)
		ups = append(ups, up)
	}
	for _, s := range modes {
		ns, m, err := origin.ParseUpstreamMode(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--upstream-mode: %w", err)
		}
		i, ok := at[ns]
		if !ok {
			return nil, fmt.Errorf("--upstream-mode %q: namespace %q has no --upstream", s, ns)
		}
		ups[i].Mode = m
	}
	return ups, nil
}

// parsePeers reads --peers: id=host:port entries.
func parsePeers(entries []string) ([]origin.Peer, error) {
	var peers []origin.Peer
	for _, e := range entries {
		id, addr, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers %q: want id=host:port", e)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("--peers %q: %w", e, err)
		}
		peers = append(peers, origin.Peer{ID: id, Raft: addr})
	}
	return peers, nil
}

// parseRetention reads --log-retention: a count of entries or a duration.
func parseRetention(v string) (origin.LogRetention, error) {
	if n, err := strconv.ParseUint(strings.ReplaceAll(v, "_", ""), 10, 64); err == nil && n > 0 {
		return origin.LogRetention{Entries: n}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return origin.LogRetention{Age: d}, nil
	}
	return origin.LogRetention{}, fmt.Errorf("--log-retention %q: want a positive count of entries (1000000) or a duration (168h)", v)
}

// originsFlag is geocdn edge's --origin: every origin's QUIC address.
func originsFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "origin", Required: true, EnvVars: env("origin"), Usage: "QUIC address host:port of the origin; " +
		"of a cluster of origins, every node's, comma-separated or the flag repeated (--origin a:7443,b:7443 --origin c:7443). " +
		"Only the cluster's leader serves edges: the edge dials the origin it last had a session with first, then the others " +
		"in order, and follows a follower's pointer to the leader"}
}

// parseOrigins resolves --origin's entries as UDP addresses.
func parseOrigins(entries []string) ([]net.Addr, error) {
	if len(entries) == 0 {
		return nil, errors.New("--origin: at least one origin address is required")
	}
	addrs := make([]net.Addr, 0, len(entries))
	seen := make(map[string]string, len(entries))
	for i, v := range entries {
		if v == "" {
			return nil, fmt.Errorf("--origin: entry %d of %d is empty; want host:port", i+1, len(entries))
		}
		a, err := net.ResolveUDPAddr("udp", v)
		if err != nil {
			return nil, fmt.Errorf("--origin %q: %w", v, err)
		}
		if prev, dup := seen[a.String()]; dup {
			return nil, fmt.Errorf("--origin %q: the same address as %q", v, prev)
		}
		seen[a.String()] = v
		addrs = append(addrs, a)
	}
	return addrs, nil
}

func edgeCommand() *cli.Command {
	d := edge.DefaultConfig()
	return &cli.Command{
		Name:  "edge",
		Usage: "run an edge cache",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "id", Usage: "edge id (certificate identity geocdn://edge/<id>)", Required: true, EnvVars: env("id")},
			&cli.StringFlag{Name: "region", Usage: "region name", Required: true, EnvVars: env("region")},
			&cli.Float64Flag{Name: "lat", Usage: "latitude", Required: true, EnvVars: env("lat")},
			&cli.Float64Flag{Name: "lon", Usage: "longitude", Required: true, EnvVars: env("lon")},
			&cli.StringFlag{Name: "fault-domain", Usage: "fault domain (default: the region)", EnvVars: env("fault-domain")},
			originsFlag(),
			&cli.StringFlag{Name: "http", Usage: "client HTTP listen address", Required: true, EnvVars: env("http")},
			&cli.StringFlag{Name: "admin", Usage: "admin listen address for /metrics and /healthz", EnvVars: env("admin")},
			&cli.StringFlag{Name: "https", Value: d.HTTPSAddr, EnvVars: env("https"),
				Usage: "client HTTPS listen address (HTTP/1.1 and HTTP/2; HTTP/3 on the same port over UDP), served when --tls-cert is given"},
			&cli.BoolFlag{Name: "http3", Value: true, EnvVars: env("http3"), Usage: "serve HTTP/3 beside HTTPS and advertise it with Alt-Svc"},
			&cli.StringFlag{Name: "public-url", Usage: "URL clients are sent to (default https://<https addr> with TLS, else http://<http addr>)", EnvVars: env("public-url")},
			&cli.StringFlag{Name: "public-scheme", Value: "https", EnvVars: env("public-scheme"),
				Usage: "with TLS and no --public-url, which listener the public URL names: https, or http to keep sending clients to plain HTTP"},
			&cli.StringFlag{Name: "data", Usage: "data directory", Required: true, EnvVars: env("data")},
			&cli.StringFlag{Name: "cache-size", Value: humanize.IBytes(uint64(d.CacheSize)), Usage: "RAM hot tier capacity", EnvVars: env("cache-size")},
			&cli.StringFlag{Name: "hot-max-object", Value: humanize.IBytes(uint64(d.HotMaxObject)), Usage: "largest object the RAM hot tier takes; larger ones are sent from the disk store (the kernel's page cache) with sendfile", EnvVars: env("hot-max-object")},
			&cli.StringFlag{Name: "disk-size", Usage: "cap on the on-disk store (default: the filesystem's)", EnvVars: env("disk-size")},
			&cli.DurationFlag{Name: "drain-delay", Value: 2 * time.Second, Usage: "on SIGTERM, report unhealthy this long before closing", EnvVars: env("drain-delay")},
			&cli.IntFlag{Name: "max-conns", Value: d.MaxConns, Usage: "most client connections open at once; beyond it a connection gets 503 and is closed (0 means no cap)", EnvVars: env("max-conns")},
			&cli.DurationFlag{Name: "resync-interval", Value: d.ResyncInterval, EnvVars: env("resync-interval"),
				Usage: "how often to run anti-entropy with the origin (jittered by ±20%); `geocdn resync` runs one at once"},
			// Scrubbing: the edge re-reads its stored blobs in the
			// background, at most --scrub-rate, a pass every
			// --scrub-interval, and checks them against their digests. A
			// corrupt blob is quarantined at once: moved to
			// <data>/quarantine/ (the newest 64 kept), never served again,
			// filled from the origin when next wanted, and counted in
			// geocdn_edge_scrub_corrupt_blobs_total and in the next resync
			// report.
			&cli.StringFlag{Name: "scrub-rate", Value: humanize.IBytes(uint64(d.ScrubRate)) + "/s", EnvVars: env("scrub-rate"),
				Usage: "bytes per second the background scrubber may read to re-check stored blobs against their digests"},
			&cli.DurationFlag{Name: "scrub-interval", Value: d.ScrubInterval, EnvVars: env("scrub-interval"),
				Usage: "how often a scrub pass over every stored blob starts (a slower pass is followed by the next at once)"},
			&cli.BoolFlag{Name: "honor-client-no-cache", EnvVars: env("honor-client-no-cache"), Usage: "let clients' Cache-Control " +
				"no-cache, max-age, min-fresh and max-stale (and Pragma: no-cache) take effect on pulled objects; off, as at most CDNs, " +
				"so that no client can send every request through to the upstream"},
			readyFileFlag(),
		}, append(tlsFlags("the client HTTPS and HTTP/3 listener"), certFlags...)...),
		Action: func(c *cli.Context) error {
			maxConns := c.Int("max-conns")
			if maxConns < 0 {
				return fmt.Errorf("--max-conns %d: must not be negative (0 means no cap)", maxConns)
			}
			if maxConns == 0 {
				maxConns = -1 // edge.Config's "no cap"; its zero is the default
			}
			scrubRate, err := rateFlag(c, "scrub-rate")
			if err != nil {
				return err
			}
			if v := c.Duration("scrub-interval"); v < 0 {
				return fmt.Errorf("--scrub-interval %v: must not be negative", v)
			}
			origins, err := parseOrigins(c.StringSlice("origin"))
			if err != nil {
				return err
			}
			ca, cert, err := loadNodeCert(c, pki.Identity{Role: pki.RoleEdge, ID: c.String("id")})
			if err != nil {
				return err
			}
			cacheSize, err := sizeFlag(c, "cache-size")
			if err != nil {
				return err
			}
			diskSize, err := sizeFlag(c, "disk-size")
			if err != nil {
				return err
			}
			hotMax, err := sizeFlag(c, "hot-max-object")
			if err != nil {
				return err
			}
			pairs, err := tlsPairs(c)
			if err != nil {
				return err
			}
			scheme := c.String("public-scheme")
			if scheme != "https" && scheme != "http" {
				return fmt.Errorf("--public-scheme %q: want https or http", scheme)
			}
			reg := prometheus.NewRegistry()
			var certs *tlscert.Store
			var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
			if len(pairs) > 0 {
				if certs, err = loadTLS(pairs, c.Bool("tls-strict-sni"), reg, "geocdn_edge"); err != nil {
					return err
				}
				getCert = certs.GetCertificate
			}
			e, err := edge.New(edge.Config{
				ID: c.String("id"), Region: c.String("region"), Lat: c.Float64("lat"), Lon: c.Float64("lon"),
				FaultDomain: c.String("fault-domain"), Origins: origins, HTTPAddr: c.String("http"),
				AdminAddr: c.String("admin"), PublicURL: c.String("public-url"), DataDir: c.String("data"),
				CA: ca, Cert: cert, CacheSize: cacheSize, HotMaxObject: hotMax, DiskBytes: diskSize, DrainDelay: c.Duration("drain-delay"),
				MaxConns: maxConns, ResyncInterval: c.Duration("resync-interval"),
				ScrubRate: scrubRate, ScrubInterval: c.Duration("scrub-interval"), Logger: slog.Default(),
				HonorClientNoCache: c.Bool("honor-client-no-cache"),
				Certificate:        getCert, HTTPSAddr: c.String("https"), DisableHTTP3: !c.Bool("http3"),
				AdvertiseHTTP: scheme == "http",
				Registry:      reg,
			})
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			if certs != nil {
				reloadTLS(ctx, certs, c.Duration("tls-reload-interval"))
			}
			// Written before the origin answers: an edge serves (and
			// reports unhealthy) while it cannot reach its origin.
			return ready.Serve(ctx, c.String("ready-file"), ready.File{
				Role: "edge", ID: c.String("id"), HTTP: e.HTTPAddr().String(),
				HTTPS: addrString(e.HTTPSAddr()), HTTP3: addrString(e.HTTP3Addr()),
				Admin: addrString(e.AdminAddr()), QUIC: e.QUICAddr().String(),
			}, e.Run)
		},
	}
}
