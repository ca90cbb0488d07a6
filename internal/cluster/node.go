package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/origin"
)

// nodeSettings are what both harnesses (loopback and simulated WAN) give
// their nodes; only the sockets differ.
type nodeSettings struct {
	dir                  string
	ca                   *pki.CA
	token                string
	leaseTerm            time.Duration
	replicas             int
	publishTimeout       time.Duration
	maxObjectSize        int64
	cacheSize, diskBytes int64
	logger               *slog.Logger
	onEvent              func(origin.Event)
	logRetention         origin.LogRetention
	reassignAfter        time.Duration
	resyncInterval       time.Duration
	upstreams            []origin.Upstream
	edgeCert             func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// originID is the id of a harness's origin when it has only one.
const originID = "origin-1"

// runOrigin starts an origin on pc and ln and runs it until the node is
// stopped. The origin does not own a conn it is given, so pc is closed
// when it ends, before the stop is reported, so a restart can bind the
// same address at once.
func (s nodeSettings) runOrigin(id string, pc net.PacketConn, ln, raftLn net.Listener, peers []origin.Peer) (*node[*origin.Origin], error) {
	cert, err := s.ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: id}, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.dir, "origin")
	if raftLn != nil {
		dir = filepath.Join(s.dir, "origin-"+id)
	}
	o, err := origin.New(origin.Config{
		ID: id, DataDir: dir, RaftListener: raftLn, Peers: peers,
		HTTPListener: ln, PacketConn: pc, CA: s.ca, Cert: cert, Token: s.token,
		LeaseTerm: s.leaseTerm, Replicas: s.replicas, PublishTimeout: s.publishTimeout,
		MaxObjectSize: s.maxObjectSize, Logger: s.logger, OnEvent: s.onEvent,
		LogRetention:  s.logRetention,
		ReassignAfter: s.reassignAfter,
		Upstreams:     s.upstreams,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node[*origin.Origin]{n: o, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := o.Run(ctx)
		pc.Close()
		n.done <- err
	}()
	return n, nil
}

// runEdge starts en on pc and ln, dialling the origins at originAddrs, and
// runs it until the node is stopped; pc is closed when it ends.
func (s nodeSettings) runEdge(en *EdgeNode, originAddrs []net.Addr, pc net.PacketConn, ln net.Listener) (*node[*edge.Edge], error) {
	cert, err := s.ca.Issue(pki.Identity{Role: pki.RoleEdge, ID: en.Spec.ID}, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(en.dir, 0o755); err != nil {
		return nil, err
	}
	cfg := edge.Config{
		ID: en.Spec.ID, Region: en.Spec.Region, Lat: en.Spec.Lat, Lon: en.Spec.Lon,
		Origins: originAddrs, PacketConn: pc, HTTPListener: ln, AdminAddr: en.Spec.AdminAddr,
		PublicURL: en.URL, DataDir: en.dir, CA: s.ca, Cert: cert,
		CacheSize: s.cacheSize, DiskBytes: s.diskBytes, Logger: s.logger,
		ResyncInterval: s.resyncInterval,
	}
	if en.Spec.HTTPSAddr != "" && s.edgeCert != nil {
		cfg.Certificate, cfg.HTTPSAddr = s.edgeCert, en.Spec.HTTPSAddr
	}
	if en.httpsLn != nil && s.edgeCert != nil {
		cfg.Certificate, cfg.HTTPSListener, cfg.HTTP3Conn = s.edgeCert, en.httpsLn, en.h3Conn
	}
	e, err := edge.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node[*edge.Edge]{n: e, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := e.Run(ctx)
		pc.Close()
		if en.h3Conn != nil {
			en.h3Conn.Close() // the edge does not own a socket it is given
		}
		n.done <- err
	}()
	return n, nil
}

// kill stops the edge if it runs. Its data directory is kept.
func (en *EdgeNode) kill() error {
	en.mu.Lock()
	n := en.node
	en.node = nil
	en.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.stop()
}

// originSlot holds a harness's origin between start and stop.
type originSlot struct {
	mu sync.Mutex
	n  *node[*origin.Origin]
}

// start runs start under the slot's lock unless an origin already runs.
func (s *originSlot) start(start func() (*node[*origin.Origin], error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n != nil {
		return errors.New("cluster: origin already running")
	}
	n, err := start()
	if err != nil {
		return err
	}
	s.n = n
	return nil
}

// stop shuts the origin down gracefully, if it runs.
func (s *originSlot) stop() error {
	s.mu.Lock()
	n := s.n
	s.n = nil
	s.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.stop()
}

// get returns the running origin, or nil.
func (s *originSlot) get() *origin.Origin {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		return nil
	}
	return s.n.n
}
