package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/geocdn/geocdn/internal/geoip"
)

// The DNS front end answers A and AAAA queries for the configured CDN
// hostnames with the addresses of the edge Router.Decide picks for the
// client (key "", so the client's network is hashed for affinity), and is
// authoritative for one zone: SOA and NS at its apex, NXDOMAIN or NODATA
// with the SOA for negative caching, REFUSED outside it. It never
// recurses (RA is clear; RD is copied and ignored).
//
// The client is the EDNS Client Subnet address (RFC 7871) when the query
// carries one with a non-zero source prefix, else the resolver's address.
// The answer's ECS scope is the prefix the answer depended on: the GeoIP
// network the client was placed by (which the location cache also keys
// on), and never shorter than the /24 or /48 the affinity hash reads.
//
// An answer needs addresses where a Decision has a URL. An edge's
// addresses are Config.DNSEdgeAddrs[id] when given, else the host of its
// public URL when that is an IP literal; an edge with neither is left out
// of DNS decisions (logged, and counted in
// geocdn_router_dns_edges_without_address), so DNS never names an edge it
// cannot give an address for. Names are never resolved: the router must
// not depend on other DNS servers to answer.

const (
	// dnsMaxUDP is the largest UDP answer, and the EDNS buffer size
	// advertised: the DNS Flag Day 2020 value, which avoids IP
	// fragmentation on common paths. Larger answers are truncated (TC)
	// and the resolver asks again over TCP.
	dnsMaxUDP = 1232
	// dnsReadUDP is the buffer UDP queries are read into: a query is a
	// name and a few options, but a short buffer would cut a long one.
	dnsReadUDP = 4096
	// Transports, indexes of the metrics.
	dnsUDP = 0
	dnsTCP = 1
)

// DefaultDNSTTL is the TTL of DNS answers when Config.DNSTTL is zero:
// short, so clients follow an edge's health within half a minute.
const DefaultDNSTTL = 30 * time.Second

// Nameserver is one NS record of the DNS zone. A name inside the zone
// needs its addresses (the glue the parent zone also holds), which the
// router answers A and AAAA queries for; a name outside it has none here.
type Nameserver struct {
	Name  string
	Addrs []netip.Addr
}

// dnsZone is the static part of the zone: which names exist and what the
// apex holds. Names are lower-case and fully qualified.
type dnsZone struct {
	apex   string
	ttl    uint32
	soa    *dns.SOA
	ns     []dns.RR
	glue   map[string][]dns.RR // in-zone nameserver → its A and AAAA
	served map[string]bool     // answered with edge addresses
	// exists holds every name with records and every empty
	// non-terminal above one: those answer NODATA, never NXDOMAIN,
	// which resolvers (RFC 8020) take to mean nothing exists below.
	exists map[string]bool
}

