package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/origin"
)

// dnsEdgeAddrs gives each of the dev edges one IPv4 and one IPv6 address
// of its own, so an answer names its edge.
func dnsEdgeAddrs(specs []Edge) map[string][]netip.Addr {
	m := map[string][]netip.Addr{}
	for i, e := range specs {
		m[e.ID] = []netip.Addr{
			netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}),
			netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%d", i+1)),
		}
	}
	return m
}

// edgeOf is the edge whose address a is.
func edgeOf(addrs map[string][]netip.Addr, a net.IP) string {
	ip, _ := netip.AddrFromSlice(a)
	for id, as := range addrs {
		if slices.Contains(as, ip.Unmap()) {
			return id
		}
	}
	return ""
}

// dnsRouter is a router serving DNS on loopback over a fixed set of
// routable edges: its origin never answers, so membership keeps them.
type dnsRouter struct {
	r        *Router
	udp, tcp string // addresses
	reg      *prometheus.Registry
}

// udpServers are the two ways UDP is served: batched system calls on a
// UDP socket bound to one address, and miekg/dns's server on anything
// else (here, a PacketConn that is not a *net.UDPConn).
var udpServers = []struct {
	name string
	mod  func(*testing.T, *Config)
}{
	{"batch", func(*testing.T, *Config) {}},
	{"miekg", func(t *testing.T, c *Config) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c.DNSAddr, c.DNSPacketConn, c.DNSListener = "", plainPacketConn{pc}, ln
	}},
}

// plainPacketConn hides that a PacketConn is a *net.UDPConn.
type plainPacketConn struct{ net.PacketConn }

func startDNSRouter(t *testing.T, edges []Edge, mod func(*Config)) *dnsRouter {
	t.Helper()
	def := geo.Point{Lat: 50.11, Lon: 8.68} // Frankfurt
	reg := prometheus.NewRegistry()
	cfg := Config{
		HTTPAddr: "-", OriginAdmin: "http://127.0.0.1:1", Token: testToken, GeoIPPath: testDB,
		DefaultLocation: &def, PlanInterval: -1, Registry: reg,
		DNSAddr: "127.0.0.1:0", DNSZone: "cdn.test",
		DNSNames:     []string{"cdn.test", "www.cdn.test", "img.static.cdn.test"},
		DNSEdgeAddrs: dnsEdgeAddrs(edges),
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, plain := cfg.DNSPacketConn.(plainPacketConn); plain != (r.dns.batch == nil) {
		t.Fatalf("UDP served in batches: %v, want %v", r.dns.batch != nil, !plain)
	}
	r.table.Store(r.newTable(edges))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &dnsRouter{r: r, udp: r.DNSAddr().String(), tcp: r.dns.ln.Addr().String(), reg: reg}
}

// query asks name/qtype over network (udp, tcp) with a real client; ecs,
// when valid, is sent as EDNS Client Subnet.
func (d *dnsRouter) query(t *testing.T, network, name string, qtype uint16, ecs netip.Prefix) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	if ecs.IsValid() {
		q.SetEdns0(dns.DefaultMsgSize, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, ecsOption(ecs))
	}
	return d.exchange(t, network, q)
}

func (d *dnsRouter) exchange(t *testing.T, network string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 10 * time.Second} // guards a hang only
	addr := d.udp
	if network == "tcp" {
		addr = d.tcp
	}
	resp, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, q.Question[0].Name, dns.TypeToString[q.Question[0].Qtype], err)
	}
	if resp.Id != q.Id || !resp.Response {
		t.Fatalf("answer id %d response %v, want id %d", resp.Id, resp.Response, q.Id)
	}
	return resp
}

func ecsOption(p netip.Prefix) *dns.EDNS0_SUBNET {
	e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Masked().Addr().AsSlice())}
	if p.Addr().Is6() {
		e.Family = 2
	}
	return e
}

// replyECS is the ECS option of an answer, nil without one.
func replyECS(m *dns.Msg) *dns.EDNS0_SUBNET {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

func answerIPs(m *dns.Msg) []net.IP {
	var out []net.IP
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A)
		case *dns.AAAA:
			out = append(out, rr.AAAA)
		}
	}
	return out
}

