// Package origin is geocdn's origin node: the durable store of every object
// (content-addressed blobs, catalog and replication log), the admin HTTP API
// publishers and operators use, and the QUIC endpoint edges dial to follow
// the log, receive pushed replicas and fill misses.
//
// Key invariant: a version is durable (blob fsynced, catalog and log entry
// committed) before its LSN is acknowledged to anyone, and the log is
// delivered to every edge in LSN order.
package origin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/clusternet"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
	"github.com/geocdn/geocdn/placement"
)

// Origin is a running origin node. Create it with New, serve with Run.
type Origin struct {
	cfg Config
	log *slog.Logger
	// tokenSum and metricsTokenSum are the sha256 of the admin and the
	// metrics tokens, which authorized compares in constant time.
	tokenSum, metricsTokenSum [32]byte
	clk                       clock.Clock
	store                     *store
	edges                     *registry
	metrics                   *metrics
	acks                      *ackTracker
	// scrubber re-hashes blobs in the background; corrupt lists what it
	// found (see scrub.go).
	scrubber *scrub.Scrubber
	corrupt  corruptList
	// pushBody is a test seam: when set, the bytes of every push are read
	// through it, so tests can damage a transfer on the wire. Never set in
	// production.
	pushBody atomic.Pointer[func(ent wire.LogEntry, blob io.Reader) io.Reader]
	// plan is the placement plan in force, nil until one is applied.
	plan atomic.Pointer[placement.Plan]
	// planLSN is the LSN of the plan object in force.
	planLSN atomic.Uint64
	// recov is replica recovery's state (see recovery.go).
	recov *recovery

	httpLn  net.Listener
	httpSrv *http.Server
	udp     net.PacketConn
	ownsUDP bool
	tr      *quic.Transport
	quicLn  *quic.Listener

	// grantor decides lease renewals, the grace after this process
	// started, and when an entry is settled with the edges told of it.
	grantor *invalidation.Grantor

	// commits is signalled on every commit; acked whenever an edge's
	// acknowledged watermark moves.
	commits broadcast.Signal
	acked   broadcast.Signal

	// stopping closes when the origin shuts down, ending background waits.
	stopping chan struct{}

	// ups are the namespaces' upstreams (pull-through); nil when none.
	ups *upstreams

	// raft replicates the log among the origins (raft.go). leading is set
	// while this origin leads and has applied what came before;
	// leaderChanged is signalled when leadership moves.
	raft          *raftNode
	leading       atomic.Bool
	leaderChanged broadcast.Signal
	peers         peerBook
	// edgesChanged is signalled when an edge announces itself anew, for
	// the leader to tell the other origins (shareEdgesLoop).
	edgesChanged broadcast.Signal
	// cnet is the cluster port (nil for a cluster of one); clusterSrv
	// serves its HTTP and clusterClient speaks to the other origins'.
	cnet          *clusternet.Net
	clusterSrv    *http.Server
	clusterClient *http.Client

	mu      sync.Mutex
	closing bool
	// strong holds the keys with strong writes reserved or pending, by
	// ns\x00key (see strong.go).
	strongMu sync.Mutex
	strong   map[string]*strongKey
	// resyncs tracks operators waiting for anti-entropy reports.
	resyncs resyncs

	wg sync.WaitGroup
}