// newDNSZone checks the DNS part of c and builds the zone. bound is the
// address the server listens on; a specific one is the default
// nameserver's glue.
func newDNSZone(c Config, bound netip.Addr, serial uint32) (*dnsZone, error) {
	if c.DNSZone == "" {
		return nil, errors.New("dns zone: required with DNS")
	}
	apex, err := canonicalName(c.DNSZone)
	if err != nil {
		return nil, fmt.Errorf("dns zone: %q is not a domain name", c.DNSZone)
	}
	if apex == "." {
		return nil, errors.New("dns zone: the root zone cannot be served")
	}
	if c.DNSTTL < time.Second || c.DNSTTL > time.Hour {
		return nil, fmt.Errorf("dns ttl: %v is outside [1s, 1h]", c.DNSTTL)
	}
	z := &dnsZone{
		apex: apex, ttl: uint32(c.DNSTTL / time.Second),
		glue: map[string][]dns.RR{}, served: map[string]bool{}, exists: map[string]bool{},
	}
	z.addName(apex)
	names := c.DNSNames
	if len(names) == 0 {
		names = []string{apex}
	}
	for _, n := range names {
		cn, err := canonicalName(n)
		if err != nil || strings.Contains(cn, "*") {
			return nil, fmt.Errorf("dns names: %q is not a domain name (wildcards are not supported)", n)
		}
		if !z.contains(cn) {
			return nil, fmt.Errorf("dns names: %s is not in the zone %s", cn, apex)
		}
		z.served[cn] = true
		z.addName(cn)
	}
	nss := c.DNSNameservers
	if len(nss) == 0 {
		// A complete zone out of the box: ns.<zone>, with the address
		// the server is bound to when that is a specific one.
		ns := Nameserver{Name: "ns." + apex}
		if bound.IsValid() && !bound.IsUnspecified() {
			ns.Addrs = []netip.Addr{bound.Unmap()}
		}
		nss = []Nameserver{ns}
	}
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: z.ttl}
	}
	for _, ns := range nss {
		cn, err := canonicalName(ns.Name)
		if err != nil || strings.Contains(cn, "*") {
			return nil, fmt.Errorf("dns nameservers: %q is not a domain name", ns.Name)
		}
		z.ns = append(z.ns, &dns.NS{Hdr: hdr(apex, dns.TypeNS), Ns: cn})
		if !z.contains(cn) {
			if len(ns.Addrs) > 0 {
				return nil, fmt.Errorf("dns nameservers: %s is outside the zone %s: its addresses are not this server's to answer", cn, apex)
			}
			continue
		}
		if z.served[cn] || cn == apex {
			return nil, fmt.Errorf("dns nameservers: %s is also a name answered with edges", cn)
		}
		if len(ns.Addrs) == 0 && len(c.DNSNameservers) > 0 {
			return nil, fmt.Errorf("dns nameservers: %s is in the zone and needs an address (NAME=ADDR)", cn)
		}
		z.addName(cn)
		glue := z.glue[cn]
		for _, a := range ns.Addrs {
			if a = a.Unmap(); a.Is4() {
				glue = append(glue, &dns.A{Hdr: hdr(cn, dns.TypeA), A: net.IP(a.AsSlice())})
			} else if a.Is6() {
				glue = append(glue, &dns.AAAA{Hdr: hdr(cn, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
			}
		}
		z.glue[cn] = glue
	}
	z.soa = &dns.SOA{
		Hdr: hdr(apex, dns.TypeSOA), Ns: z.ns[0].(*dns.NS).Ns, Mbox: "hostmaster." + apex,
		Serial: serial, Refresh: 3600, Retry: 600, Expire: 7 * 86400,
		// The negative-caching TTL (RFC 2308): a name that does not
		// exist is forgotten as soon as an answer would be.
		Minttl: z.ttl,
	}
	return z, nil
}

// addName records name and the empty non-terminals between it and the
// apex.
func (z *dnsZone) addName(name string) {
	for n := name; ; {
		z.exists[n] = true
		if n == z.apex {
			return
		}
		_, n, _ = strings.Cut(n, ".")
	}
}

func (z *dnsZone) contains(name string) bool {
	return name == z.apex || strings.HasSuffix(name, "."+z.apex)
}

// canonicalName is name fully qualified and in lower case.
func canonicalName(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	return dns.Fqdn(name), nil
}

// lowerASCII lower-cases name without allocating when it already is:
// DNS names compare case-insensitively, and resolvers randomise the case
// of their queries (0x20 encoding).
func lowerASCII(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// dnsView is the router's current Table seen by the DNS front end: the
// routable edges that have an address, and those addresses.
type dnsView struct {
	src     *Table // the router's table this view was derived from
	table   *Table // src, or src without the edges that have no address
	addrs   map[string]edgeAddrs
	skipped []string // routable edges without an address, sorted
}

type edgeAddrs struct{ v4, v6 []net.IP }

// dnsServer is the DNS front end of a Router.
type dnsServer struct {
	r     *Router
	zone  *dnsZone
	pc    net.PacketConn
	ln    net.Listener
	m     *dnsMetrics
	edges map[string][]netip.Addr // Config.DNSEdgeAddrs

	// UDP is served by serveBatch when pc is a UDP socket bound to one
	// address (batch is then set), else by miekg/dns's server (udp),
	// which also picks each answer's source address on a wildcard one.
	batch   batchConn
	readers sync.WaitGroup
	udp     *dns.Server
	tcp     *dns.Server
	running []*dns.Server // started by start, for shutdown

	mu   sync.Mutex // serialises view rebuilds
	view atomic.Pointer[dnsView]
}

// batchConn reads and writes datagrams several to a system call
// (recvmmsg, sendmmsg): *ipv4.PacketConn and *ipv6.PacketConn.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

var (
	_ batchConn = (*ipv4.PacketConn)(nil)
	_ batchConn = (*ipv6.PacketConn)(nil)
)

// udpBatch is the most datagrams one system call reads, or sends.
const udpBatch = 32

// newDNSServer binds the DNS sockets (or takes the configured ones) and
// builds the zone; start serves.
func newDNSServer(r *Router) (*dnsServer, error) {
	cfg := r.cfg
	s := &dnsServer{r: r, pc: cfg.DNSPacketConn, ln: cfg.DNSListener, edges: cfg.DNSEdgeAddrs}
	if s.pc == nil {
		var err error
		if s.pc, s.ln, err = listenDNS(cfg.DNSAddr); err != nil {
			return nil, fmt.Errorf("listen dns %s: %w", cfg.DNSAddr, err)
		}
	}
	var bound netip.Addr
	if ua, ok := s.pc.LocalAddr().(*net.UDPAddr); ok {
		bound = ua.AddrPort().Addr().Unmap()
	}
	z, err := newDNSZone(cfg, bound, uint32(r.clk.Now().Unix()))
	if err != nil {
		s.close()
		return nil, err
	}
	s.zone = z
	if len(cfg.DNSNameservers) == 0 && len(z.glue[z.soa.Ns]) == 0 {
		r.log.Warn("router: dns nameserver "+z.soa.Ns+" has no address: the server listens on every address; name the zone's nameservers with --dns-ns",
			"listen", s.pc.LocalAddr().String())
	}
	s.m = newDNSMetrics(cfg.Registry, s)
	if uc, ok := s.pc.(*net.UDPConn); ok && bound.IsValid() && !bound.IsUnspecified() {
		if bound.Is4() {
			s.batch = ipv4.NewPacketConn(uc)
		} else {
			s.batch = ipv6.NewPacketConn(uc)
		}
	} else {
		s.udp = s.newServer(dnsUDP)
		s.udp.PacketConn = s.pc
	}
	s.tcp = s.newServer(dnsTCP)
	s.tcp.Listener = s.ln
	return s, nil
}

// listenDNS binds UDP and TCP on the same address. With port 0 the kernel
// picks the UDP port, which may be taken for TCP: then it tries again.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, nil, err
		}
	}
}

