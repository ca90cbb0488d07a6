package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/rttstat"
	"github.com/geocdn/geocdn/placement"
)

// Router is a running router. Create it with New, serve with Run.
type Router struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	loc     Locator
	db      *geoDB // opened by New from GeoIPPath, reloaded when it changes
	locs    *locCache
	table   atomic.Pointer[Table]
	members *membership
	holders func(namespace, key string) []string
	plan    atomic.Pointer[placement.Plan] // followed from the origin; nil: unknown
	metrics *metrics
	nsFor   func(string) string
	trusted []netip.Prefix

	httpLn net.Listener
	// tlsLn and tlsSrv serve the same API over TLS, when configured.
	tlsLn   net.Listener
	tlsSrv  *http.Server
	httpSrv *http.Server
	// dns is the DNS front end, when configured.
	dns *dnsServer

	closeOnce sync.Once
	closeErr  error
}

// New opens the GeoIP database and binds the HTTP listener (and the DNS
// sockets, when configured); Run serves.
// A Router that is never Run must be Closed.
func New(cfg Config) (*Router, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router config: %w", err)
	}
	r := &Router{
		cfg:     cfg,
		log:     cfg.Logger.With("role", "router"),
		clk:     cfg.Clock,
		loc:     cfg.Locator,
		locs:    newLocCache(cfg.CacheEntries),
		nsFor:   cfg.NamespaceFor,
		trusted: cfg.TrustedProxies,
	}
	r.holders = cfg.Holders
	if r.holders == nil && cfg.PlanInterval > 0 {
		r.holders = r.planHolders
	}
	if r.nsFor == nil {
		r.nsFor = func(string) string { return objkey.DefaultNamespace }
	}
	if r.loc == nil {
		db, err := openGeoDB(cfg.GeoIPPath, geoip.Options{
			MaxAccuracyKm: cfg.MaxAccuracyKm, Default: cfg.DefaultLocation, Countries: cfg.CountryLocations,
		}, r.log, cfg.Registry)
		if err != nil {
			return nil, err
		}
		r.db, r.loc = db, db
	}
	r.table.Store(r.newTable(nil))
	r.metrics = newMetrics(cfg.Registry, r)
	r.members = newMembership(r)
	r.httpLn = cfg.HTTPListener
	if r.httpLn == nil && cfg.HTTPAddr != "-" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("listen http %s: %w", cfg.HTTPAddr, err)
		}
		r.httpLn = ln
	}
	if cfg.Certificate != nil {
		r.tlsLn = cfg.HTTPSListener
		if r.tlsLn == nil {
			ln, err := net.Listen("tcp", cfg.HTTPSAddr)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("listen https %s: %w", cfg.HTTPSAddr, err)
			}
			r.tlsLn = ln
		}
		r.tlsSrv = r.newServer()
		r.tlsSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cfg.Certificate, NextProtos: []string{"h2", "http/1.1"}}
	}
	if r.httpLn != nil {
		r.httpSrv = r.newServer()
	}
	if cfg.dnsEnabled() {
		d, err := newDNSServer(r)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.dns = d
	}
	return r, nil
}

// newServer is the HTTP server of a listener of the router's.
func (r *Router) newServer() *http.Server {
	return &http.Server{
		Handler: r.Handler(),
		// A redirect request is a line and a few headers: anything
		// slower is a client holding a connection for nothing.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Room for a long X-Forwarded-For chain.
		MaxHeaderBytes:               32 << 10,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
}

func (r *Router) newTable(edges []Edge) *Table {
	return NewTable(edges, TableOptions{Equivalence: r.cfg.Equivalence, CacheEntries: r.cfg.CacheEntries})
}

// ReloadGeoIP opens the GeoIP database file again and uses it if it opens
// and verifies (SIGHUP); otherwise the database in use stays, and the
// error says why. Nil error, and nothing done, without a database file.
func (r *Router) ReloadGeoIP() error {
	if r.db == nil {
		return nil
	}
	return r.db.Reload()
}

// HTTPSAddr is the bound address of the TLS server, nil without one.
func (r *Router) HTTPSAddr() net.Addr {
	if r.tlsLn == nil {
		return nil
	}
	return r.tlsLn.Addr()
}

// HTTPAddr is the bound address of the HTTP server, nil without one.
func (r *Router) HTTPAddr() net.Addr {
	if r.httpLn == nil {
		return nil
	}
	return r.httpLn.Addr()
}

// DNSAddr is the bound address of the DNS front end, UDP and TCP alike;
// nil without one.
func (r *Router) DNSAddr() net.Addr {
	if r.dns == nil {
		return nil
	}
	return r.dns.pc.LocalAddr()
}

// Run fetches the edge list, probes edges and serves HTTP (and DNS) until
// ctx is cancelled, then shuts down and closes the Router.
func (r *Router) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	if r.httpSrv != nil {
		go func() {
			if err := r.httpSrv.Serve(r.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("router http: %w", err)
			}
		}()
		r.log.Info("router serving", "http", r.HTTPAddr().String(), "origin", r.cfg.OriginAdmin)
	}
	if r.tlsSrv != nil {
		go func() {
			if err := r.tlsSrv.ServeTLS(r.tlsLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("router https: %w", err)
			}
		}()
		r.log.Info("router serving", "https", r.HTTPSAddr().String())
	}
	if r.dns != nil {
		r.dns.start(errc)
		r.log.Info("router serving", "dns", r.DNSAddr().String(), "zone", r.dns.zone.apex)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.members.run(ctx)
	}()
	if r.db != nil && r.cfg.GeoIPReloadInterval > 0 {
		go r.db.Watch(ctx, r.cfg.GeoIPReloadInterval)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	if r.httpSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := r.httpSrv.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("router http shutdown: %w", serr)
		}
		scancel()
	}
	if r.tlsSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := r.tlsSrv.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("router https shutdown: %w", serr)
		}
		scancel()
	}
	if r.dns != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		if serr := r.dns.shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("router dns shutdown: %w", serr)
		}
		scancel()
	}
	<-done
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// Close releases the listener and the database. Run calls it on return;
// Decide must not be called after it, since the database is unmapped.
func (r *Router) Close() error {
	r.closeOnce.Do(func() {
		for _, ln := range []net.Listener{r.httpLn, r.tlsLn} {
			if ln == nil {
				continue
			}
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) && r.closeErr == nil {
				r.closeErr = err
			}
		}
		if r.dns != nil {
			if err := r.dns.close(); err != nil && r.closeErr == nil {
				r.closeErr = err
			}
		}
	})
	return r.closeErr
}

