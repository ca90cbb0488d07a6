// Package simwan is a simulated wide-area network for tests: a
// simnet.Router (github.com/quic-go/quic-go/testutils/simnet) that places
// every host in a region of a latency matrix, delays each packet by the
// one-way latency between the two regions, drops a seeded share of packets,
// and drops everything a partition cuts, with partitions switched on and off
// at run time. Hosts get net.PacketConns that quic.Transport can use.
//
// Delivery uses time.AfterFunc, so under testing/synctest simulated seconds
// cost no wall time and a run is repeatable.
//
// Key invariant: a packet is delivered at most once, exactly one one-way
// latency after it was sent, and never if at send time a partition cut its
// direction or the loss draw dropped it; nothing else reorders, delays or
// drops packets.
package simwan

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go/testutils/simnet"
)

// Config configures a Network.
type Config struct {
	// Matrix gives the latency between regions. Default DefaultMatrix().
	Matrix *Matrix
	// IntraRegion is the one-way latency between two hosts of the same
	// region (the matrix's diagonal is 0). Default 0.
	IntraRegion time.Duration
	// Loss is the probability in [0, 1) that a packet is dropped. It can
	// be changed with SetLoss. Default 0.
	Loss float64
	// Seed seeds the loss draws. Each direction of each host pair has its
	// own generator, so the draws a link sees depend only on the seed and
	// the order of that link's packets.
	Seed uint64
}

// Stats counts packets since the Network was made.
type Stats struct {
	// Sent is every packet handed to the network.
	Sent uint64
	// Delivered is every packet that reached its destination's conn.
	Delivered uint64
	// Cut is every packet a partition dropped.
	Cut uint64
	// Lost is every packet the loss draw dropped.
	Lost uint64
}

type host struct {
	name   string
	region string
	ip     netip.Addr
}

type link struct{ from, to string }

// Network is a simulated WAN. It implements simnet.Router; its methods are
// safe for concurrent use.
type Network struct {
	matrix *Matrix
	intra  time.Duration
	seed   uint64
	// deliver hands packets to the conns once their latency has passed.
	deliver simnet.PerfectRouter

	mu       sync.Mutex
	closed   bool
	hosts    map[string]*host
	byIP     map[netip.Addr]*host
	cut      map[link]bool
	isolated map[string]bool
	loss     float64
	rngs     map[link]*rand.Rand
	// pending holds the timers of packets in flight, so Close can stop
	// them and leave nothing running in a synctest bubble.
	pending map[*time.Timer]struct{}
	stats   Stats
}

var _ simnet.Router = (*Network)(nil)

// New makes an empty network.
func New(cfg Config) (*Network, error) {
	if cfg.Matrix == nil {
		cfg.Matrix = DefaultMatrix()
	}
	if cfg.Loss < 0 || cfg.Loss >= 1 {
		return nil, fmt.Errorf("simwan: loss %v not in [0, 1)", cfg.Loss)
	}
	if cfg.IntraRegion < 0 {
		return nil, fmt.Errorf("simwan: negative intra-region latency %v", cfg.IntraRegion)
	}
	return &Network{
		matrix: cfg.Matrix, intra: cfg.IntraRegion, seed: cfg.Seed, loss: cfg.Loss,
		hosts: map[string]*host{}, byIP: map[netip.Addr]*host{},
		cut: map[link]bool{}, isolated: map[string]bool{}, rngs: map[link]*rand.Rand{},
		pending: map[*time.Timer]struct{}{},
	}, nil
}

// Matrix is the network's latency matrix.
func (n *Network) Matrix() *Matrix { return n.matrix }

// AddHost places a new host named name in region and gives it an address
// in 10.0.0.0/8. Hosts are never removed: a restarted node listens again
// on its host.
func (n *Network) AddHost(name, region string) (netip.Addr, error) {
	if _, ok := n.matrix.Region(region); !ok {
		return netip.Addr{}, fmt.Errorf("simwan: host %q: unknown region %q", name, region)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, dup := n.hosts[name]; dup {
		return netip.Addr{}, fmt.Errorf("simwan: host %q exists", name)
	}
	k := len(n.hosts) + 1
	if k >= 1<<16 {
		return netip.Addr{}, errors.New("simwan: too many hosts")
	}
	h := &host{name: name, region: region, ip: netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)})}
	n.hosts[name] = h
	n.byIP[h.ip] = h
	return h.ip, nil
}