var transportNames = [...]string{dnsUDP: "udp", dnsTCP: "tcp"}

// newServer is a miekg/dns server of transport, answering as serveWire
// does.
func (s *dnsServer) newServer(transport int) *dns.Server {
	return &dns.Server{
		Net:     transportNames[transport],
		Handler: dnsHandler{s, transport},
		UDPSize: dnsReadUDP,
		// The miekg/dns defaults, stated: a query that takes longer to
		// arrive is a client holding a connection for nothing.
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		// Check ECS on the wire before the message is parsed.
		DecorateReader: func(rd dns.Reader) dns.Reader { return ecsCheckReader{rd} },
		MsgAcceptFunc:  func(dh dns.Header) dns.MsgAcceptAction { return s.accept(transport, dh) },
		MsgInvalidFunc: func(m []byte, err error) {
			// Shorter than a header: dropped. Else the server answers
			// FORMERR (a message, or an ECS option, that does not parse).
			if len(m) < 12 {
				s.m.dropped[transport].Inc()
				return
			}
			s.m.respond(transport, dns.RcodeFormatError)
		},
	}
}

// accept decides from its header whether a message is answered, and
// counts those the handler will not see: responses are dropped, opcodes
// other than QUERY answered NOTIMP, messages without exactly one question
// (or with more records than a query has) FORMERR.
func (s *dnsServer) accept(transport int, dh dns.Header) dns.MsgAcceptAction {
	a := dns.DefaultMsgAcceptFunc(dh)
	if a == dns.MsgAccept && int(dh.Bits>>11)&0xF == dns.OpcodeNotify {
		a = dns.MsgRejectNotImplemented // not a secondary: nothing to be notified of
	}
	switch a {
	case dns.MsgReject:
		s.m.respond(transport, dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		s.m.respond(transport, dns.RcodeNotImplemented)
	case dns.MsgIgnore:
		s.m.dropped[transport].Inc()
	}
	return a
}

// start serves UDP and TCP, reporting a failure on errc (without
// blocking), and returns once both serve.
func (s *dnsServer) start(errc chan<- error) {
	report := func(transport int, err error) {
		select {
		case errc <- fmt.Errorf("router dns %s: %w", transportNames[transport], err):
		default:
		}
	}
	if s.batch != nil {
		for range min(runtime.GOMAXPROCS(0), 16) {
			s.readers.Go(func() {
				if err := s.serveBatch(); err != nil {
					report(dnsUDP, err)
				}
			})
		}
	}
	for transport, srv := range [...]*dns.Server{dnsUDP: s.udp, dnsTCP: s.tcp} {
		if srv == nil {
			continue
		}
		up, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(up) }
		go func() {
			defer close(done)
			if err := srv.ActivateAndServe(); err != nil {
				report(transport, err)
			}
		}()
		select {
		case <-up:
			s.running = append(s.running, srv)
		case <-done:
		}
	}
}

