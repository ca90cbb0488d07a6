// Package cluster runs an origin and a set of edges in one process: the
// harness for geocdn's scenario tests and the engine behind `geocdn dev`.
//
// Key invariant: a node that is killed and restarted comes back on the same
// addresses and the same data directory, so it resumes where it left off.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/origin"
)

// EdgeSpec describes one edge of the cluster.
type EdgeSpec struct {
	ID     string
	Region string
	Lat    float64
	Lon    float64
	// HTTPAddr is the client listener; default 127.0.0.1:0.
	HTTPAddr string
	// AdminAddr is the metrics listener; empty means none.
	AdminAddr string
}

// Config configures a cluster.
type Config struct {
	// Dir holds every node's data directory. Required.
	Dir   string
	Edges []EdgeSpec
	// Token is the admin token; default a random one.
	Token string
	// OriginHTTPAddr and OriginQUICAddr default to 127.0.0.1:0.
	OriginHTTPAddr, OriginQUICAddr string
	// LeaseTerm, Replicas, PublishTimeout, MaxObjectSize: see origin.Config.
	LeaseTerm      time.Duration
	Replicas       int
	PublishTimeout time.Duration
	MaxObjectSize  int64
	// CacheSize and DiskBytes apply to every edge: see edge.Config.
	CacheSize, DiskBytes int64
	// LogRetention is the origin's (origin.Config); ResyncInterval every
	// edge's (edge.Config).
	LogRetention origin.LogRetention
	// ReassignAfter is the origin's (origin.Config).
	ReassignAfter  time.Duration
	ResyncInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnEvent receives the origin's replication events.
	OnEvent func(origin.Event)
}

// Cluster is a running in-process cluster.
type Cluster struct {
	cfg   Config
	CA    *pki.CA
	Token string

	mu     sync.Mutex
	origin originSlot
	// originHTTP and originQUIC are the addresses the origin first bound,
	// reused on restart so edges and clients find it again.
	originHTTP, originQUIC string
	edges                  []*EdgeNode
}

type node[T any] struct {
	n      T
	cancel context.CancelFunc
	done   chan error
}

func (n *node[T]) stop() error {
	n.cancel()
	return <-n.done
}

// EdgeNode is one edge of the cluster.
type EdgeNode struct {
	Spec EdgeSpec
	// URL is the edge's public URL (stable across restarts).
	URL string
	dir string

	mu   sync.Mutex
	node *node[*edge.Edge]
}

// Dir is the edge's data directory.
func (e *EdgeNode) Dir() string { return e.dir }

// Edge returns the running edge, or nil while it is killed.
func (e *EdgeNode) Edge() *edge.Edge {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.node == nil {
		return nil
	}
	return e.node.n
}

// Start builds a CA, starts the origin and every edge.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cluster: dir required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Token == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.Token = hex.EncodeToString(b)
	}
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, CA: ca, Token: cfg.Token,
		originHTTP: or(cfg.OriginHTTPAddr, "127.0.0.1:0"), originQUIC: or(cfg.OriginQUICAddr, "127.0.0.1:0")}
	if err := c.StartOrigin(); err != nil {
		return nil, err
	}
	for _, spec := range cfg.Edges {
		en := &EdgeNode{Spec: spec, dir: filepath.Join(cfg.Dir, "edge-"+spec.ID)}
		c.edges = append(c.edges, en)
		if err := c.startEdge(en); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// StartOrigin starts (or restarts) the origin on its first addresses.
func (c *Cluster) StartOrigin() error {
	return c.origin.start(func() (*node[*origin.Origin], error) {
		c.mu.Lock()
		quicAddr, httpAddr := c.originQUIC, c.originHTTP
		c.mu.Unlock()
		// Bind the sockets here so a restart reuses the exact ports.
		pc, err := net.ListenPacket("udp", quicAddr)
		if err != nil {
			return nil, fmt.Errorf("origin quic: %w", err)
		}
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("origin http: %w", err)
		}
		n, err := c.settings().runOrigin(pc, ln)
		if err != nil {
			pc.Close()
			ln.Close()
			return nil, err
		}
		c.mu.Lock()
		c.originHTTP, c.originQUIC = n.n.HTTPAddr().String(), n.n.QUICAddr().String()
		c.mu.Unlock()
		return n, nil
	})
}

func (c *Cluster) settings() nodeSettings {
	return nodeSettings{
		dir: c.cfg.Dir, ca: c.CA, token: c.Token, leaseTerm: c.cfg.LeaseTerm, replicas: c.cfg.Replicas,
		publishTimeout: c.cfg.PublishTimeout, maxObjectSize: c.cfg.MaxObjectSize,
		cacheSize: c.cfg.CacheSize, diskBytes: c.cfg.DiskBytes, logger: c.cfg.Logger, onEvent: c.cfg.OnEvent,
		logRetention: c.cfg.LogRetention, resyncInterval: c.cfg.ResyncInterval,
		reassignAfter: c.cfg.ReassignAfter,
	}
}

// StopOrigin shuts the origin down (gracefully: what it acknowledged is on
// disk). Use RestartOrigin or StartOrigin to bring it back.
func (c *Cluster) StopOrigin() error {
	return c.origin.stop()
}

// RestartOrigin stops and starts the origin.
func (c *Cluster) RestartOrigin() error {
	if err := c.StopOrigin(); err != nil {
		return err
	}
	return c.StartOrigin()
}

// Origin returns the running origin, or nil while it is stopped.
func (c *Cluster) Origin() *origin.Origin {
	return c.origin.get()
}

// OriginURL is the origin admin API's base URL.
func (c *Cluster) OriginURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "http://" + c.originHTTP
}

// Edges returns the cluster's edges in spec order.
func (c *Cluster) Edges() []*EdgeNode { return c.edges }

func (c *Cluster) startEdge(en *EdgeNode) error {
	en.mu.Lock()
	defer en.mu.Unlock()
	if en.node != nil {
		return fmt.Errorf("cluster: edge %s already running", en.Spec.ID)
	}
	c.mu.Lock()
	quicAddr := c.originQUIC
	c.mu.Unlock()
	originAddr, err := net.ResolveUDPAddr("udp", quicAddr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("edge %s quic: %w", en.Spec.ID, err)
	}
	ln, err := net.Listen("tcp", or(en.Spec.HTTPAddr, "127.0.0.1:0"))
	if err != nil {
		pc.Close()
		return fmt.Errorf("edge %s http: %w", en.Spec.ID, err)
	}
	// Keep the bound port for restarts.
	en.Spec.HTTPAddr = ln.Addr().String()
	if en.URL == "" {
		en.URL = "http://" + en.Spec.HTTPAddr
	}
	n, err := c.settings().runEdge(en, originAddr, pc, ln)
	if err != nil {
		pc.Close()
		ln.Close()
		return err
	}
	en.node = n
	return nil
}

// KillEdge stops edge i. Its data directory is kept.
func (c *Cluster) KillEdge(i int) error { return c.edges[i].kill() }

// StartEdge starts edge i again after KillEdge, on the same address and data.
func (c *Cluster) StartEdge(i int) error { return c.startEdge(c.edges[i]) }

// Close stops every node.
func (c *Cluster) Close() error {
	var errs []error
	for i := range c.edges {
		errs = append(errs, c.KillEdge(i))
	}
	errs = append(errs, c.StopOrigin())
	return errors.Join(errs...)
}
