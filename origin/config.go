package origin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an origin. Zero values take the defaults named in each
// field's comment; DefaultConfig returns them filled in.
type Config struct {
	// ID is the origin's node id, the <id> of its certificate's URI SAN
	// geocdn://origin/<id>. Default "origin-1".
	ID string
	// DataDir holds blobs/, catalog.db, edges.json and the QUIC stateless
	// reset key. Required.
	DataDir string

	// HTTPAddr is the admin API's TCP address (default "127.0.0.1:8080");
	// ignored when HTTPListener is set.
	HTTPAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr
	// (tests inject in-memory or pre-bound listeners).
	HTTPListener net.Listener
	// QUICAddr is the UDP address edges dial (default "127.0.0.1:4433");
	// ignored when PacketConn is set.
	QUICAddr string
	// PacketConn, when set, carries QUIC instead of a UDP socket on
	// QUICAddr (a simulated network in tests).
	PacketConn net.PacketConn

	// RaftAddr is the TCP address of this origin's cluster port, which
	// carries raft, content and forwarded admin requests between origins,
	// mutually authenticated by CA (internal/clusternet). Empty, with no
	// RaftListener: the origin is a cluster of one, with no cluster port.
	RaftAddr string
	// RaftListener, when set, is used instead of listening on RaftAddr.
	RaftListener net.Listener
	// Peers are the members of a new cluster, this origin included, by id
	// and cluster address: a data directory without raft state is
	// bootstrapped with them. Ignored once the data directory holds raft
	// state.
	Peers []Peer
	// Join is the admin URL of any member of an existing cluster, which
	// this origin asks to add it (with its cluster address) once it
	// serves; a data directory without raft state is then not
	// bootstrapped. Without Peers or Join, an origin with a cluster port
	// starts a cluster of one, which others may join.
	Join string
	// NoGroupCommit turns group commit off, for measuring what it saves:
	// raft appends one command per log write and the catalog applies one
	// per transaction, so every write costs its own fsyncs.
	NoGroupCommit bool
	// RaftTimeout is raft's heartbeat and election timeout in a cluster of
	// several origins. Default 1s; between 50ms and 30s.
	RaftTimeout time.Duration

	// CA is the cluster CA edges' certificates must chain to. Required.
	CA *pki.CA
	// Cert is this origin's certificate, with URI SAN geocdn://origin/<ID>.
	// Required.
	Cert tls.Certificate

	// Token is the admin API bearer token. Required; at least 16 bytes so a
	// forgotten flag cannot leave the API guarded by a guessable word.
	Token string
	// MetricsToken, when set, is required (as a bearer token) by GET
	// /metrics, which is otherwise public; the admin token is accepted
	// there too. At least 16 bytes when set.
	MetricsToken string

	// MaxObjectSize bounds a published body (413 beyond it), and the
	// pulled bodies that are stored: a larger one is streamed through.
	// Default 5 GiB.
	MaxObjectSize int64

	// Upstreams name the namespaces' upstream web servers (pull-through;
	// see upstream.go), at most one per namespace.
	Upstreams []Upstream
	// UpstreamTimeouts bound fetches from them.
	UpstreamTimeouts UpstreamTimeouts
	// LeaseTerm is the edge lease term granted with every heartbeat answer.
	// Default 2s; between 200ms and 1m.
	LeaseTerm time.Duration
	// HeartbeatInterval is how often edges send heartbeats. Default
	// LeaseTerm/8, at least 10ms; it must leave room for several
	// heartbeats per term.
	HeartbeatInterval time.Duration
	// Replicas is the static replication rule used until a placement plan
	// is applied: each object is pushed to this many edges chosen by
	// rendezvous hashing on its key; 0 (default) pushes to every edge.
	Replicas int
	// PublishTimeout bounds how long a publish with w>0 waits for edge
	// acknowledgements before answering 504. Default 30s.
	PublishTimeout time.Duration
	// PushConcurrency is the number of pushes in flight to one edge.
	// Default 4.
	PushConcurrency int
	// LogRetention is how much of the replication log the origin keeps;
	// older entries are compacted and edges further behind catch up by
	// snapshot. Default the last 1,000,000 entries.
	LogRetention LogRetention
	// ReassignAfter is how long an edge's lease must have been expired
	// before the edge is treated as lost and the replicas the placement
	// plan gives it are placed on other edges until it returns (see
	// recovery.go). Default 10m; negative turns reassignment off.
	ReassignAfter time.Duration
	// ScrubRate bounds, in bytes per second, how fast the background
	// scrubber re-reads blobs to check them against their digests.
	// Default 20 MiB/s; must not be negative.
	ScrubRate int64
	// ScrubInterval is how often a scrub pass over every blob starts (a
	// pass slower than this is followed by the next at once; the first
	// starts with the origin). Default 24h; must not be negative.
	ScrubInterval time.Duration

	// FS is the filesystem for blobs. Default the real one (fsys.OS()).
	FS fsys.FS
	// Clock is the time source for heartbeats, leases and timeouts.
	// Default the real clock.
	Clock clock.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the origin's Prometheus metrics. Default a fresh
	// registry served on /metrics.
	Registry *prometheus.Registry
	// OnEvent, when set, receives replication events (pushes, edge state
	// changes) synchronously; it must not block.
	OnEvent func(Event)
}