// TestDNSAnswersWithTheDecidedEdge asks for A and AAAA with ECS from
// clients around the world, over UDP and TCP: each answer is the address
// of the edge Router.Decide picks for the client without a key, with the
// ECS scope of the GeoIP network it was placed by (at least the /24 or
// /48 affinity reads), and the header an authoritative server sends.
func TestDNSAnswersWithTheDecidedEdge(t *testing.T) {
	for _, us := range udpServers {
		t.Run(us.name, func(t *testing.T) { testDNSAnswers(t, func(c *Config) { us.mod(t, c) }) })
	}
}

func testDNSAnswers(t *testing.T, mod func(*Config)) {
	specs := healthy(devEdges())
	d := startDNSRouter(t, specs, mod)
	addrs := dnsEdgeAddrs(specs)
	for _, tc := range []struct {
		subnet string
		want   []string // edges the client may be sent to
		scope  uint8
	}{
		{ipLondon + "/32", []string{"lhr"}, 28},
		{ipParis + "/32", []string{"lhr", "fra"}, 28},
		{"192.0.2.0/24", []string{"lhr", "fra"}, 28}, // Paris's /28 holds .0
		{ipTokyo + "/28", []string{"nrt"}, 28},
		{ipSydney + "/32", []string{"syd"}, 28},
		{ipNewYork + "/32", []string{"iad"}, 28},
		{ipUnknown + "/32", []string{"fra"}, 25},  // the default location; the empty range is a /25
		{"2001:db8:15::/56", []string{"nrt"}, 48}, // the database's /48 is broader than the source
		{ip6Sydney + "/64", []string{"syd"}, 48},
	} {
		for _, network := range []string{"udp", "tcp"} {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
				name := fmt.Sprintf("%s/%s/%s", tc.subnet, network, dns.TypeToString[qtype])
				t.Run(name, func(t *testing.T) {
					p := netip.MustParsePrefix(tc.subnet)
					m := d.query(t, network, "wWw.CDN.test.", qtype, p)
					if m.Rcode != dns.RcodeSuccess || !m.Authoritative || m.RecursionAvailable || !m.RecursionDesired || m.Truncated {
						t.Fatalf("header %+v, want NOERROR, aa, rd copied, no ra, no tc", m.MsgHdr)
					}
					ips := answerIPs(m)
					if len(ips) != 1 || m.Answer[0].Header().Rrtype != qtype || m.Answer[0].Header().Ttl != 30 || m.Answer[0].Header().Name != "wWw.CDN.test." {
						t.Fatalf("answer %v, want one %s record, TTL 30, for the name as asked", m.Answer, dns.TypeToString[qtype])
					}
					got := edgeOf(addrs, ips[0])
					if !slices.Contains(tc.want, got) {
						t.Fatalf("answered %v (edge %q), want one of %v", ips[0], got, tc.want)
					}
					dec, err := d.r.Decide(p.Masked().Addr(), "default", "")
					if err != nil || dec.Edge != got {
						t.Fatalf("DNS says %s, Decide says %s (%v): the same decision code must agree", got, dec.Edge, err)
					}
					e := replyECS(m)
					if e == nil || e.SourceNetmask != uint8(p.Bits()) || e.SourceScope != tc.scope || !e.Address.Equal(net.IP(p.Masked().Addr().AsSlice())) {
						t.Fatalf("ECS %v, want %s echoed with scope %d", e, p.Masked(), tc.scope)
					}
				})
			}
		}
	}
}

