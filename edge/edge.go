// Package edge is geocdn's edge cache: it follows the origin's replication
// log over QUIC, stores pushed replicas on disk behind a Ristretto hot tier,
// fills misses from the origin with request collapsing, and serves HTTP
// clients with RFC 9110/9111 semantics.
//
// Key invariant: the edge serves a version only if its own log view names it
// as current for the key; the hot tier is an accelerator keyed by digest and
// is never the only copy the edge relies on.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/rttstat"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/invalidation"
	"github.com/geocdn/geocdn/placement"
)

// Config configures an edge. Zero values take the defaults named in each
// field's comment.
type Config struct {
	// ID is the edge's id, the <id> of its certificate's URI SAN
	// geocdn://edge/<id>. Required.
	ID string
	// Region, Lat, Lon and FaultDomain describe where the edge is; the
	// origin and router use them. FaultDomain defaults to Region.
	Region      string
	Lat, Lon    float64
	FaultDomain string
	// PublicURL is the URL clients are sent to; default
	// https://<HTTPS addr> when the edge serves TLS (unless
	// AdvertiseHTTP), else http://<HTTP addr>.
	PublicURL     string
	AdvertiseHTTP bool

	// Origins are the QUIC addresses of every origin: one, or each node of
	// a raft cluster of origins, of which only the leader serves the log
	// (a follower also serves fills by digest: see fillconn.go). A
	// follower refuses the edge's session naming the leader, which the
	// edge dials next; the edge dials the origin of its last session first, then the
	// others in this order (see connectLoop). At least one of Origins and
	// Origin is required; no entry may be nil or listed twice.
	Origins []net.Addr
	// Origin is the single-origin form of Origins, for callers from before
	// origin clusters: when set, it counts as listed first in Origins
	// (where Origins does not list it already). Default none.
	Origin net.Addr
	// PacketConn, when set, carries QUIC instead of a UDP socket bound to
	// an ephemeral loopback port (a simulated network in tests).
	PacketConn net.PacketConn

	// HTTPAddr is the client listener (default "127.0.0.1:8081"); ignored
	// when HTTPListener is set.
	HTTPAddr     string
	HTTPListener net.Listener
	// Certificate, when set, serves clients over TLS too: HTTPS (HTTP/1.1
	// and HTTP/2) on HTTPSAddr or HTTPSListener, HTTP/3 on the same port
	// over UDP (HTTP3Conn). It chooses each handshake's certificate
	// (tls.Config.GetCertificate; see internal/tlscert).
	Certificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HTTPSAddr is the TLS listener's address (default
	// "127.0.0.1:8443"); ignored when HTTPSListener is set.
	HTTPSAddr     string
	HTTPSListener net.Listener
	// HTTP3Conn carries HTTP/3; default a UDP socket on the HTTPS
	// listener's address and port. DisableHTTP3 serves none (and sends
	// no Alt-Svc).
	HTTP3Conn    net.PacketConn
	DisableHTTP3 bool
	// AdminAddr serves /metrics and /healthz for operators; empty with no
	// AdminListener means no admin listener.
	AdminAddr     string
	AdminListener net.Listener

	// DataDir holds the replica store. Required.
	DataDir string
	// CA and Cert are the cluster CA and this edge's certificate. Required.
	CA   *pki.CA
	Cert tls.Certificate

	// CacheSize is the RAM hot tier's capacity in bytes. Default 256 MiB.
	CacheSize int64
	// HotMaxObject is the largest object the hot tier takes; larger ones
	// are served from disk with sendfile. Default 16 KiB: above it,
	// sendfile from the page cache costs less than a copy from RAM
	// (README § Benchmarks).
	HotMaxObject int64
	// DiskBytes caps the on-disk store; 0 (default) means no cap beyond
	// the filesystem's.
	DiskBytes int64
	// FillTimeout bounds one fill from the origin. Default 30s.
	FillTimeout time.Duration
	// HonorClientNoCache lets clients' Cache-Control: no-cache, max-age,
	// min-fresh and max-stale (and Pragma: no-cache) take effect on
	// pulled objects. Off by default, as at most CDNs: a client must not
	// be able to send every request through to the upstream.
	HonorClientNoCache bool
	// DrainDelay is how long the edge reports unhealthy on shutdown before
	// it stops accepting connections, so routers move clients away first.
	// Default 0.
	DrainDelay time.Duration
	// ResyncInterval is how often the edge runs anti-entropy with the
	// origin, jittered by ±20%. Default 10m.
	ResyncInterval time.Duration
	// ScrubRate bounds, in bytes per second, how fast the background
	// scrubber re-reads stored blobs to check them against their digests
	// (a corrupt one is quarantined and filled again from the origin).
	// Default 20 MiB/s; must not be negative.
	ScrubRate int64
	// ScrubInterval is how often a scrub pass over every stored blob
	// starts (a pass slower than this is followed by the next at once;
	// the first starts with Run). Default 24h; must not be negative.
	ScrubInterval time.Duration
	// MaxConns caps the open client connections, so that a flood of
	// them costs a cheap refusal each rather than a goroutine, buffers and
	// a descriptor. Default 10000 (DefaultMaxConns), which should stay
	// below the process's descriptor limit; negative means no cap. Beyond
	// it a connection gets a 503 with Retry-After and is closed
	// (h1.Server.MaxConns).
	MaxConns int

	// Clock defaults to the real clock.
	Clock clock.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the edge's metrics; default a fresh registry.
	Registry *prometheus.Registry
}