// New opens the store and binds the listeners; Run serves them.
func New(cfg Config) (*Origin, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("origin config: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("origin data dir: %w", err)
	}
	o := &Origin{
		cfg:      cfg,
		log:      cfg.Logger.With("role", "origin", "id", cfg.ID),
		clk:      cfg.Clock,
		strong:   make(map[string]*strongKey),
		stopping: make(chan struct{}),
		tokenSum: sha256.Sum256([]byte(cfg.Token)),
	}
	if cfg.MetricsToken != "" {
		o.metricsTokenSum = sha256.Sum256([]byte(cfg.MetricsToken))
	}
	if len(cfg.Upstreams) > 0 {
		o.ups = newUpstreams(cfg.Upstreams, cfg.UpstreamTimeouts)
	}
	started := o.clk.Now()
	var err error
	catalogPath := filepath.Join(cfg.DataDir, "catalog.db")
	if err := setAsideTornCatalog(catalogPath, filepath.Join(cfg.DataDir, "raft"), o.log); err != nil {
		return nil, err
	}
	o.store, err = openStore(cfg.FS, filepath.Join(cfg.DataDir, "blobs"), catalogPath)
	if err != nil {
		return nil, err
	}
	// Until a term plus margin after this process started, it cannot know
	// which leases granted before it are out.
	o.grantor = invalidation.NewGrantor(cfg.LeaseTerm, started, o.store.lastLSN())
	o.edges, err = loadRegistry(filepath.Join(cfg.DataDir, "edges.json"))
	if err != nil {
		o.store.close()
		return nil, err
	}
	if err := o.loadPlan(); err != nil {
		o.store.close()
		return nil, err
	}
	if err := o.loadRecovery(); err != nil {
		o.store.close()
		return nil, err
	}
	if o.scrubber, err = o.newScrubber(); err != nil {
		o.store.close()
		return nil, err
	}
	o.metrics = newMetrics(cfg.Registry, o)
	o.acks = newAckTracker()
	if err := o.openCluster(); err != nil {
		o.store.close()
		return nil, err
	}
	if err := o.openRaft(); err != nil {
		o.closeCluster()
		o.store.close()
		return nil, err
	}
	if err := o.listen(); err != nil {
		o.closeListeners()
		o.closeRaft()
		o.closeCluster()
		o.store.close()
		return nil, err
	}
	return o, nil
}

func (o *Origin) listen() error {
	resetKey, err := loadResetKey(filepath.Join(o.cfg.DataDir, "quic-reset.key"))
	if err != nil {
		return err
	}
	o.udp = o.cfg.PacketConn
	if o.udp == nil {
		o.udp, err = net.ListenPacket("udp", o.cfg.QUICAddr)
		if err != nil {
			return fmt.Errorf("listen quic %s: %w", o.cfg.QUICAddr, err)
		}
		o.ownsUDP = true
	}
	o.tr = &quic.Transport{Conn: o.udp, StatelessResetKey: resetKey}
	tlsConf := pki.ServerTLS(o.cfg.CA, o.cfg.Cert, pki.RoleEdge, o.clk.Now)
	o.quicLn, err = o.tr.Listen(tlsConf, quicConfig(o.cfg.HeartbeatInterval))
	if err != nil {
		return fmt.Errorf("listen quic: %w", err)
	}
	o.httpLn = o.cfg.HTTPListener
	if o.httpLn == nil {
		o.httpLn, err = net.Listen("tcp", o.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen http %s: %w", o.cfg.HTTPAddr, err)
		}
	}
	o.httpSrv = &http.Server{
		Handler:           o.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies can be gigabytes: the admin handlers extend these
		// deadlines while data keeps flowing (see extendDeadlines).
		ReadTimeout:    time.Minute,
		WriteTimeout:   time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		// "OPTIONS *" goes to adminHandler, which refuses it without the
		// token like every other request it has no public route for.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(o.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// quicConfig is shared by origin and edges. The idle timeout is a backstop:
// edges notice a dead origin from missed heartbeats long before it.
func quicConfig(heartbeat time.Duration) *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:             max(20*heartbeat, 5*time.Second),
		KeepAlivePeriod:            heartbeat,
		MaxIncomingStreams:         1024,
		MaxIncomingUniStreams:      16,
		InitialStreamReceiveWindow: 1 << 20,
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 64 << 20,
	}
}

// loadResetKey reads the persisted QUIC stateless-reset key, creating it on
// first start. Persisting it lets a restarted origin answer packets of
// connections it forgot with a stateless reset, so edges notice the restart
// at once instead of waiting for an idle timeout.
func loadResetKey(path string) (*quic.StatelessResetKey, error) {
	var key quic.StatelessResetKey
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == len(key):
		copy(key[:], b)
		return &key, nil
	case err == nil:
		return nil, fmt.Errorf("stateless reset key %s: %d bytes, want %d", path, len(b), len(key))
	case !os.IsNotExist(err):
		return nil, fmt.Errorf("stateless reset key: %w", err)
	}
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, key[:], 0o600); err != nil {
		return nil, fmt.Errorf("stateless reset key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("stateless reset key: %w", err)
	}
	return &key, nil
}