// TestDNSWithoutClientSubnet: without ECS the resolver's address is
// placed (loopback: nowhere, so the default location, Frankfurt) and the
// answer carries no ECS; a zero source prefix (the client opted out) also
// uses the resolver's address and answers scope 0.
func TestDNSWithoutClientSubnet(t *testing.T) {
	specs := healthy(devEdges())
	d := startDNSRouter(t, specs, nil)
	addrs := dnsEdgeAddrs(specs)
	for _, network := range []string{"udp", "tcp"} {
		m := d.query(t, network, "cdn.test.", dns.TypeA, netip.Prefix{})
		if ips := answerIPs(m); len(ips) != 1 || edgeOf(addrs, ips[0]) != "fra" {
			t.Fatalf("%s: answer %v, want fra's address", network, m.Answer)
		}
		if m.IsEdns0() != nil {
			t.Fatalf("%s: OPT in the answer to a query without one", network)
		}
		for _, zero := range []*dns.EDNS0_SUBNET{
			{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 0, Address: net.IPv4zero},
			{Code: dns.EDNS0SUBNET, Family: 0, SourceNetmask: 0, Address: net.IPv4zero}, // dig +subnet=0
			{Code: dns.EDNS0SUBNET, Family: 2, SourceNetmask: 0, Address: net.IPv6zero},
		} {
			q := new(dns.Msg)
			q.SetQuestion("cdn.test.", dns.TypeA)
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, zero)
			m := d.exchange(t, network, q)
			if ips := answerIPs(m); len(ips) != 1 || edgeOf(addrs, ips[0]) != "fra" {
				t.Fatalf("%s /0 family %d: answer %v, want fra's address (the resolver's)", network, zero.Family, m.Answer)
			}
			if e := replyECS(m); e == nil || e.Family != zero.Family || e.SourceNetmask != 0 || e.SourceScope != 0 {
				t.Fatalf("%s /0 family %d: ECS %v, want it echoed with scope 0", network, zero.Family, e)
			}
		}
	}
	if got := counter(t, d.reg, "geocdn_router_dns_client_subnet_total", nil); got != 0 {
		t.Fatalf("client subnet decisions = %v, want 0: none had a source prefix", got)
	}
}

// TestDNSZone: the apex answers SOA and NS, negative answers carry the
// SOA for negative caching, names outside the zone are refused, and
// nothing is recursive.
func TestDNSZone(t *testing.T) {
	d := startDNSRouter(t, healthy(devEdges()), func(c *Config) {
		c.DNSNameservers = []Nameserver{
			{Name: "ns1.cdn.test", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53")}},
			{Name: "ns2.example.net"},
		}
		c.DNSTTL = 45 * time.Second
	})
	type want struct {
		rcode   int
		aa      bool
		answer  []uint16 // types
		soaAuth bool
		extra   int // records besides OPT
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		class uint16
		want  want
	}{
		{"cdn.test.", dns.TypeSOA, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeSOA}, false, 0}},
		{"CDN.TEST.", dns.TypeNS, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeNS, dns.TypeNS}, false, 2}},
		{"ns1.cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeA}, false, 0}},
		{"ns1.cdn.test.", dns.TypeAAAA, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeAAAA}, false, 0}},
		{"ns1.cdn.test.", dns.TypeMX, dns.ClassINET, want{dns.RcodeSuccess, true, nil, true, 0}},
		{"cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeA}, false, 0}},
		{"cdn.test.", dns.TypeANY, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeA}, false, 0}},
		// NODATA: the name exists, not with this type.
		{"www.cdn.test.", dns.TypeMX, dns.ClassINET, want{dns.RcodeSuccess, true, nil, true, 0}},
		{"www.cdn.test.", dns.TypeTXT, dns.ClassINET, want{dns.RcodeSuccess, true, nil, true, 0}},
		// An empty non-terminal above a served name: NODATA, not NXDOMAIN.
		{"static.cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeSuccess, true, nil, true, 0}},
		{"img.static.cdn.test.", dns.TypeAAAA, dns.ClassINET, want{dns.RcodeSuccess, true, []uint16{dns.TypeAAAA}, false, 0}},
		// NXDOMAIN in the zone, below a served name too.
		{"nope.cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeNameError, true, nil, true, 0}},
		{"a.www.cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeNameError, true, nil, true, 0}},
		{"ns.cdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeNameError, true, nil, true, 0}},
		// Not ours: refused, never recursed.
		{"example.com.", dns.TypeA, dns.ClassINET, want{dns.RcodeRefused, false, nil, false, 0}},
		{"xcdn.test.", dns.TypeA, dns.ClassINET, want{dns.RcodeRefused, false, nil, false, 0}},
		{"test.", dns.TypeSOA, dns.ClassINET, want{dns.RcodeRefused, false, nil, false, 0}},
		{"version.bind.", dns.TypeTXT, dns.ClassCHAOS, want{dns.RcodeRefused, false, nil, false, 0}},
		{"cdn.test.", dns.TypeAXFR, dns.ClassINET, want{dns.RcodeRefused, false, nil, false, 0}},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(fmt.Sprintf("%s/%s/%s", tc.name, dns.TypeToString[tc.qtype], network), func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion(tc.name, tc.qtype)
				q.Question[0].Qclass = tc.class
				q.SetEdns0(1232, true)
				m := d.exchange(t, network, q)
				var types []uint16
				for _, rr := range m.Answer {
					types = append(types, rr.Header().Rrtype)
					if rr.Header().Ttl != 45 {
						t.Errorf("TTL %d in %v, want 45", rr.Header().Ttl, rr)
					}
				}
				if m.Rcode != tc.want.rcode || m.Authoritative != tc.want.aa || !slices.Equal(types, tc.want.answer) || m.RecursionAvailable {
					t.Fatalf("got %s aa=%v ra=%v answer %v; want %s aa=%v answer types %v",
						dns.RcodeToString[m.Rcode], m.Authoritative, m.RecursionAvailable, m.Answer, dns.RcodeToString[tc.want.rcode], tc.want.aa, tc.want.answer)
				}
				if tc.want.soaAuth {
					soa, ok := firstRR(m.Ns).(*dns.SOA)
					if len(m.Ns) != 1 || !ok || soa.Hdr.Name != "cdn.test." || soa.Minttl != 45 || soa.Hdr.Ttl != 45 || soa.Ns != "ns1.cdn.test." {
						t.Fatalf("authority %v, want the zone's SOA (minimum 45, primary ns1.cdn.test.)", m.Ns)
					}
				} else if len(m.Ns) != 0 {
					t.Fatalf("authority %v, want none", m.Ns)
				}
				if extra := len(m.Extra) - 1; extra != tc.want.extra {
					t.Fatalf("additional %v, want %d records and OPT", m.Extra, tc.want.extra)
				}
				if opt := m.IsEdns0(); opt == nil || !opt.Do() || opt.UDPSize() != dnsMaxUDP {
					t.Fatalf("OPT %v, want DO copied and buffer %d", opt, dnsMaxUDP)
				}
			})
		}
	}
}