// shutdown stops serving and waits for the queries in hand.
func (s *dnsServer) shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range s.running {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.batch != nil {
		s.pc.Close()
		done := make(chan struct{})
		go func() {
			s.readers.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// close releases the sockets.
func (s *dnsServer) close() error {
	var errs []error
	for _, c := range []interface{ Close() error }{s.pc, s.ln} {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// serveBatch answers UDP queries until the socket is closed: a batch of
// datagrams read in one system call, answered in turn, the answers sent
// in one. On one core this doubles the rate of a read, a goroutine and a
// write per query, which the system calls dominate.
func (s *dnsServer) serveBatch() error {
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	rbuf := make([]byte, udpBatch*dnsReadUDP)
	wbuf := make([]byte, udpBatch*dnsMaxUDP)
	for i := range in {
		in[i].Buffers = [][]byte{rbuf[i*dnsReadUDP : (i+1)*dnsReadUDP : (i+1)*dnsReadUDP]}
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := s.batch.ReadBatch(in, 0)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		k := 0
		for _, msg := range in[:n] {
			ua, ok := msg.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			buf := wbuf[k*dnsMaxUDP : k*dnsMaxUDP : (k+1)*dnsMaxUDP]
			if reply := s.serveWire(msg.Buffers[0][:msg.N], ua.AddrPort().Addr(), buf); reply != nil {
				out[k].Buffers[0], out[k].Addr = reply, msg.Addr
				k++
			}
		}
		for sent := 0; sent < k; {
			n, err := s.batch.WriteBatch(out[sent:k], 0)
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if err != nil {
				// The first answer could not be sent (its resolver
				// is unreachable, say): drop it, send the rest.
				s.r.log.Debug("router: dns answer not sent", "peer", out[sent].Addr.String(), "err", err)
				n = 1
			}
			sent += n
		}
	}
}

// serveWire answers one UDP datagram as miekg/dns's server would, and
// counts it: the answer packed into buf (or another buffer if it does
// not fit), nil for none.
func (s *dnsServer) serveWire(msg []byte, peer netip.Addr, buf []byte) []byte {
	if len(msg) < 12 {
		s.m.dropped[dnsUDP].Inc()
		return nil
	}
	markBadECS(msg)
	be := func(i int) uint16 { return uint16(msg[i])<<8 | uint16(msg[i+1]) }
	dh := dns.Header{Id: be(0), Bits: be(2), Qdcount: be(4), Ancount: be(6), Nscount: be(8), Arcount: be(10)}
	var m *dns.Msg
	switch s.accept(dnsUDP, dh) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgReject:
		m = rejection(dh, dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		m = rejection(dh, dns.RcodeNotImplemented)
	default:
		req := new(dns.Msg)
		if err := req.Unpack(msg); err != nil {
			s.m.respond(dnsUDP, dns.RcodeFormatError)
			m = rejection(dh, dns.RcodeFormatError)
			break
		}
		var size int
		m, size = s.answer(req, peer, false)
		m.Truncate(size)
		if m.Truncated {
			s.m.truncated.Inc()
		}
		s.m.respond(dnsUDP, m.Rcode)
	}
	out, err := m.PackBuffer(buf)
	if err != nil {
		s.r.log.Debug("router: dns answer does not pack", "peer", peer.String(), "err", err)
		return nil
	}
	return out
}

// rejection is the answer to a message refused on its header: the header
// alone, with rcode.
func rejection(dh dns.Header, rcode int) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Id: dh.Id, Response: true, Opcode: int(dh.Bits>>11) & 0xF, Rcode: rcode}}
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired = dh.Bits&(1<<8) != 0
		m.CheckingDisabled = dh.Bits&(1<<4) != 0
	}
	return m
}

// current is the view of the router's table now, rebuilt when the table
// changed (membership or health).
func (s *dnsServer) current() *dnsView {
	src := s.r.table.Load()
	if v := s.view.Load(); v != nil && v.src == src {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.view.Load()
	src = s.r.table.Load()
	if prev != nil && prev.src == src {
		return prev
	}
	v := s.buildView(src)
	if prev == nil && len(v.skipped) > 0 || prev != nil && !slices.Equal(prev.skipped, v.skipped) {
		if len(v.skipped) > 0 {
			s.r.log.Warn("router: edges without an address are left out of DNS answers; give them one with --dns-edge-addrs",
				"edges", strings.Join(v.skipped, ","))
		} else {
			s.r.log.Info("router: every routable edge has an address for DNS answers")
		}
	}
	s.view.Store(v)
	return v
}

func (s *dnsServer) buildView(src *Table) *dnsView {
	v := &dnsView{src: src, table: src, addrs: make(map[string]edgeAddrs, len(src.edges))}
	keep := make([]Edge, 0, len(src.edges))
	for _, e := range src.edges {
		a := s.addrsOf(e.id, e.url)
		if len(a.v4)+len(a.v6) == 0 {
			v.skipped = append(v.skipped, e.id)
			continue
		}
		v.addrs[e.id] = a
		keep = append(keep, Edge{ID: e.id, Region: e.region, Lat: e.point.Lat, Lon: e.point.Lon, PublicURL: e.url, Healthy: true, RTT: e.rtt})
	}
	if len(v.skipped) > 0 {
		v.table = s.r.newTable(keep)
	}
	return v
}

// addrsOf is the addresses of edge id: the configured ones, else the host
// of its public URL when that is an IP literal.
func (s *dnsServer) addrsOf(id, publicURL string) edgeAddrs {
	addrs := s.edges[id]
	if len(addrs) == 0 {
		if u, err := url.Parse(publicURL); err == nil {
			if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.Zone() == "" {
				addrs = []netip.Addr{a}
			}
		}
	}
	var out edgeAddrs
	for _, a := range addrs {
		switch a = a.Unmap(); {
		case a.Is4():
			out.v4 = append(out.v4, net.IP(a.AsSlice()))
		case a.Is6():
			out.v6 = append(out.v6, net.IP(a.AsSlice()))
		}
	}
	return out
}

// dnsHandler serves one transport.
type dnsHandler struct {
	s         *dnsServer
	transport int
}

func (h dnsHandler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var peer netip.Addr
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		peer = a.AddrPort().Addr()
	case *net.TCPAddr:
		peer = a.AddrPort().Addr()
	}
	m, size := h.s.answer(req, peer, h.transport == dnsTCP)
	m.Truncate(size)
	if m.Truncated {
		h.s.m.truncated.Inc()
	}
	if err := w.WriteMsg(m); err != nil {
		h.s.r.log.Debug("router: dns answer not sent", "peer", peer.String(), "err", err)
		return
	}
	h.s.m.respond(h.transport, m.Rcode)
}

// answer is the response to req from peer, and the size it must fit.
func (s *dnsServer) answer(req *dns.Msg, peer netip.Addr, tcp bool) (*dns.Msg, int) {
	m := new(dns.Msg)
	m.SetReply(req)
	size := dns.MinMsgSize
	if tcp {
		size = dns.MaxMsgSize
	}
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		m.Rcode = dns.RcodeNotImplemented
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
		}
		return m, size
	}
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil { // RFC 6891 §6.1.1
				m.Rcode = dns.RcodeFormatError
				return m, size
			}
			opt = o
		}
	}
	var ecs *dns.EDNS0_SUBNET
	if opt != nil {
		ropt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ropt.SetUDPSize(dnsMaxUDP)
		ropt.SetDo(opt.Do())
		m.Extra = append(m.Extra, ropt)
		if !tcp {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), dnsMaxUDP)
		}
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers // the OPT above carries it
			return m, size
		}
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				// Echoed with scope 0 (the answer is everyone's)
				// unless an answer depends on the client.
				ecs = &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: e.Family, SourceNetmask: e.SourceNetmask, Address: e.Address}
				ropt.Option = append(ropt.Option, ecs)
			}
		}
	}
	q := req.Question[0]
	name := lowerASCII(q.Name)
	z := s.zone
	if q.Qclass != dns.ClassINET || !z.contains(name) {
		m.Rcode = dns.RcodeRefused // not ours, and nothing is recursive
		return m, size
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused // the zone is computed, not transferred
		return m, size
	}
	m.Authoritative = true
	switch {
	case name == z.apex && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY && !z.served[name]):
		m.Answer = append(m.Answer, z.soa)
	case name == z.apex && q.Qtype == dns.TypeNS:
		m.Answer = append(m.Answer, z.ns...)
		for _, ns := range z.ns {
			m.Extra = append(m.Extra, z.glue[ns.(*dns.NS).Ns]...)
		}
	case z.served[name] && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
		s.answerEdge(m, q, name, peer, ecs)
	case z.glue[name] != nil:
		for _, rr := range z.glue[name] {
			if t := rr.Header().Rrtype; t == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, rr)
			}
		}
	case !z.exists[name]:
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
		m.Ns = append(m.Ns, z.soa) // NODATA or NXDOMAIN: negative caching
	}
	return m, size
}