// DefaultConfig returns a Config with every fixed default filled in; the
// caller still sets ID, Region, Lat, Lon, Origins (or Origin), DataDir, CA
// and Cert.
// FaultDomain and PublicURL default to values derived from others.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:       "127.0.0.1:8081",
		HTTPSAddr:      "127.0.0.1:8443",
		CacheSize:      256 << 20,
		HotMaxObject:   defaultHotMaxObject,
		FillTimeout:    30 * time.Second,
		MaxConns:       DefaultMaxConns,
		ResyncInterval: 10 * time.Minute,
		ScrubRate:      scrub.DefaultRate,
		ScrubInterval:  scrub.DefaultInterval,
	}
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.FaultDomain == "" {
		c.FaultDomain = c.Region
	}
	c.Origins = c.originList()
	if c.ResyncInterval == 0 {
		c.ResyncInterval = d.ResyncInterval
	}
	if c.ScrubRate == 0 {
		c.ScrubRate = d.ScrubRate
	}
	if c.ScrubInterval == 0 {
		c.ScrubInterval = d.ScrubInterval
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = d.HTTPAddr
	}
	if c.HTTPSAddr == "" {
		c.HTTPSAddr = d.HTTPSAddr
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.HotMaxObject == 0 {
		c.HotMaxObject = d.HotMaxObject
	}
	if c.FillTimeout == 0 {
		c.FillTimeout = d.FillTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = d.MaxConns
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c
}

// originList is Origin, unless Origins lists it, followed by Origins: a
// new slice, so the caller's is never written through.
func (c Config) originList() []net.Addr {
	list := make([]net.Addr, 0, len(c.Origins)+1)
	if c.Origin != nil && !slices.ContainsFunc(c.Origins, func(a net.Addr) bool { return sameAddr(a, c.Origin) }) {
		list = append(list, c.Origin)
	}
	return append(list, c.Origins...)
}

// sameAddr compares addresses by their text: two origins are the same
// when they would be dialled at the same host:port.
func sameAddr(a, b net.Addr) bool {
	return a != nil && b != nil && a.String() == b.String()
}

// Validate reports every problem with c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if err := pki.ValidID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	for i, a := range c.Origins {
		if a == nil {
			errs = append(errs, fmt.Errorf("origins[%d]: nil address", i))
		}
	}
	origins := c.originList()
	if len(origins) == 0 {
		errs = append(errs, errors.New("origins: at least one required"))
	}
	seen := make(map[string]bool, len(origins))
	for _, a := range origins {
		if a == nil {
			continue
		}
		if k := a.String(); seen[k] {
			errs = append(errs, fmt.Errorf("origins: %s listed twice", k))
		} else {
			seen[k] = true
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir: required"))
	}
	if c.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if len(c.Cert.Certificate) == 0 {
		errs = append(errs, errors.New("certificate: required"))
	}
	if c.Lat < -90 || c.Lat > 90 || c.Lon < -180 || c.Lon > 180 {
		errs = append(errs, fmt.Errorf("coordinates %v,%v out of range", c.Lat, c.Lon))
	}
	if c.ResyncInterval < 0 {
		errs = append(errs, fmt.Errorf("resync interval %v: must be positive", c.ResyncInterval))
	}
	if c.ScrubRate < 0 {
		errs = append(errs, fmt.Errorf("scrub rate: %d bytes/s must not be negative", c.ScrubRate))
	}
	if c.ScrubInterval < 0 {
		errs = append(errs, fmt.Errorf("scrub interval: %v must not be negative", c.ScrubInterval))
	}
	if c.CacheSize < 0 || c.HotMaxObject < 0 || c.DiskBytes < 0 {
		errs = append(errs, errors.New("cache size, hot max object and disk bytes must not be negative"))
	}
	return errors.Join(errs...)
}

