package simwan

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/testutils/simnet"

	"github.com/geocdn/geocdn/internal/pki"
)

func TestDefaultMatrixMatchesCSV(t *testing.T) {
	// The CSV lives beside the repository, not in it.
	path := filepath.Join("..", "..", "..", "shared", "data", "inter-region-rtt.csv")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s not present: the table cannot be checked against its source", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want, err := ParseCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	got := DefaultMatrix()
	if g, w := len(got.Regions()), len(want.Regions()); g != w {
		t.Fatalf("%d regions, CSV has %d", g, w)
	}
	for i, r := range want.Regions() {
		if g := got.Regions()[i]; g != r {
			t.Errorf("region %d = %+v, CSV has %+v", i, g, r)
		}
		for _, c := range want.Regions() {
			g, _ := got.RTT(r.Name, c.Name)
			w, _ := want.RTT(r.Name, c.Name)
			if g != w {
				t.Errorf("RTT %s→%s = %v, CSV has %v", r.Name, c.Name, g, w)
			}
		}
	}
	if got, want := got.Farthest(), 328*time.Millisecond; got != want {
		t.Errorf("farthest pair %v, want %v", got, want)
	}
}

// pair puts host a in region ra and b in rb and returns a conn on each.
func pair(t *testing.T, cfg Config, ra, rb string) (*Network, *simnet.SimConn, *simnet.SimConn) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddHost("a", ra); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddHost("b", rb); err != nil {
		t.Fatal(err)
	}
	ca, err := n.Listen("a", 1000)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := n.Listen("b", 2000)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close(); n.Close() })
	return n, ca, cb
}

// echo answers every packet on c until c is closed.
func echo(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(buf[:k], from)
	}
}

// roundTrip sends a packet from c to to and waits for its echo, with a
// deadline of d; it reports whether the echo came and how long it took.
func roundTrip(c net.PacketConn, to net.Addr, d time.Duration) (time.Duration, bool) {
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	defer c.SetReadDeadline(time.Time{})
	if _, err := c.WriteTo([]byte("ping"), to); err != nil {
		return 0, false
	}
	buf := make([]byte, 16)
	if _, _, err := c.ReadFrom(buf); err != nil {
		return 0, false
	}
	return time.Since(start), true
}

func TestLatencyFollowsMatrix(t *testing.T) {
	m := DefaultMatrix()
	for _, tc := range []struct{ a, b string }{
		{"Washington DC", "London"},
		{"Sydney", "Sao Paulo"},
		{"Dallas", "Madrid"}, // asymmetric: 119 ms one way round, 122 the other
		{"Osaka", "Tokyo"},
	} {
		t.Run(tc.a+"-"+tc.b, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				_, ca, cb := pair(t, Config{}, tc.a, tc.b)
				go echo(cb)
				ab, _ := m.OneWay(tc.a, tc.b)
				ba, _ := m.OneWay(tc.b, tc.a)
				got, ok := roundTrip(ca, cb.LocalAddr(), time.Second)
				if !ok {
					t.Fatal("no echo")
				}
				if want := ab + ba; got != want {
					t.Errorf("round trip %v, want %v", got, want)
				}
			})
		})
	}
}

func TestIntraRegionLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, ca, cb := pair(t, Config{IntraRegion: 2 * time.Millisecond}, "London", "London")
		go echo(cb)
		if got, ok := roundTrip(ca, cb.LocalAddr(), time.Second); !ok || got != 4*time.Millisecond {
			t.Errorf("round trip %v (echoed %v), want 4ms", got, ok)
		}
	})
}

func TestLossRateAndDeterminism(t *testing.T) {
	const sent = 4000
	run := func(seed uint64) (delivered int, st Stats) {
		synctest.Test(t, func(t *testing.T) {
			n, ca, cb := pair(t, Config{Loss: 0.2, Seed: seed}, "London", "Frankfurt")
			for range sent {
				ca.WriteTo([]byte("x"), cb.LocalAddr())
			}
			cb.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 16)
			for {
				if _, _, err := cb.ReadFrom(buf); err != nil {
					break
				}
				delivered++
			}
			st = n.Stats()
		})
		return delivered, st
	}
	d1, st := run(1)
	if d1 < sent*75/100 || d1 > sent*85/100 {
		t.Errorf("delivered %d of %d at 20%% loss, want about %d", d1, sent, sent*8/10)
	}
	if st.Sent != sent || st.Lost+st.Delivered != sent || st.Cut != 0 {
		t.Errorf("stats %+v do not add up to %d sent", st, sent)
	}
	if d2, _ := run(1); d2 != d1 {
		t.Errorf("same seed delivered %d then %d", d1, d2)
	}
	if d3, _ := run(2); d3 == d1 {
		t.Logf("seeds 1 and 2 both delivered %d (possible, unlikely)", d1)
	}
}