// answerEdge adds the decided edge's addresses of q's type to m.
func (s *dnsServer) answerEdge(m *dns.Msg, q dns.Question, name string, peer netip.Addr, ecs *dns.EDNS0_SUBNET) {
	client, source := peer, 0
	if ecs != nil && ecs.SourceNetmask > 0 {
		// A zero source prefix is the client opting out (RFC 7871
		// §7.1.2): the resolver's address is used, scope 0.
		client, source = ecsAddr(ecs), int(ecs.SourceNetmask)
		s.m.ecs.Inc()
	}
	v := s.current()
	d, err := s.r.decideOn(v.table, client, s.r.nsFor(strings.TrimSuffix(name, ".")), "", false)
	if err != nil {
		// No edge anyone could be sent to: resolvers try again soon,
		// or serve what they had (RFC 8767).
		m.Rcode, m.Authoritative = dns.RcodeServerFailure, false
		return
	}
	if source > 0 {
		ecs.SourceScope = ecsScope(d.Location, client, source)
	}
	a := v.addrs[d.Edge]
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.zone.ttl}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		hdr.Rrtype = dns.TypeA
		for _, ip := range a.v4 {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
		}
	}
	// ANY gets one RRset (RFC 8482): the A records if there are any.
	if q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY && len(m.Answer) == 0 {
		hdr.Rrtype = dns.TypeAAAA
		for _, ip := range a.v6 {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
		}
	}
}