// Edge is a running edge node.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	clk     clock.Clock
	store   *store
	metrics *metrics
	// pullNS are the namespaces with an upstream, as the origin's last
	// Welcome named them.
	pullNS atomic.Pointer[map[string]bool]

	udp     net.PacketConn
	ownsUDP bool
	tr      *quic.Transport

	httpLn, adminLn net.Listener
	// httpSrv serves clients: hits from a lean HTTP/1.1 loop, the rest
	// through net/http's parser (internal/h1). adminSrv is net/http.
	httpSrv  *h1.Server
	adminSrv *http.Server
	// tlsSrv serves clients over TLS, when the edge has a certificate.
	tlsSrv *tlsServers

	draining atomic.Bool
	// bg tracks push handlers, plan loads and the scrubber, which touch
	// the store and must end before it closes.
	bg sync.WaitGroup

	// lease is the volume lease and what heartbeat answers say of the
	// origin's log. Its reads take no lock of the edge's; the hit path
	// reads it on every request.
	lease invalidation.Holder

	mu   sync.Mutex
	sess *session
	// fillc is the fill connection to a follower, while there is one
	// (fillconn.go).
	fillc *fillConn
	// plan is the placement plan in force (nil: none applied); planLSN
	// is the LSN of its log entry.
	plan    atomic.Pointer[placement.Plan]
	planLSN uint64
	// logMoved is signalled whenever the watermark moves.
	logMoved broadcast.Signal

	// resyncNow carries the origin's requests for a resync (their ids);
	// resyncSem runs one resync at a time (a channel, so a caller waiting
	// for its turn can give up with its context).
	resyncNow chan uint64
	resyncSem chan struct{}
	// quarantined counts blobs found corrupt and quarantined (by the
	// scrubber, or on a read into the hot tier) since the last resync
	// report.
	quarantined atomic.Uint64
	// scrubber re-hashes the stored blobs in the background (scrub.go).
	scrubber *scrub.Scrubber
	// rtts are the RTTs of client connections per client network,
	// reported to the origin for routers (rttreport.go).
	rtts *rttstat.Table
}

