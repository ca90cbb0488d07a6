// Package cluster runs an origin and a set of edges in one process: the
// harness for geocdn's scenario tests and the engine behind `geocdn dev`.
//
// Key invariant: a node that is killed and restarted comes back on the same
// addresses and the same data directory, so it resumes where it left off.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
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
	// HTTPSAddr, with Config.EdgeCertificate, is a TLS listener for
	// clients (HTTP/3 on the same port over UDP); empty means none. The
	// edge's public URL, where the router sends clients, stays its HTTP
	// one.
	HTTPSAddr string
}

// Config configures a cluster.
type Config struct {
	// Dir holds every node's data directory. Required.
	Dir   string
	Edges []EdgeSpec
	// Token is the admin token; default a random one.
	Token string
	// EdgeCertificate chooses the certificate of the edges' TLS
	// listeners (EdgeSpec.HTTPSAddr).
	EdgeCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Origins is how many origins the cluster runs, as one raft cluster
	// whose members talk over their cluster ports; default 1, which runs
	// without a cluster port.
	Origins int
	// OriginHTTPAddr and OriginQUICAddr default to 127.0.0.1:0; they are
	// the first origin's, the others always bind port 0.
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
	// Upstreams are every origin's (origin.Config): pull-through.
	Upstreams []origin.Upstream
}

// Cluster is a running in-process cluster.
type Cluster struct {
	cfg   Config
	CA    *pki.CA
	Token string

	mu      sync.Mutex
	origins []*originMember
	edges   []*EdgeNode
}

// originMember is one origin of the cluster, with the addresses it first
// bound, reused on restart so edges, clients and the other origins find it
// again.
type originMember struct {
	id               string
	slot             originSlot
	http, quic, raft string
	// raftLn is the cluster port bound at Start, used by the first start.
	raftLn net.Listener
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
	// httpsLn and h3Conn, when set, are the TLS listeners a WAN edge
	// serves clients on (WANConfig.EdgeCertificate).
	httpsLn net.Listener
	h3Conn  net.PacketConn

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
	c := &Cluster{cfg: cfg, CA: ca, Token: cfg.Token}
	n := max(cfg.Origins, 1)
	var peers []origin.Peer
	for i := range n {
		m := &originMember{id: originID, http: "127.0.0.1:0", quic: "127.0.0.1:0"}
		if i == 0 {
			m.http, m.quic = or(cfg.OriginHTTPAddr, m.http), or(cfg.OriginQUICAddr, m.quic)
		}
		if n > 1 {
			m.id = fmt.Sprintf("o%d", i+1)
			// Every member is bootstrapped with every cluster port's
			// address, so they are bound first.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, fmt.Errorf("origin %s raft: %w", m.id, err)
			}
			m.raft, m.raftLn = ln.Addr().String(), ln
			peers = append(peers, origin.Peer{ID: m.id, Raft: m.raft})
		}
		c.origins = append(c.origins, m)
	}
	for i := range c.origins {
		if err := c.startOrigin(i, peers); err != nil {
			c.Close()
			return nil, err
		}
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

// StartOrigin starts (or restarts) the first origin on its first
// addresses.
func (c *Cluster) StartOrigin() error { return c.startOrigin(0, nil) }

// StartOriginN starts origin i again after StopOriginN.
func (c *Cluster) StartOriginN(i int) error { return c.startOrigin(i, nil) }

// startOrigin starts origin i, bootstrapping a new data directory with
// peers.
func (c *Cluster) startOrigin(i int, peers []origin.Peer) error {
	m := c.origins[i]
	return m.slot.start(func() (*node[*origin.Origin], error) {
		c.mu.Lock()
		quicAddr, httpAddr, raftAddr := m.quic, m.http, m.raft
		c.mu.Unlock()
		// Bind the sockets here so a restart reuses the exact ports.
		pc, err := net.ListenPacket("udp", quicAddr)
		if err != nil {
			return nil, fmt.Errorf("origin %s quic: %w", m.id, err)
		}
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("origin %s http: %w", m.id, err)
		}
		rl := m.raftLn
		m.raftLn = nil
		if rl == nil && raftAddr != "" {
			if rl, err = net.Listen("tcp", raftAddr); err != nil {
				pc.Close()
				ln.Close()
				return nil, fmt.Errorf("origin %s raft: %w", m.id, err)
			}
		}
		n, err := c.settings().runOrigin(m.id, pc, ln, rl, peers)
		if err != nil {
			pc.Close()
			ln.Close()
			if rl != nil {
				rl.Close()
			}
			return nil, err
		}
		c.mu.Lock()
		m.http, m.quic = n.n.HTTPAddr().String(), n.n.QUICAddr().String()
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
		reassignAfter: c.cfg.ReassignAfter, upstreams: c.cfg.Upstreams, edgeCert: c.cfg.EdgeCertificate,
	}
}

// StopOrigin shuts the first origin down (gracefully: what it
// acknowledged is on disk). Use RestartOrigin or StartOrigin to bring it
// back.
func (c *Cluster) StopOrigin() error { return c.origins[0].slot.stop() }

// StopOriginN shuts origin i down.
func (c *Cluster) StopOriginN(i int) error { return c.origins[i].slot.stop() }

// RestartOrigin stops and starts the first origin.
func (c *Cluster) RestartOrigin() error {
	if err := c.StopOrigin(); err != nil {
		return err
	}
	return c.StartOrigin()
}

// Origin returns the first origin, or nil while it is stopped.
func (c *Cluster) Origin() *origin.Origin {
	return c.origins[0].slot.get()
}

// OriginN returns origin i, or nil while it is stopped.
func (c *Cluster) OriginN(i int) *origin.Origin { return c.origins[i].slot.get() }

// OriginCount is how many origins the cluster has.
func (c *Cluster) OriginCount() int { return len(c.origins) }

// OriginURL is the first origin's admin API base URL; any origin accepts
// every request (followers forward writes to the leader).
func (c *Cluster) OriginURL() string { return c.OriginURLN(0) }

// OriginURLN is origin i's admin API base URL.
func (c *Cluster) OriginURLN(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "http://" + c.origins[i].http
}

// originQUICs are every origin's QUIC addresses, for edges.
func (c *Cluster) originQUICs() ([]net.Addr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []net.Addr
	for _, m := range c.origins {
		a, err := net.ResolveUDPAddr("udp", m.quic)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Edges returns the cluster's edges in spec order.
func (c *Cluster) Edges() []*EdgeNode { return c.edges }

func (c *Cluster) startEdge(en *EdgeNode) error {
	en.mu.Lock()
	defer en.mu.Unlock()
	if en.node != nil {
		return fmt.Errorf("cluster: edge %s already running", en.Spec.ID)
	}
	originAddrs, err := c.originQUICs()
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
	n, err := c.settings().runEdge(en, originAddrs, pc, ln)
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
	for i, m := range c.origins {
		errs = append(errs, c.StopOriginN(i))
		if m.raftLn != nil {
			m.raftLn.Close()
		}
	}
	return errors.Join(errs...)
}
