package router

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// benchDNSRouter is benchRouter serving DNS for cdn.test on loopback, its
// 1,000 edges each with an address of its own.
func benchDNSRouter(b *testing.B) *Router {
	edges := manyEdges(1000)
	addrs := make(map[string][]netip.Addr, len(edges))
	for i, e := range edges {
		addrs[e.ID] = []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}
	}
	r, err := New(Config{
		HTTPAddr: "-", OriginAdmin: "http://127.0.0.1:1", Token: "bench-token-0123456789",
		GeoIPPath: testDB, PlanInterval: -1, Logger: slog.New(slog.DiscardHandler),
		DNSAddr: "127.0.0.1:0", DNSZone: "cdn.test", DNSEdgeAddrs: addrs,
	})
	if err != nil {
		b.Fatal(err)
	}
	r.table.Store(r.newTable(edges))
	return r
}

// benchDNSQueries are A queries for cdn.test with ECS, one per bench
// client: its /24 or /56, as public resolvers send.
func benchDNSQueries(b *testing.B) [][]byte {
	var out [][]byte
	for i, c := range benchClients() {
		bits := 24
		if c.Is6() {
			bits = 56
		}
		q := new(dns.Msg)
		q.SetQuestion("cdn.test.", dns.TypeA)
		q.Id = uint16(i)
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, ecsOption(netip.PrefixFrom(c, bits)))
		p, err := q.Pack()
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// BenchmarkDNSAnswer is one ECS query answered without the network:
// the wire check, parsing, the decision among 1,000 edges, packing. Run
// with -cpu 1 for one core.
func BenchmarkDNSAnswer(b *testing.B) {
	r := benchDNSRouter(b)
	defer r.Close()
	qs := benchDNSQueries(b)
	peer := netip.MustParseAddr("192.0.2.250")
	buf := make([]byte, 0, dnsMaxUDP)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := qs[i%len(qs)]
		markBadECS(q)
		req := new(dns.Msg)
		if err := req.Unpack(q); err != nil {
			b.Fatal(err)
		}
		m, size := r.dns.answer(req, peer, false)
		m.Truncate(size)
		out, err := m.PackBuffer(buf)
		if err != nil || len(m.Answer) != 1 {
			b.Fatalf("%v %v", err, m)
		}
		buf = out[:0]
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "answers/s")
}

// BenchmarkDNSServeECS drives the running server over loopback UDP with
// ECS queries from 8 sockets, 16 outstanding on each, and reports answers
// per second. With -cpu 1 the server and this load generator share one
// core, so it is a lower bound of the server's one-core rate; README.md
// gives the dnsperf run that loads a separate server process instead.
func BenchmarkDNSServeECS(b *testing.B) {
	r := benchDNSRouter(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	qs := benchDNSQueries(b)
	const conns, window = 8, 16
	var answered, lost atomic.Int64
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			conn, err := net.Dial("udp", r.DNSAddr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			buf := make([]byte, 2048)
			q := make([]byte, 0, 512)
			for {
				n := min(int64(window), int64(b.N)-next.Add(window)+window)
				if n <= 0 {
					return
				}
				for k := range n {
					q = append(q[:0], qs[(int(k)+c*window)%len(qs)]...)
					binary.BigEndian.PutUint16(q, uint16(k))
					if _, err := conn.Write(q); err != nil {
						b.Error(err)
						return
					}
				}
				// A lost datagram is counted, not waited for: the
				// deadline only ends a window that lost one.
				conn.SetReadDeadline(time.Now().Add(time.Second))
				for range n {
					m, err := conn.Read(buf)
					if err != nil {
						lost.Add(1)
						break
					}
					if m < 12 || buf[3]&0xf != 0 || binary.BigEndian.Uint16(buf[6:]) != 1 {
						b.Errorf("answer %x is not one record", buf[:m])
						return
					}
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(answered.Load())/b.Elapsed().Seconds(), "answers/s")
	b.ReportMetric(float64(lost.Load()), "lost-windows")
	if a := answered.Load(); a < int64(b.N)/2 {
		b.Fatalf("%d of %d queries answered", a, b.N)
	}
}