func TestPartitions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, ca, cb := pair(t, Config{}, "Washington DC", "Tokyo")
		go echo(cb)
		aToB := func() bool {
			_, ok := roundTrip(ca, cb.LocalAddr(), time.Second)
			return ok
		}
		// oneWay sends a→b without needing the echo, so it tells the
		// directions apart.
		recv := make(chan struct{}, 100)
		cc, err := n.Listen("b", 3000)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		go func() {
			buf := make([]byte, 16)
			for {
				if _, _, err := cc.ReadFrom(buf); err != nil {
					return
				}
				recv <- struct{}{}
			}
		}()
		arrives := func() bool {
			ca.WriteTo([]byte("x"), cc.LocalAddr())
			time.Sleep(time.Second)
			synctest.Wait()
			select {
			case <-recv:
				return true
			default:
				return false
			}
		}
		check := func(step string, wantRT, wantAB bool) {
			t.Helper()
			if got := aToB(); got != wantRT {
				t.Errorf("%s: round trip works = %v, want %v", step, got, wantRT)
			}
			if got := arrives(); got != wantAB {
				t.Errorf("%s: a→b arrives = %v, want %v", step, got, wantAB)
			}
		}
		check("connected", true, true)
		n.Partition("a", "b")
		check("partitioned", false, false)
		n.Heal()
		check("healed", true, true)
		n.PartitionOneWay("b", "a")
		check("b→a cut", false, true)
		n.HealHost("a")
		check("host a healed", true, true)
		n.PartitionOneWay("a", "b")
		check("a→b cut", false, false)
		n.Heal()
		n.Isolate("b")
		check("b isolated", false, false)
		n.HealHost("b")
		check("b healed", true, true)
		if err := n.Partition("a", "nobody"); err == nil {
			t.Error("partition with an unknown host: no error")
		}
		if st := n.Stats(); st.Cut == 0 || st.Lost != 0 {
			t.Errorf("stats %+v: want some cut, none lost", st)
		}
	})
}

// TestQUICEcho is the check DESIGN.md names: a QUIC handshake plus one
// echo over the simulated WAN, in simulated time.
func TestQUICEcho(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, ca, cb := pair(t, Config{}, "Washington DC", "Sydney")
		rtt, _ := n.Matrix().RTT("Washington DC", "Sydney")
		// The bubble's clock starts in 2000: certificates are made here.
		authority, err := pki.NewCA(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		srvCert, err := authority.Issue(pki.Identity{Role: pki.RoleOrigin, ID: "o"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cliCert, err := authority.Issue(pki.Identity{Role: pki.RoleEdge, ID: "e"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		str := &quic.Transport{Conn: cb}
		defer str.Close()
		ln, err := str.Listen(pki.ServerTLS(authority, srvCert, pki.RoleEdge, time.Now), &quic.Config{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			st, err := conn.AcceptStream(context.Background())
			if err != nil {
				return
			}
			io.Copy(st, st)
			st.Close()
		}()
		ctr := &quic.Transport{Conn: ca}
		defer ctr.Close()
		start := time.Now()
		conn, err := ctr.Dial(context.Background(), cb.LocalAddr(), clientTLS(t, authority, cliCert), &quic.Config{})
		if err != nil {
			t.Fatal(err)
		}
		handshake := time.Since(start)
		st, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		st.Write([]byte("hello"))
		st.Close()
		b, err := io.ReadAll(st)
		if err != nil || string(b) != "hello" {
			t.Fatalf("echo %q, %v", b, err)
		}
		total := time.Since(start)
		t.Logf("rtt %v: handshake %v, handshake+echo %v (simulated)", rtt, handshake, total)
		if handshake < rtt || total < 2*rtt || total > 4*rtt {
			t.Errorf("handshake %v, total %v: want ≥ 1 and 2..4 RTTs of %v", handshake, total, rtt)
		}
		conn.CloseWithError(0, "")
		ln.Close()
	})
}

func clientTLS(t *testing.T, ca *pki.CA, cert tls.Certificate) *tls.Config {
	t.Helper()
	return pki.ClientTLS(ca, cert, pki.RoleOrigin, time.Now)
}