func firstRR(rrs []dns.RR) dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	return rrs[0]
}

// rawECS is a query for cdn.test A whose ECS option's data is data, byte
// for byte.
func rawECS(id uint16, data ...[]byte) []byte {
	q := new(dns.Msg)
	q.SetQuestion("cdn.test.", dns.TypeA)
	q.Id = id
	q.SetEdns0(1232, false)
	for _, d := range data {
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: d})
	}
	b, err := q.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func packed(id uint16, mod func(*dns.Msg)) []byte {
	q := new(dns.Msg)
	q.SetQuestion("cdn.test.", dns.TypeA)
	q.Id = id
	mod(q)
	b, err := q.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// malformedQueries are messages a server meets on the Internet, by the
// rcode each must get (-1: no answer at all).
func malformedQueries() []struct {
	name  string
	msg   []byte
	rcode int
} {
	header := func(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		binary.BigEndian.PutUint16(b, id)
		binary.BigEndian.PutUint16(b[2:], flags)
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[6:], an)
		binary.BigEndian.PutUint16(b[8:], ns)
		binary.BigEndian.PutUint16(b[10:], ar)
		return b
	}
	good := rawECS(0x0101)
	return []struct {
		name  string
		msg   []byte
		rcode int
	}{
		{"five bytes", []byte{1, 2, 3, 4, 5}, -1},
		{"a response", header(0x0201, 0x8000, 1, 0, 0, 0), -1},
		{"no question", header(0x0301, 0, 0, 0, 0, 0), dns.RcodeFormatError},
		{"two questions", header(0x0302, 0, 2, 0, 0, 0), dns.RcodeFormatError},
		{"question cut short", good[:len(good)-14], dns.RcodeFormatError},
		{"label past the end", append(header(0x0303, 0, 1, 0, 0, 0), 63, 'a'), dns.RcodeFormatError},
		{"pointer loop", append(header(0x0304, 0, 1, 0, 0, 0), 0xc0, 12, 0, 1, 0, 1), dns.RcodeFormatError},
		{"garbage after a header", append(header(0x0305, 0, 1, 0, 0, 1), []byte("\xff\xfe\xfd\xfc\xfb\xfa\xf9")...), dns.RcodeFormatError},
		{"update", header(0x0401, 5<<11, 1, 0, 0, 0), dns.RcodeNotImplemented},
		{"notify", packed(0x0402, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), dns.RcodeNotImplemented},
		{"ecs unknown family", rawECS(0x0501, []byte{0, 3, 24, 0, 192, 0, 2}), dns.RcodeFormatError},
		{"ecs prefix too long", rawECS(0x0502, []byte{0, 1, 33, 0, 192, 0, 2, 1, 0}), dns.RcodeFormatError},
		{"ecs address too long", rawECS(0x0503, []byte{0, 1, 24, 0, 192, 0, 2, 0}), dns.RcodeFormatError},
		{"ecs address too short", rawECS(0x0504, []byte{0, 1, 24, 0, 192, 0}), dns.RcodeFormatError},
		{"ecs bits beyond the prefix", rawECS(0x0505, []byte{0, 1, 20, 0, 192, 0, 2}), dns.RcodeFormatError},
		{"ecs family 0 with a prefix", rawECS(0x0506, []byte{0, 0, 8, 0, 10}), dns.RcodeFormatError},
		{"ecs shorter than its header", rawECS(0x0507, []byte{0, 1, 24}), dns.RcodeFormatError},
		{"ecs twice", rawECS(0x0508, []byte{0, 1, 24, 0, 192, 0, 2}, []byte{0, 1, 24, 0, 198, 51, 100}), dns.RcodeFormatError},
		{"ecs ipv6 bits beyond the prefix", rawECS(0x0509, append([]byte{0, 2, 12, 0}, 0x20, 0x01)), dns.RcodeFormatError},
		{"two OPT records", packed(0x0601, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}})
		}), dns.RcodeFormatError},
		{"edns version 1", packed(0x0701, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
		}), dns.RcodeBadVers},
	}
}