// HTTPAddr is the admin API's bound address.
func (o *Origin) HTTPAddr() net.Addr { return o.httpLn.Addr() }

// QUICAddr is the address edges dial.
func (o *Origin) QUICAddr() net.Addr { return o.udp.LocalAddr() }

// Run serves until ctx is cancelled, then shuts down: it stops taking
// publishes (503), closes edge connections and the store.
func (o *Origin) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		if err := o.httpSrv.Serve(o.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin http: %w", err)
		}
	}()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.acceptLoop(ctx)
	}()
	if o.cnet != nil {
		go func() {
			err := o.clusterSrv.Serve(plainListener{o.cnet.Listener(clusternet.KindHTTP)})
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("cluster http: %w", err)
			}
		}()
	}
	for _, loop := range []func(context.Context){o.watchLeadership, o.refreshPeers, o.fetchMissingLoop, o.joinLoop, o.shareEdgesLoop} {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			loop(ctx)
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.scrubber.Run(ctx)
	}()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.compactLoop(ctx)
	}()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.recoveryLoop(ctx)
	}()
	o.log.Info("origin serving", "http", o.HTTPAddr().String(), "quic", o.QUICAddr().String())
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	o.shutdown()
	return err
}

func (o *Origin) shutdown() {
	o.mu.Lock()
	o.closing = true
	o.mu.Unlock()
	close(o.stopping)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.httpSrv.Shutdown(sctx)
	// Tell edges now rather than let them find out from missed heartbeats.
	o.closeEdgeConns(codeNormal, "origin shutting down")
	o.closeListeners()
	o.wg.Wait()
	if o.clusterSrv != nil {
		o.clusterSrv.Shutdown(sctx)
	}
	o.closeRaft()
	o.closeCluster()
	o.ups.close()
	o.store.close()
}

// closeCluster closes the cluster port.
func (o *Origin) closeCluster() {
	if o.cnet != nil {
		o.cnet.Close()
	}
	if o.clusterClient != nil {
		o.clusterClient.CloseIdleConnections()
	}
}

// closeEdgeConns closes every edge connection with code and reason.
func (o *Origin) closeEdgeConns(code quic.ApplicationErrorCode, reason string) {
	for _, e := range o.edges.all() {
		e.mu.Lock()
		conns := []*quic.Conn{e.control, e.data}
		e.mu.Unlock()
		for _, c := range conns {
			if c != nil {
				c.CloseWithError(code, reason)
			}
		}
	}
}

func (o *Origin) closeListeners() {
	if o.quicLn != nil {
		o.quicLn.Close()
	}
	if o.tr != nil {
		o.tr.Close()
	}
	if o.ownsUDP && o.udp != nil {
		o.udp.Close()
	}
	if o.httpLn != nil {
		o.httpLn.Close()
	}
}

func (o *Origin) isClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

// committed wakes every log sender and pusher, and records the commit time
// the lease rule measures unacknowledged entries by.
func (o *Origin) committed() {
	o.grantor.Committed(o.store.lastLSN(), o.clk.Now())
	o.commits.Broadcast()
	for _, e := range o.edges.all() {
		e.wakePusher()
	}
}

func (o *Origin) emit(ev Event) {
	if o.cfg.OnEvent != nil {
		o.cfg.OnEvent(ev)
	}
}

// LastLSN is the LSN of the latest committed log entry.
func (o *Origin) LastLSN() uint64 { return o.store.lastLSN() }

// stateRule judges edge states: an edge not heard from since this origin
// started counts as suspect, not down, until the grace period ends, since
// it may still hold a lease granted before the restart.
func (o *Origin) stateRule() stateRule {
	return stateRule{heartbeat: o.cfg.HeartbeatInterval, unknownUntil: o.grantor.GraceEnds()}
}