// Addr is the UDP address of port on host.
func (n *Network) Addr(hostName string, port int) (*net.UDPAddr, error) {
	n.mu.Lock()
	h, ok := n.hosts[hostName]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("simwan: unknown host %q", hostName)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.ip, uint16(port))), nil
}

// Listen returns a conn bound to port on host, replacing any earlier conn
// on that address (a restarted node takes its old address back). The conn
// blocks delivery rather than drop packets when its reader falls behind,
// so the only losses are the ones the network was told to make. Close it
// when the node stops.
func (n *Network) Listen(hostName string, port int) (*simnet.SimConn, error) {
	addr, err := n.Addr(hostName, port)
	if err != nil {
		return nil, err
	}
	return simnet.NewBlockingSimConn(addr, n), nil
}

// AddNode implements simnet.Router; SimConns call it when they are made.
func (n *Network) AddNode(addr net.Addr, r simnet.PacketReceiver) { n.deliver.AddNode(addr, r) }

// SendPacket implements simnet.Router: it drops what a partition cuts or
// the loss draw picks, and delivers the rest after the one-way latency.
// Packets to addresses no host owns vanish, as UDP to nowhere does.
func (n *Network) SendPacket(p simnet.Packet) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	n.stats.Sent++
	from, to := n.hostOf(p.From), n.hostOf(p.To)
	if from == nil || to == nil {
		n.stats.Cut++
		return nil
	}
	l := link{from.name, to.name}
	if n.cut[l] || n.isolated[from.name] || n.isolated[to.name] {
		n.stats.Cut++
		return nil
	}
	if n.loss > 0 && n.rng(l).Float64() < n.loss {
		n.stats.Lost++
		return nil
	}
	delay := n.intra
	if from.region != to.region {
		delay, _ = n.matrix.OneWay(from.region, to.region)
	}
	var tm *time.Timer
	tm = time.AfterFunc(delay, func() {
		n.mu.Lock()
		_, live := n.pending[tm]
		delete(n.pending, tm)
		if live {
			n.stats.Delivered++
		}
		n.mu.Unlock()
		if live {
			// PerfectRouter only errs for an address with no conn,
			// which is a packet to nowhere.
			_ = n.deliver.SendPacket(p)
		}
	})
	n.pending[tm] = struct{}{}
	return nil
}

func (n *Network) hostOf(a net.Addr) *host {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return nil
		}
	}
	return n.byIP[ap.Addr().Unmap()]
}

// rng is the loss generator of one direction of one host pair; n.mu held.
func (n *Network) rng(l link) *rand.Rand {
	r, ok := n.rngs[l]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(l.from))
		h.Write([]byte{0})
		h.Write([]byte(l.to))
		r = rand.New(rand.NewPCG(n.seed, h.Sum64()))
		n.rngs[l] = r
	}
	return r
}

// SetLoss changes the loss probability for packets sent from now on.
func (n *Network) SetLoss(p float64) error {
	if p < 0 || p >= 1 {
		return fmt.Errorf("simwan: loss %v not in [0, 1)", p)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
	return nil
}

func (n *Network) known(names ...string) error {
	for _, name := range names {
		if _, ok := n.hosts[name]; !ok {
			return fmt.Errorf("simwan: unknown host %q", name)
		}
	}
	return nil
}

// Partition cuts both directions between hosts a and b. Packets already
// in flight still arrive.
func (n *Network) Partition(a, b string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.known(a, b); err != nil {
		return err
	}
	n.cut[link{a, b}] = true
	n.cut[link{b, a}] = true
	return nil
}

// PartitionOneWay cuts packets from host from to host to; the other
// direction keeps working.
func (n *Network) PartitionOneWay(from, to string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.known(from, to); err != nil {
		return err
	}
	n.cut[link{from, to}] = true
	return nil
}

// Isolate cuts host from every other host, both ways, including hosts
// added later.
func (n *Network) Isolate(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.known(name); err != nil {
		return err
	}
	n.isolated[name] = true
	return nil
}

// HealHost removes every partition that involves host name.
func (n *Network) HealHost(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.known(name); err != nil {
		return err
	}
	delete(n.isolated, name)
	for l := range n.cut {
		if l.from == name || l.to == name {
			delete(n.cut, l)
		}
	}
	return nil
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.isolated)
}

// Stats returns the packet counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close drops every packet in flight and refuses new ones. The hosts'
// conns are their owners' to close.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for tm := range n.pending {
		tm.Stop()
	}
	clear(n.pending)
	return nil
}