// ecsAddr is the address of a checked ECS option (ecsCheckReader).
func ecsAddr(e *dns.EDNS0_SUBNET) netip.Addr {
	if e.Family == 1 {
		a, _ := netip.AddrFromSlice(e.Address.To4())
		return a
	}
	a, _ := netip.AddrFromSlice(e.Address.To16())
	return a
}

// ecsScope is the prefix of client an answer holds for: the GeoIP
// network it was placed by (the location cache keys on the same network),
// else the source prefix that was all there was to go on; and at least
// the network the affinity hash reads, since the choice among equivalent
// edges depends on it.
func ecsScope(l geoip.Location, client netip.Addr, source int) uint8 {
	bits := source
	if n := l.Record.Network; n.IsValid() && n.Addr().Is4() == client.Is4() && n.Contains(client) {
		bits = n.Bits()
	}
	return uint8(max(bits, affinityBits(client)))
}

// ecsCheckReader checks the ECS option of each message on the wire, where
// its length is still known, before miekg/dns parses it (RFC 7871 §6: a
// server SHOULD answer FORMERR to an ADDRESS longer or shorter than the
// source prefix needs, or with bits set beyond it). It marks a malformed
// option by giving it an unknown family, which the parser rejects: the
// server then answers FORMERR.
type ecsCheckReader struct{ dns.Reader }