// TestDNSSurvivesMalformedQueries sends each malformed message as raw
// bytes over UDP and over TCP, checks the answer it gets (FORMERR,
// NOTIMP, BADVERS, or none), and that the server answers the next good
// query.
func TestDNSSurvivesMalformedQueries(t *testing.T) {
	for _, us := range udpServers {
		t.Run(us.name, func(t *testing.T) { testDNSMalformed(t, func(c *Config) { us.mod(t, c) }) })
	}
}

func testDNSMalformed(t *testing.T, mod func(*Config)) {
	d := startDNSRouter(t, healthy(devEdges()), mod)
	goodID := uint16(0xbeef)
	good := rawECS(goodID, []byte{0, 1, 24, 0, 198, 51, 100})
	for _, tc := range malformedQueries() {
		t.Run("udp/"+tc.name, func(t *testing.T) {
			conn, err := net.Dial("udp", d.udp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second)) // guards a hang only
			if _, err := conn.Write(tc.msg); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(good); err != nil {
				t.Fatal(err)
			}
			// Answers may come in either order: read until the good
			// one's, and the bad one's when one is due.
			var gotBad *dns.Msg
			for gotGood := false; !gotGood || tc.rcode >= 0 && gotBad == nil; {
				buf := make([]byte, 65535)
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("reading answers (good seen: %v, bad seen: %v): %v", gotGood, gotBad != nil, err)
				}
				m := new(dns.Msg)
				if err := m.Unpack(buf[:n]); err != nil {
					t.Fatalf("unparsable answer %x: %v", buf[:n], err)
				}
				if m.Id == goodID && m.Rcode == dns.RcodeSuccess && len(m.Answer) == 1 {
					gotGood = true
					continue
				}
				if tc.rcode < 0 {
					t.Fatalf("answer %v to a message that deserves none", m)
				}
				gotBad = m
			}
			if tc.rcode >= 0 {
				checkRejection(t, tc.msg, gotBad, tc.rcode)
			}
		})
		t.Run("tcp/"+tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", d.tcp)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second)) // guards a hang only
			for _, msg := range [][]byte{tc.msg, good} {
				if _, err := conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(msg)))); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(msg); err != nil {
					t.Fatal(err)
				}
			}
			// One connection serves queries in turn.
			if tc.rcode >= 0 {
				checkRejection(t, tc.msg, readTCPMsg(t, conn), tc.rcode)
			}
			if m := readTCPMsg(t, conn); m.Id != goodID || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				t.Fatalf("good query after %s: %v", tc.name, m)
			}
		})
	}
	// A connection that lies about its length, and one that stops mid
	// message, cost the server nothing.
	for _, b := range [][]byte{{0, 200, 1, 2, 3}, {0}, {0, 0}} {
		conn, err := net.Dial("tcp", d.tcp)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(b)
		conn.Close()
	}
	if m := d.query(t, "tcp", "cdn.test.", dns.TypeA, netip.Prefix{}); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("after broken connections: %v", m)
	}
	if got := counter(t, d.reg, "geocdn_router_dns_responses_total", map[string]string{"transport": "udp", "rcode": "FORMERR"}); got < 15 {
		t.Fatalf("udp FORMERR responses counted: %v, want at least 15", got)
	}
	if got := counter(t, d.reg, "geocdn_router_dns_dropped_total", map[string]string{"transport": "udp"}); got < 2 {
		t.Fatalf("udp messages dropped: %v, want at least 2", got)
	}
}