// Decide picks the edge for client asking for namespace/key (key "" when
// there is none, as for DNS: then the client's network is hashed instead).
// It returns ErrNoEdge when no edge is routable.
func (r *Router) Decide(client netip.Addr, namespace, key string) (Decision, error) {
	return r.decide(client, namespace, key, false)
}

// Explain is Decide with Decision.Candidates filled in.
func (r *Router) Explain(client netip.Addr, namespace, key string) (Decision, error) {
	return r.decide(client, namespace, key, true)
}

func (r *Router) decide(client netip.Addr, ns, key string, explain bool) (Decision, error) {
	return r.decideOn(r.table.Load(), client, ns, key, explain)
}

// decideOn is decide on table t: the DNS front end's leaves out the edges
// it has no address for.
func (r *Router) decideOn(t *Table, client netip.Addr, ns, key string, explain bool) (Decision, error) {
	client = client.Unmap().WithZone("")
	q := Query{Location: r.locate(client), Namespace: ns, Key: key, Explain: explain, Network: rttstat.Network(client)}
	if key == "" {
		q.Affinity = affinity(client)
	}
	if r.holders != nil {
		q.Holders = r.holders(ns, key)
	}
	d, err := t.Decide(q)
	r.metrics.decided(q.Location.Source, err)
	return d, err
}

// locate places client, from the per-network cache when it can.
func (r *Router) locate(client netip.Addr) geoip.Location {
	if l, ok := r.locs.get(client); ok {
		return *l
	}
	l := r.loc.Locate(client)
	r.locs.put(client, &l)
	return l
}

// Routable returns the ids of the edges decisions may name now, sorted.
func (r *Router) Routable() []string { return r.table.Load().Edges() }

// Edges reports what the router knows of every edge the origin listed.
func (r *Router) Edges() []EdgeView { return r.members.view() }

// affinity hashes the client's network (/24, /48), so clients asking
// without a key keep one edge while their neighbours spread.
func affinity(a netip.Addr) uint64 {
	p, err := a.Prefix(affinityBits(a))
	if err != nil {
		return 0
	}
	b := p.Addr().As16()
	return xxhash.Sum64(b[:])
}

// affinityBits is the length of the network affinity hashes.
func affinityBits(a netip.Addr) int {
	if a.Is6() {
		return 48
	}
	return 24
}

// locCache maps client networks to locations. Keys are prefixes at fixed
// levels (/24 and /32 for IPv4, /48, /64 and /128 for IPv6): an answer is
// stored at the coarsest level its database network covers, so addresses
// that share a /24 but not a database network never share an entry.
type locCache struct {
	max int64
	n   atomic.Int64
	m   sync.Map // netip.Prefix → *geoip.Location
}

var (
	levels4 = [...]int{24, 32}
	levels6 = [...]int{48, 64, 128}
)

func newLocCache(max int) *locCache { return &locCache{max: int64(max)} }

func cacheLevels(a netip.Addr) []int {
	if a.Is4() {
		return levels4[:]
	}
	return levels6[:]
}

func (c *locCache) get(a netip.Addr) (*geoip.Location, bool) {
	if c.max <= 0 || !a.IsValid() {
		return nil, false
	}
	for _, bits := range cacheLevels(a) {
		p, _ := a.Prefix(bits)
		if v, ok := c.m.Load(p); ok {
			return v.(*geoip.Location), true
		}
	}
	return nil, false
}

func (c *locCache) put(a netip.Addr, l *geoip.Location) {
	if c.max <= 0 || !a.IsValid() {
		return
	}
	levels := cacheLevels(a)
	bits := levels[len(levels)-1]
	if n := l.Record.Network; n.IsValid() && n.Addr().Is4() == a.Is4() && n.Contains(a) {
		for _, lv := range levels {
			if lv >= n.Bits() {
				bits = lv
				break
			}
		}
	}
	p, _ := a.Prefix(bits)
	if c.n.Add(1) > c.max {
		// Emptying beats tracking recency: a lookup costs about a
		// microsecond and busy networks come back at once.
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(p, l)
}