// New opens the store and binds the listeners; Run serves them.
func New(cfg Config) (*Edge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge config: %w", err)
	}
	e := &Edge{cfg: cfg, log: cfg.Logger.With("role", "edge", "id", cfg.ID), clk: cfg.Clock, resyncNow: make(chan uint64, 16), resyncSem: make(chan struct{}, 1),
		rtts: rttstat.New(rttstat.Options{MaxNetworks: rttNetworks, HalfLife: rttHalfLife})}
	var err error
	e.store, err = openStore(storeConfig{
		Dir: cfg.DataDir, HotBytes: cfg.CacheSize, HotMaxObject: cfg.HotMaxObject,
		DiskBytes: cfg.DiskBytes, Logger: e.log, Annotate: annotateHeaders,
		Quarantined: e.blobQuarantined,
	})
	if err != nil {
		return nil, err
	}
	e.metrics = newMetrics(cfg.Registry)
	if e.scrubber, err = e.store.newScrubber(cfg.ScrubRate, cfg.ScrubInterval, e.clk, e.log); err != nil {
		e.store.close()
		return nil, err
	}
	registerScrubMetrics(cfg.Registry, e.scrubber)
	if obj, ok := e.store.lookup(placement.PlanNamespace, placement.PlanKey); ok && obj.Present {
		if err := e.loadPlan(obj.Entry); err != nil {
			e.log.Error("placement plan on disk", "err", err)
		}
	}
	if err := e.listen(); err != nil {
		e.closeListeners()
		e.store.close()
		return nil, err
	}
	return e, nil
}

func (e *Edge) listen() error {
	var err error
	e.udp = e.cfg.PacketConn
	if e.udp == nil {
		e.udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("quic socket: %w", err)
		}
		e.ownsUDP = true
	}
	e.tr = &quic.Transport{Conn: e.udp}
	e.httpLn = e.cfg.HTTPListener
	if e.httpLn == nil {
		if e.httpLn, err = net.Listen("tcp", e.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen http %s: %w", e.cfg.HTTPAddr, err)
		}
	}
	var tlsLn net.Listener
	var h3 net.PacketConn
	ownsH3 := false
	if e.cfg.Certificate != nil {
		if tlsLn, h3, ownsH3, err = e.listenTLS(); err != nil {
			e.httpLn.Close()
			return err
		}
	}
	if e.cfg.PublicURL == "" {
		e.cfg.PublicURL = "http://" + e.httpLn.Addr().String()
		if tlsLn != nil && !e.cfg.AdvertiseHTTP {
			e.cfg.PublicURL = "https://" + tlsLn.Addr().String()
		}
	}
	altSvc := ""
	if h3 != nil {
		// The port clients reach HTTP/3 on: the UDP socket's, which is the
		// TLS listener's unless both were given.
		if _, port, err := net.SplitHostPort(h3.LocalAddr().String()); err == nil {
			if p, err := strconv.Atoi(port); err == nil {
				altSvc = altSvcValue(p)
			}
		}
	}
	h := newHandler(handlerConfig{
		Store: e.store, Fill: e, View: e, Clock: e.clk.Now, Metrics: e.metrics,
		Logger: e.log, Healthy: e.Healthy, FillTimeout: e.cfg.FillTimeout,
		Pulls: e.pulls, Pull: e, HonorClientNoCache: e.cfg.HonorClientNoCache,
		AltSvc: altSvc,
	})
	if tlsLn != nil {
		e.tlsSrv = newTLSServers(rttListener{tlsLn, e.clientRTT}, h3, h, tlsConfig(e.cfg.Certificate), max(e.cfg.MaxConns, 0), e.log)
		e.tlsSrv.ownsUDP = ownsH3
		registerConnMetrics(e.cfg.Registry, e.tlsSrv.h1, "https")
		if e.tlsSrv.h3 != nil {
			e.tlsSrv.h3.ConnContext = e.h3ConnContext
		}
	}
	e.httpSrv = clientServer(h, max(e.cfg.MaxConns, 0), e.log)

	registerConnMetrics(e.cfg.Registry, e.httpSrv, "http")
	e.adminLn = e.cfg.AdminListener
	if e.adminLn == nil && e.cfg.AdminAddr != "" {
		if e.adminLn, err = net.Listen("tcp", e.cfg.AdminAddr); err != nil {
			return fmt.Errorf("listen admin %s: %w", e.cfg.AdminAddr, err)
		}
	}
	if e.adminLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(e.cfg.Registry, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			if !e.Healthy() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ok\n"))
		})
		e.adminSrv = newHTTPServer(mux, e.log)
	}
	return nil
}