// DefaultConfig returns a Config with every default filled in; the caller
// still sets DataDir, CA, Cert and Token.
func DefaultConfig() Config {
	return Config{
		ID:                "origin-1",
		HTTPAddr:          "127.0.0.1:8080",
		QUICAddr:          "127.0.0.1:4433",
		MaxObjectSize:     5 << 30,
		LeaseTerm:         2 * time.Second,
		HeartbeatInterval: 250 * time.Millisecond,
		PublishTimeout:    30 * time.Second,
		PushConcurrency:   4,
		LogRetention:      LogRetention{Entries: 1_000_000},
		ScrubRate:         scrub.DefaultRate,
		ScrubInterval:     scrub.DefaultInterval,
		ReassignAfter:     10 * time.Minute,
	}
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ID == "" {
		c.ID = d.ID
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = d.HTTPAddr
	}
	if c.QUICAddr == "" {
		c.QUICAddr = d.QUICAddr
	}
	if c.MaxObjectSize == 0 {
		c.MaxObjectSize = d.MaxObjectSize
	}
	if c.LeaseTerm == 0 {
		c.LeaseTerm = d.LeaseTerm
	}
	if c.LogRetention == (LogRetention{}) {
		c.LogRetention = d.LogRetention
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = max(c.LeaseTerm/8, 10*time.Millisecond)
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.PushConcurrency == 0 {
		c.PushConcurrency = d.PushConcurrency
	}
	if c.ScrubRate == 0 {
		c.ScrubRate = d.ScrubRate
	}
	if c.ScrubInterval == 0 {
		c.ScrubInterval = d.ScrubInterval
	}
	if c.ReassignAfter == 0 {
		c.ReassignAfter = d.ReassignAfter
	}
	if c.RaftTimeout == 0 {
		c.RaftTimeout = time.Second
	}
	if c.FS == nil {
		c.FS = fsys.OS()
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

// Validate reports the first problem with c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if err := pki.ValidID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
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
	if len(c.Token) < 16 {
		errs = append(errs, errors.New("token: required, at least 16 bytes"))
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		errs = append(errs, errors.New("metrics token: at least 16 bytes when set"))
	}
	if c.MaxObjectSize < 0 {
		errs = append(errs, errors.New("max object size: must not be negative"))
	}
	seen := map[string]bool{}
	for _, up := range c.Upstreams {
		if err := objkey.ValidNamespace(up.Namespace); err != nil {
			errs = append(errs, fmt.Errorf("upstream: %w", err))
		} else if seen[up.Namespace] {
			errs = append(errs, fmt.Errorf("upstream: namespace %q has two", up.Namespace))
		}
		seen[up.Namespace] = true
		if err := up.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.LeaseTerm < 200*time.Millisecond || c.LeaseTerm > time.Minute {
		errs = append(errs, fmt.Errorf("lease: %v is outside 200ms..1m", c.LeaseTerm))
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval > c.LeaseTerm/3 {
		errs = append(errs, fmt.Errorf("heartbeat interval: %v must be positive and at most a third of the lease term %v", c.HeartbeatInterval, c.LeaseTerm))
	}
	if (c.LogRetention.Entries == 0) == (c.LogRetention.Age <= 0) {
		errs = append(errs, fmt.Errorf("log retention: give a count of entries or a positive duration, not %+v", c.LogRetention))
	}
	if c.Replicas < 0 {
		errs = append(errs, errors.New("replicas: must not be negative"))
	}
	if c.PushConcurrency < 1 || c.PushConcurrency > 64 {
		errs = append(errs, fmt.Errorf("push concurrency: %d is outside 1..64", c.PushConcurrency))
	}
	if c.ScrubRate < 0 {
		errs = append(errs, fmt.Errorf("scrub rate: %d bytes/s must not be negative", c.ScrubRate))
	}
	if c.ScrubInterval < 0 {
		errs = append(errs, fmt.Errorf("scrub interval: %v must not be negative", c.ScrubInterval))
	}
	if c.RaftTimeout < 50*time.Millisecond || c.RaftTimeout > 30*time.Second {
		errs = append(errs, fmt.Errorf("raft timeout: %v is outside 50ms..30s", c.RaftTimeout))
	}
	errs = append(errs, c.validatePeers()...)
	return errors.Join(errs...)
}

// clustered reports whether the origin has a cluster port.
func (c Config) clustered() bool { return c.RaftAddr != "" || c.RaftListener != nil }

func (c Config) validatePeers() []error {
	var errs []error
	if c.Join != "" {
		if !c.clustered() {
			errs = append(errs, errors.New("join: needs a cluster port (--raft)"))
		}
		if len(c.Peers) > 0 {
			errs = append(errs, errors.New("join and peers: give one or the other"))
		}
		if u, err := url.Parse(c.Join); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("join %q: want the admin URL of a member, like http://10.0.0.1:8080", c.Join))
		}
	}
	if len(c.Peers) == 0 {
		return errs
	}
	if !c.clustered() {
		errs = append(errs, errors.New("peers: need a cluster port (--raft)"))
	}
	seen, self := map[string]bool{}, false
	for i, p := range c.Peers {
		if err := pki.ValidID(p.ID); err != nil {
			errs = append(errs, fmt.Errorf("peers[%d]: id: %w", i, err))
		}
		if _, _, err := net.SplitHostPort(p.Raft); err != nil {
			errs = append(errs, fmt.Errorf("peers[%d] (%s): address %q: %w", i, p.ID, p.Raft, err))
		}
		if seen[p.ID] {
			errs = append(errs, fmt.Errorf("peers: %s is listed twice", p.ID))
		}
		seen[p.ID] = true
		self = self || p.ID == c.ID
	}
	if !self {
		errs = append(errs, fmt.Errorf("peers: this origin (%s) is not among them", c.ID))
	}
	return errs
}
