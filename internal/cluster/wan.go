package cluster

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/geocdn/geocdn/internal/memnet"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/simwan"
	"github.com/geocdn/geocdn/origin"
)

// quicPort is the port every node's QUIC conn binds on its simulated host.
const quicPort = 4433

// WANEdge places one edge of a WAN cluster.
type WANEdge struct {
	ID string
	// Region is a region of the latency matrix; the edge takes its
	// coordinates.
	Region string
}

// WANConfig configures a cluster on a simulated WAN.
type WANConfig struct {
	// Dir holds every node's data directory. Required.
	Dir   string
	Edges []WANEdge
	// OriginRegion is where the origin sits. Default "Washington DC".
	OriginRegion string
	// Matrix, IntraRegion, Loss and Seed configure the network: see
	// simwan.Config.
	Matrix      *simwan.Matrix
	IntraRegion time.Duration
	Loss        float64
	Seed        uint64
	// Token is the admin token; default a random one.
	Token string
	// LeaseTerm, Replicas, PublishTimeout, MaxObjectSize: see origin.Config.
	LeaseTerm      time.Duration
	Replicas       int
	PublishTimeout time.Duration
	MaxObjectSize  int64
	// CacheSize and DiskBytes apply to every edge: see edge.Config.
	CacheSize, DiskBytes int64
	// LogRetention is the origin's; ResyncInterval every edge's.
	LogRetention origin.LogRetention
	// ReassignAfter is the origin's (origin.Config).
	ReassignAfter  time.Duration
	ResyncInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnEvent receives the origin's replication events.
	OnEvent func(origin.Event)
	// Upstreams are the origin's (origin.Config): pull-through. The
	// origin reaches them over the host's real network, not the WAN.
	Upstreams []origin.Upstream
	// EdgeCertificate, when set, has every edge serve clients over TLS:
	// HTTP/3 on the WAN (its host, port 443: EdgeNode.H3Addr), and
	// HTTP/1.1 and HTTP/2 in memory at <id>.edge.wan:443.
	EdgeCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// edgeH3Port is the WAN port of an edge's HTTP/3 socket.
const edgeH3Port = 443

// H3Addr is the WAN address of edge id's HTTP/3 listener (with
// WANConfig.EdgeCertificate).
func (w *WAN) H3Addr(id string) (*net.UDPAddr, error) {
	return w.Net.Addr(edgeHost(id), edgeH3Port)
}

// Direction names one direction of the path between an edge and the
// origin.
type Direction int

const (
	// ToEdge is origin → edge: log entries, pushes, heartbeat answers.
	ToEdge Direction = iota + 1
	// FromEdge is edge → origin: acks, heartbeats, fill requests.
	FromEdge
)

// WAN is a cluster whose nodes talk QUIC over a simulated WAN and HTTP
// over in-memory listeners, so that it runs inside a testing/synctest
// bubble: start it inside the bubble (certificates are issued on the
// bubble's clock) and Close it before the bubble ends.
//
// Key invariant: a node that is killed and restarted comes back on the
// same simulated host, HTTP address and data directory, and keeps every
// partition its host had.
type WAN struct {
	cfg   WANConfig
	CA    *pki.CA
	Token string
	// Net is the simulated WAN; Mem carries HTTP.
	Net *simwan.Network
	Mem *memnet.Network
	// Client reaches every node's HTTP listener by URL (OriginURL,
	// EdgeNode.URL). Clients are modelled as local to the node they
	// call: HTTP has no WAN latency.
	Client *http.Client

	originAddr *net.UDPAddr

	origin originSlot
	edges  []*EdgeNode
	byID   map[string]int
}

const (
	originHost    = "origin"
	originHTTPWAN = "origin.wan:80"
)

func edgeHost(id string) string { return "edge-" + id }

// StartWAN builds a CA, a simulated WAN with a host per node, and starts
// the origin and every edge.
func StartWAN(cfg WANConfig) (*WAN, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cluster: dir required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OriginRegion == "" {
		cfg.OriginRegion = "Washington DC"
	}
	if cfg.Token == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.Token = hex.EncodeToString(b)
	}
	sn, err := simwan.New(simwan.Config{Matrix: cfg.Matrix, IntraRegion: cfg.IntraRegion, Loss: cfg.Loss, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		return nil, err
	}
	mem := &memnet.Network{}
	w := &WAN{cfg: cfg, CA: ca, Token: cfg.Token, Net: sn, Mem: mem,
		Client: &http.Client{Transport: &http.Transport{DialContext: mem.Dial}},
		byID:   map[string]int{}}
	if _, err := sn.AddHost(originHost, cfg.OriginRegion); err != nil {
		return nil, err
	}
	if w.originAddr, err = sn.Addr(originHost, quicPort); err != nil {
		return nil, err
	}
	for i, es := range cfg.Edges {
		r, ok := sn.Matrix().Region(es.Region)
		if !ok {
			return nil, fmt.Errorf("cluster: edge %s: unknown region %q", es.ID, es.Region)
		}
		if _, dup := w.byID[es.ID]; dup {
			return nil, fmt.Errorf("cluster: edge %s listed twice", es.ID)
		}
		if _, err := sn.AddHost(edgeHost(es.ID), es.Region); err != nil {
			return nil, err
		}
		httpAddr := es.ID + ".edge.wan:80"
		w.edges = append(w.edges, &EdgeNode{
			Spec: EdgeSpec{ID: es.ID, Region: es.Region, Lat: r.Lat, Lon: r.Lon, HTTPAddr: httpAddr},
			URL:  "http://" + httpAddr,
			dir:  filepath.Join(cfg.Dir, "edge-"+es.ID),
		})
		w.byID[es.ID] = i
	}
	if err := w.StartOrigin(); err != nil {
		sn.Close()
		return nil, err
	}
	for _, en := range w.edges {
		if err := w.startEdge(en); err != nil {
			w.Close()
			return nil, err
		}
	}
	return w, nil
}

// StartOrigin starts (or restarts) the origin on its host.
func (w *WAN) StartOrigin() error {
	return w.origin.start(func() (*node[*origin.Origin], error) {
		pc, err := w.Net.Listen(originHost, quicPort)
		if err != nil {
			return nil, err
		}
		ln, err := w.Mem.Listen(originHTTPWAN)
		if err != nil {
			pc.Close()
			return nil, err
		}
		n, err := w.settings().runOrigin(originID, pc, ln, nil, nil)
		if err != nil {
			pc.Close()
			ln.Close()
			return nil, err
		}
		return n, nil
	})
}

func (w *WAN) settings() nodeSettings {
	return nodeSettings{
		dir: w.cfg.Dir, ca: w.CA, token: w.Token, leaseTerm: w.cfg.LeaseTerm, replicas: w.cfg.Replicas,
		publishTimeout: w.cfg.PublishTimeout, maxObjectSize: w.cfg.MaxObjectSize,
		cacheSize: w.cfg.CacheSize, diskBytes: w.cfg.DiskBytes, logger: w.cfg.Logger, onEvent: w.cfg.OnEvent,
		logRetention: w.cfg.LogRetention, resyncInterval: w.cfg.ResyncInterval,
		reassignAfter: w.cfg.ReassignAfter, upstreams: w.cfg.Upstreams, edgeCert: w.cfg.EdgeCertificate,
	}
}

// StopOrigin shuts the origin down gracefully.
func (w *WAN) StopOrigin() error {
	return w.origin.stop()
}

// RestartOrigin stops and starts the origin.
func (w *WAN) RestartOrigin() error {
	if err := w.StopOrigin(); err != nil {
		return err
	}
	return w.StartOrigin()
}

// Origin returns the running origin, or nil while it is stopped.
func (w *WAN) Origin() *origin.Origin {
	return w.origin.get()
}

// OriginURL is the origin admin API's base URL, reachable with Client.
func (w *WAN) OriginURL() string { return "http://" + originHTTPWAN }

// Edges returns the edges in spec order.
func (w *WAN) Edges() []*EdgeNode { return w.edges }

// Edge returns the edge with id, or nil.
func (w *WAN) Edge(id string) *EdgeNode {
	i, ok := w.byID[id]
	if !ok {
		return nil
	}
	return w.edges[i]
}

func (w *WAN) startEdge(en *EdgeNode) error {
	en.mu.Lock()
	defer en.mu.Unlock()
	if en.node != nil {
		return fmt.Errorf("cluster: edge %s already running", en.Spec.ID)
	}
	pc, err := w.Net.Listen(edgeHost(en.Spec.ID), quicPort)
	if err != nil {
		return err
	}
	ln, err := w.Mem.Listen(en.Spec.HTTPAddr)
	if err != nil {
		pc.Close()
		return err
	}
	if w.cfg.EdgeCertificate != nil {
		if en.httpsLn, err = w.Mem.Listen(en.Spec.ID + ".edge.wan:443"); err != nil {
			pc.Close()
			ln.Close()
			return err
		}
		if en.h3Conn, err = w.Net.Listen(edgeHost(en.Spec.ID), edgeH3Port); err != nil {
			pc.Close()
			ln.Close()
			en.httpsLn.Close()
			return err
		}
	}
	n, err := w.settings().runEdge(en, []net.Addr{w.originAddr}, pc, ln)
	if err != nil {
		pc.Close()
		ln.Close()
		if en.httpsLn != nil {
			en.httpsLn.Close()
			en.h3Conn.Close()
		}
		return err
	}
	en.node = n
	return nil
}

func (w *WAN) index(id string) (int, error) {
	i, ok := w.byID[id]
	if !ok {
		return 0, fmt.Errorf("cluster: no edge %q", id)
	}
	return i, nil
}

// KillEdge stops the edge with id. Its data directory is kept.
func (w *WAN) KillEdge(id string) error {
	i, err := w.index(id)
	if err != nil {
		return err
	}
	return w.edges[i].kill()
}

// StartEdge starts the edge with id again after KillEdge.
func (w *WAN) StartEdge(id string) error {
	i, err := w.index(id)
	if err != nil {
		return err
	}
	return w.startEdge(w.edges[i])
}

// RestartEdge kills and starts the edge with id.
func (w *WAN) RestartEdge(id string) error {
	if err := w.KillEdge(id); err != nil {
		return err
	}
	return w.StartEdge(id)
}

// Partition cuts the edge with id off from every other node, both ways.
func (w *WAN) Partition(id string) error {
	if _, err := w.index(id); err != nil {
		return err
	}
	return w.Net.Isolate(edgeHost(id))
}

// PartitionOneWay cuts one direction between the edge with id and the
// origin; the other keeps working.
func (w *WAN) PartitionOneWay(id string, d Direction) error {
	if _, err := w.index(id); err != nil {
		return err
	}
	switch d {
	case ToEdge:
		return w.Net.PartitionOneWay(originHost, edgeHost(id))
	case FromEdge:
		return w.Net.PartitionOneWay(edgeHost(id), originHost)
	}
	return fmt.Errorf("cluster: bad direction %d", d)
}

// Heal removes every partition involving the edge with id.
func (w *WAN) Heal(id string) error {
	if _, err := w.index(id); err != nil {
		return err
	}
	return w.Net.HealHost(edgeHost(id))
}

// HealAll removes every partition.
func (w *WAN) HealAll() { w.Net.Heal() }

// Close stops every node, then the client's idle connections and the
// network, so nothing the cluster started is left running.
func (w *WAN) Close() error {
	var errs []error
	for _, en := range w.edges {
		errs = append(errs, w.KillEdge(en.Spec.ID))
	}
	errs = append(errs, w.StopOrigin())
	w.Client.CloseIdleConnections()
	errs = append(errs, w.Net.Close())
	return errors.Join(errs...)
}