// clientServer is the HTTP/1.1 server of a client listener, plain or TLS:
// hits from a lean loop, the rest through net/http's parser. A large body
// gets writeTimeout for each minClientRate × writeTimeout bytes the client
// takes.
func clientServer(h *handler, maxConns int, log *slog.Logger) *h1.Server {
	return &h1.Server{
		Handler:           h,
		Fast:              h.serveFast,
		SlowHeaders:       SlowHeaders,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		MinWriteRate:      minClientRate,
		MaxConns:          maxConns,
		Logger:            log,
	}
}

// Limits of both HTTP listeners.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 32 << 10
	// A large body may take longer to reach a slow client than
	// writeTimeout allows: the client server sends it in pieces of
	// minClientRate × writeTimeout bytes (3.75 MiB), each with its own
	// writeTimeout, so a client must keep reading at minClientRate on
	// average over every writeTimeout, and one that stops is cut about
	// writeTimeout later.
	minClientRate = 64 << 10 // bytes per second
)

// DefaultMaxConns is Config.MaxConns's default.
const DefaultMaxConns = 10000

// newHTTPServer sets every timeout and a header limit.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// listenTLS binds the TLS listener and, unless HTTP/3 is off, its UDP
// socket; ownsUDP reports a socket the edge made.
func (e *Edge) listenTLS() (ln net.Listener, udp net.PacketConn, ownsUDP bool, err error) {
	ln, udp = e.cfg.HTTPSListener, e.cfg.HTTP3Conn
	switch {
	case ln == nil && (udp != nil || e.cfg.DisableHTTP3):
		if ln, err = net.Listen("tcp", e.cfg.HTTPSAddr); err != nil {
			return nil, nil, false, fmt.Errorf("listen https %s: %w", e.cfg.HTTPSAddr, err)
		}
	case ln == nil:
		if ln, udp, err = listenTLSPair(e.cfg.HTTPSAddr); err != nil {
			return nil, nil, false, err
		}
		ownsUDP = true
	case udp == nil && !e.cfg.DisableHTTP3:
		if udp, err = net.ListenPacket("udp", ln.Addr().String()); err != nil {
			return nil, nil, false, fmt.Errorf("listen http/3 (udp) %s: %w", ln.Addr(), err)
		}
		ownsUDP = true
	}
	if e.cfg.DisableHTTP3 {
		if ownsUDP && udp != nil {
			udp.Close()
		}
		udp, ownsUDP = nil, false
	}
	return ln, udp, ownsUDP, nil
}

// HTTPAddr is the client listener's bound address.
func (e *Edge) HTTPAddr() net.Addr { return e.httpLn.Addr() }

// HTTPSAddr is the TLS listener's bound address (HTTP/3 listens on the
// same port over UDP), or nil without TLS.
func (e *Edge) HTTPSAddr() net.Addr {
	if e.tlsSrv == nil {
		return nil
	}
	return e.tlsSrv.ln.Addr()
}

// HTTP3Addr is the HTTP/3 socket's address, or nil.
func (e *Edge) HTTP3Addr() net.Addr {
	if e.tlsSrv == nil || e.tlsSrv.udp == nil {
		return nil
	}
	return e.tlsSrv.udp.LocalAddr()
}

// AdminAddr is the admin listener's address, or nil.
func (e *Edge) AdminAddr() net.Addr {
	if e.adminLn == nil {
		return nil
	}
	return e.adminLn.Addr()
}

// QUICAddr is the local UDP socket the edge dials the origin from.
func (e *Edge) QUICAddr() net.Addr { return e.udp.LocalAddr() }

// PublicURL is where clients are sent.
func (e *Edge) PublicURL() string { return e.cfg.PublicURL }