func (r ecsCheckReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil {
		markBadECS(m)
	}
	return m, err
}

func (r ecsCheckReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	m, sess, err := r.Reader.ReadUDP(conn, timeout)
	if err == nil {
		markBadECS(m)
	}
	return m, sess, err
}

func (r ecsCheckReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	pr, ok := r.Reader.(dns.PacketConnReader)
	if !ok {
		return nil, nil, errors.New("dns reader cannot read a net.PacketConn")
	}
	m, addr, err := pr.ReadPacketConn(conn, timeout)
	if err == nil {
		markBadECS(m)
	}
	return m, addr, err
}

// markBadECS finds the ECS options of m's OPT record and marks those that
// are malformed, and every one after the first. A message that does not
// parse this far is left to the parser.
func markBadECS(m []byte) {
	if len(m) < 12 {
		return
	}
	count := func(i int) int { return int(m[i])<<8 | int(m[i+1]) }
	off := 12
	for range count(4) { // questions: name, type, class
		if off = skipName(m, off); off < 0 || off+4 > len(m) {
			return
		}
		off += 4
	}
	records := count(6) + count(8) + count(10)
	for i := range records {
		if off = skipName(m, off); off < 0 || off+10 > len(m) {
			return
		}
		typ, rdlen := count(off), count(off+8)
		off += 10
		if off+rdlen > len(m) {
			return
		}
		if typ == int(dns.TypeOPT) && i >= count(6)+count(8) {
			markBadECSOptions(m[off : off+rdlen])
		}
		off += rdlen
	}
}

func markBadECSOptions(opts []byte) {
	seen := false
	for len(opts) >= 4 {
		code, n := int(opts[0])<<8|int(opts[1]), int(opts[2])<<8|int(opts[3])
		if 4+n > len(opts) {
			return
		}
		if o := opts[4 : 4+n]; code == dns.EDNS0SUBNET && len(o) >= 2 {
			if seen || !ecsWellFormed(o) {
				o[0], o[1] = 0xff, 0xff
			}
			seen = true
		}
		opts = opts[4+n:]
	}
}

// ecsWellFormed checks an ECS option's data: family, source prefix within
// the family's length, exactly the octets the prefix needs, no bit set
// beyond it. A scope in a query is ignored rather than refused.
func ecsWellFormed(o []byte) bool {
	if len(o) < 4 {
		return false
	}
	family, source, addr := int(o[0])<<8|int(o[1]), int(o[2]), o[4:]
	switch {
	case family == 0:
		return source == 0 && len(addr) == 0 // "no address" (dig +subnet=0)
	case family == 1 && source <= 32, family == 2 && source <= 128:
	default:
		return false
	}
	if len(addr) != (source+7)/8 {
		return false
	}
	return source%8 == 0 || addr[len(addr)-1]&(0xff>>(source%8)) == 0
}

// skipName returns the offset after the name at off, -1 if it does not
// fit. A compression pointer ends a name.
func skipName(m []byte, off int) int {
	for off < len(m) {
		switch c := int(m[off]); c & 0xc0 {
		case 0x00:
			if c == 0 {
				return off + 1
			}
			off += 1 + c
		case 0xc0:
			if off+2 > len(m) {
				return -1
			}
			return off + 2
		default:
			return -1
		}
	}
	return -1
}