// checkRejection checks the answer to a message rejected with rcode.
func checkRejection(t *testing.T, sent []byte, m *dns.Msg, rcode int) {
	t.Helper()
	if id := binary.BigEndian.Uint16(sent); m.Id != id || m.Rcode != rcode || len(m.Answer) != 0 {
		t.Fatalf("answer id %#x %s %v, want id %#x %s and no answer", m.Id, dns.RcodeToString[m.Rcode], m.Answer, id, dns.RcodeToString[rcode])
	}
	if rcode == dns.RcodeBadVers {
		if opt := m.IsEdns0(); opt == nil || opt.Version() != 0 {
			t.Fatalf("BADVERS with OPT %v, want version 0", opt)
		}
	}
}

func readTCPMsg(t *testing.T, conn net.Conn) *dns.Msg {
	t.Helper()
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDNSTruncatesOverUDP: an answer too large for the resolver's buffer
// is sent truncated (TC) over UDP and whole over TCP.
func TestDNSTruncatesOverUDP(t *testing.T) {
	for _, us := range udpServers {
		t.Run(us.name, func(t *testing.T) { testDNSTruncates(t, func(c *Config) { us.mod(t, c) }) })
	}
}

func testDNSTruncates(t *testing.T, mod func(*Config)) {
	specs := healthy(devEdges()[:1])
	var many []netip.Addr
	for i := range 60 {
		many = append(many, netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%x", i+1)))
	}
	d := startDNSRouter(t, specs, func(c *Config) {
		mod(c)
		c.DNSEdgeAddrs = map[string][]netip.Addr{specs[0].ID: many}
	})
	m := d.query(t, "udp", "cdn.test.", dns.TypeAAAA, netip.Prefix{})
	if !m.Truncated || len(m.Answer) >= 60 {
		t.Fatalf("udp without EDNS: tc=%v with %d answers, want truncated", m.Truncated, len(m.Answer))
	}
	m = d.query(t, "udp", "cdn.test.", dns.TypeAAAA, netip.MustParsePrefix(ipLondon+"/32"))
	m.Compress = true // as sent
	if !m.Truncated || m.Len() > dnsMaxUDP {
		t.Fatalf("udp with EDNS: tc=%v, %d bytes; want truncated to %d", m.Truncated, m.Len(), dnsMaxUDP)
	}
	m = d.query(t, "tcp", "cdn.test.", dns.TypeAAAA, netip.Prefix{})
	if m.Truncated || len(m.Answer) != 60 {
		t.Fatalf("tcp: tc=%v with %d answers, want all 60", m.Truncated, len(m.Answer))
	}
	if got := counter(t, d.reg, "geocdn_router_dns_truncated_total", nil); got != 2 {
		t.Fatalf("truncated answers counted: %v, want 2", got)
	}
}

// TestDNSFollowsMembership runs the full router against a fake origin and
// fake edges: DNS names only edges that are routable, leaves out (and
// counts) an edge whose public URL is a host name with no address given,
// follows an edge going down, and answers SERVFAIL with none left.
func TestDNSFollowsMembership(t *testing.T) {
	specs := []Edge{
		{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
		{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
		{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
	}
	addrs := map[string][]netip.Addr{"fra": {netip.MustParseAddr("198.18.0.2")}}
	var reg *prometheus.Registry
	c := startCluster(t, specs, func(cfg *Config) {
		cfg.DNSAddr, cfg.DNSZone, cfg.DNSEdgeAddrs = "127.0.0.1:0", "cdn.test", addrs
		reg = prometheus.NewRegistry()
		cfg.Registry = reg
	})
	// lhr's public URL names a host: routable for HTTP, not for DNS.
	// nrt's is the loopback literal its fake edge listens on.
	lhr := c.edges["lhr"]
	c.origin.mu.Lock()
	st := c.origin.edges["lhr"]
	st.PublicURL = strings.Replace(lhr.srv.URL, "127.0.0.1", "localhost", 1)
	c.origin.edges["lhr"] = st
	c.origin.mu.Unlock()
	eventually(t, "lhr probed at its host name", func() bool {
		for _, v := range c.router.Edges() {
			if v.ID == "lhr" && v.Routable && strings.Contains(v.PublicURL, "localhost") {
				return true
			}
		}
		return false
	})
	c.waitRoutable("lhr", "fra", "nrt")
	d := &dnsRouter{r: c.router, udp: c.router.DNSAddr().String(), tcp: c.router.DNSAddr().String(), reg: reg}

	london := netip.MustParsePrefix(ipLondon + "/32")
	if dec, _ := c.router.Decide(london.Addr(), "default", ""); dec.Edge != "lhr" {
		t.Fatalf("HTTP decision for London: %s, want lhr", dec.Edge)
	}
	m := d.query(t, "udp", "cdn.test.", dns.TypeA, london)
	if ips := answerIPs(m); len(ips) != 1 || !ips[0].Equal(net.ParseIP("198.18.0.2")) {
		t.Fatalf("DNS for London: %v, want fra (198.18.0.2): lhr has no address", m.Answer)
	}
	m = d.query(t, "tcp", "cdn.test.", dns.TypeA, netip.MustParsePrefix(ipTokyo+"/32"))
	if ips := answerIPs(m); len(ips) != 1 || !ips[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("DNS for Tokyo: %v, want nrt at its URL's address 127.0.0.1", m.Answer)
	}
	if got := counter(t, reg, "geocdn_router_dns_edges_without_address", nil); got != 1 {
		t.Fatalf("edges without address: %v, want 1", got)
	}
	if got := counter(t, reg, "geocdn_router_dns_edges", nil); got != 2 {
		t.Fatalf("DNS edges: %v, want 2", got)
	}

	// fra goes down: London is sent to the next nearest with an address.
	c.edges["fra"].healthy.Store(false)
	c.waitRoutable("lhr", "nrt")
	m = d.query(t, "udp", "cdn.test.", dns.TypeA, london)
	if ips := answerIPs(m); len(ips) != 1 || !ips[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Fatalf("DNS for London with fra down: %v, want nrt", m.Answer)
	}
	// nrt too: none left with an address.
	c.origin.set(c.edges["nrt"], origin.EdgeDown)
	c.waitRoutable("lhr")
	m = d.query(t, "udp", "cdn.test.", dns.TypeA, london)
	if m.Rcode != dns.RcodeServerFailure || len(m.Answer) != 0 {
		t.Fatalf("DNS with no edge it can name: %s %v, want SERVFAIL", dns.RcodeToString[m.Rcode], m.Answer)
	}
	if got := counter(t, reg, "geocdn_router_dns_responses_total", map[string]string{"transport": "udp", "rcode": "SERVFAIL"}); got != 1 {
		t.Fatalf("SERVFAIL counted %v times, want 1", got)
	}
	if got := counter(t, reg, "geocdn_router_dns_client_subnet_total", nil); got != 4 {
		t.Fatalf("client subnet decisions: %v, want 4", got)
	}
}

// TestDNSConfig: the DNS settings are checked when the router is made,
// each problem named.
func TestDNSConfig(t *testing.T) {
	base := func() Config {
		return Config{OriginAdmin: "http://127.0.0.1:1", Token: "t", GeoIPPath: testDB, DNSAddr: "127.0.0.1:0", DNSZone: "cdn.test"}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"names and nameservers", func(c *Config) {
			c.DNSNames = []string{"A.cdn.test.", "b.c.cdn.test"}
			c.DNSNameservers = []Nameserver{{Name: "ns1.cdn.test", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, {Name: "ns.example.net"}}
		}, ""},
		{"no zone", func(c *Config) { c.DNSZone = "" }, "dns zone"},
		{"root zone", func(c *Config) { c.DNSZone = "." }, "root zone"},
		{"bad zone", func(c *Config) { c.DNSZone = "a..b" }, "dns zone"},
		{"name outside", func(c *Config) { c.DNSNames = []string{"cdn.example"} }, "not in the zone"},
		{"suffix is not a parent", func(c *Config) { c.DNSNames = []string{"xcdn.test"} }, "not in the zone"},
		{"wildcard", func(c *Config) { c.DNSNames = []string{"*.cdn.test"} }, "wildcards"},
		{"in-zone nameserver without address", func(c *Config) { c.DNSNameservers = []Nameserver{{Name: "ns1.cdn.test"}} }, "needs an address"},
		{"outside nameserver with address", func(c *Config) {
			c.DNSNameservers = []Nameserver{{Name: "ns.example.net", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}
		}, "outside the zone"},
		{"nameserver is a served name", func(c *Config) {
			c.DNSNameservers = []Nameserver{{Name: "cdn.test", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}
		}, "answered with edges"},
		{"ttl too short", func(c *Config) { c.DNSTTL = 500 * time.Millisecond }, "dns ttl"},
		{"ttl too long", func(c *Config) { c.DNSTTL = 2 * time.Hour }, "dns ttl"},
		{"conn without listener", func(c *Config) { c.DNSPacketConn = &net.UDPConn{} }, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.withDefaults().Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error about %q", err, tc.want)
			}
		})
	}
	// A taken port is an error of New, naming the address.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := base()
	c.HTTPAddr, c.DNSAddr = "-", pc.LocalAddr().String()
	if r, err := New(c); err == nil {
		r.Close()
		t.Fatalf("New on a taken DNS port succeeded")
	} else if !strings.Contains(err.Error(), "listen dns "+c.DNSAddr) {
		t.Fatalf("New: %v, want it to name the address", err)
	}
}

func TestParseNameAddrs(t *testing.T) {
	got, err := ParseEdgeAddrs(" lhr=192.0.2.1, 2001:db8::1 ; nrt=::ffff:198.51.100.7;")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]netip.Addr{
		"lhr": {netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		"nrt": {netip.MustParseAddr("198.51.100.7")},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	ns, err := ParseNameAddrs("ns1.cdn.test=192.0.2.53;ns2.example.net")
	if err != nil || len(ns) != 2 || ns[0].Name != "ns1.cdn.test" || len(ns[0].Addrs) != 1 || ns[1].Name != "ns2.example.net" || ns[1].Addrs != nil {
		t.Fatalf("ParseNameAddrs = %+v, %v", ns, err)
	}
	for _, bad := range []string{"lhr", "lhr=", "=192.0.2.1", "lhr=host.example", "lhr=fe80::1%eth0", "lhr=192.0.2.1;lhr=192.0.2.2"} {
		if _, err := ParseEdgeAddrs(bad); err == nil {
			t.Errorf("ParseEdgeAddrs(%q) succeeded", bad)
		}
	}
}

// counter is the value of the metric name with labels (all of them must
// match; nil matches the unlabelled one) in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
		return 0
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// FuzzDNSQuery feeds the DNS front end arbitrary messages the way the
// server does: the ECS wire check, then parsing; whatever parses must be
// answered with a message that packs.
func FuzzDNSQuery(f *testing.F) {
	for _, tc := range malformedQueries() {
		f.Add(tc.msg)
	}
	f.Add(rawECS(1, []byte{0, 1, 24, 0, 192, 0, 2}))
	f.Add(packed(2, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }))
	f.Add(packed(3, func(m *dns.Msg) { m.Question[0].Name = "nope.cdn.test." }))
	f.Add(packed(4, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeNS }))
	r, err := New(Config{
		HTTPAddr: "-", OriginAdmin: "http://127.0.0.1:1", Token: testToken, GeoIPPath: testDB,
		DNSAddr: "127.0.0.1:0", DNSZone: "cdn.test", DNSNames: []string{"cdn.test", "a.b.cdn.test"},
		DNSEdgeAddrs: dnsEdgeAddrs(healthy(devEdges())), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	r.table.Store(r.newTable(healthy(devEdges())))
	peer := netip.MustParseAddr("192.0.2.200")
	f.Fuzz(func(t *testing.T, b []byte) {
		b = slices.Clone(b)
		markBadECS(b)
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		for _, tcp := range []bool{false, true} {
			m, size := r.dns.answer(req, peer, tcp)
			m.Truncate(size)
			out, err := m.Pack()
			if err != nil && !errors.Is(err, dns.ErrExtendedRcode) {
				t.Fatalf("answer to %v does not pack: %v\n%v", req, err, m)
			}
			if !tcp && len(out) > max(size, dns.MinMsgSize) {
				t.Fatalf("UDP answer of %d bytes, limit %d", len(out), size)
			}
		}
	})
}