// ID is the edge's id.
func (e *Edge) ID() string { return e.cfg.ID }

// Run serves until ctx is cancelled, then drains: it reports unhealthy,
// waits DrainDelay, lets in-flight requests finish and closes.
func (e *Edge) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	serve := func(srv interface{ Serve(net.Listener) error }, ln net.Listener) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}
	go serve(e.httpSrv, rttListener{e.httpLn, e.clientRTT})
	if e.tlsSrv != nil {
		e.tlsSrv.serve(errc)
	}
	if e.adminSrv != nil {
		go serve(e.adminSrv, e.adminLn)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.connectLoop(cctx); err != nil {
			errc <- err
		}
	}()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.scrubber.Run(cctx)
	}()
	e.log.Info("edge serving", "http", e.HTTPAddr().String(), "origins", addrStrings(e.cfg.Origins))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	e.draining.Store(true)
	if e.cfg.DrainDelay > 0 && err == nil {
		t := e.clk.NewTimer(e.cfg.DrainDelay)
		<-t.C()
	}
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	var sw sync.WaitGroup
	sw.Go(func() { e.httpSrv.Shutdown(sctx) })
	if e.tlsSrv != nil {
		sw.Go(func() { e.tlsSrv.shutdown(sctx) })
	}
	sw.Wait()
	if e.adminSrv != nil {
		e.adminSrv.Shutdown(sctx)
	}
	cancel()
	<-done
	e.closeListeners()
	e.bg.Wait()
	e.store.close()
	return err
}

func (e *Edge) closeListeners() {
	if e.tr != nil {
		e.tr.Close()
	}
	if e.ownsUDP && e.udp != nil {
		e.udp.Close()
	}
	if e.httpLn != nil {
		e.httpLn.Close()
	}
	if e.tlsSrv != nil {
		e.tlsSrv.close()
	}
	if e.adminLn != nil {
		e.adminLn.Close()
	}
}

// Healthy reports whether the edge can serve: it holds a valid lease and
// is not draining.
// pulls reports whether ns has an upstream web server (pull-through).
func (e *Edge) pulls(ns string) bool {
	m := e.pullNS.Load()
	return m != nil && (*m)[ns]
}

func (e *Edge) Healthy() bool {
	return !e.draining.Load() && e.leaseValid()
}

// fresh reports whether the local log view may answer for keys it does not
// know: connected, the lease is valid and the log has caught up with the
// origin's LSN as of the last heartbeat (invalidation.Holder.Fresh).
func (e *Edge) fresh() bool {
	e.mu.Lock()
	connected := e.sess != nil
	e.mu.Unlock()
	return connected && e.lease.Fresh(e.clk.Now(), e.store.watermark())
}

// leaseValid reports whether the edge's volume lease is valid now.
func (e *Edge) leaseValid() bool { return e.lease.Valid(e.clk.Now()) }

// heldLease is the lease as the last counted renewal left it: one atomic
// load, for the hit path.
func (e *Edge) heldLease() invalidation.HeldLease { return e.lease.Lease() }

// sessionLogWait bounds how long a session read waits for the log to reach
// the client's LSN before asking the origin instead.
const sessionLogWait = 500 * time.Millisecond

// waitLog waits up to sessionLogWait for the log to reach lsn.
func (e *Edge) waitLog(ctx context.Context, lsn uint64) bool {
	return e.waitWatermark(ctx, lsn, sessionLogWait)
}

// waitWatermark waits up to d for the log to reach lsn and reports
// whether it has.
func (e *Edge) waitWatermark(ctx context.Context, lsn uint64, d time.Duration) bool {
	t := e.clk.NewTimer(d)
	defer t.Stop()
	for {
		ch := e.logMoved.C()
		if e.store.watermark() >= lsn {
			return true
		}
		select {
		case <-ch:
		case <-t.C():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Watermark is the highest LSN this edge has applied.
func (e *Edge) Watermark() uint64 { return e.store.watermark() }
