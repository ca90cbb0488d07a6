package rttstat

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77":               "192.0.2.0/24",
		"::ffff:192.0.2.77":        "192.0.2.0/24",
		"2001:db8:1:2:3:4:5:6":     "2001:db8:1::/48",
		"fe80::1%eth0":             "fe80::/48",
		"2001:db8:ffff:ffff::1234": "2001:db8:ffff::/48",
	} {
		if got := Network(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Network(%s) = %s, want %s", in, got, want)
		}
	}
}

// The median of a network's samples is read to within the bucket width,
// whatever the spread around it.
func TestMedian(t *testing.T) {
	tab := New(Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	client := netip.MustParseAddr("198.51.100.9")
	for range 1001 {
		// 40 ms ± 30 ms, uniform: median 40 ms.
		rtt := 10*time.Millisecond + time.Duration(rng.Int64N(int64(60*time.Millisecond)))
		tab.Add(client, rtt, t0)
	}
	ms := tab.Medians(t0, 1, 0)
	if len(ms) != 1 || ms[0].Network.String() != "198.51.100.0/24" || ms[0].Samples != 1001 {
		t.Fatalf("medians %+v", ms)
	}
	if got := ms[0].RTT; got < 38*time.Millisecond || got > 42*time.Millisecond {
		t.Errorf("median %v, want about 40ms", got)
	}
	// Too few samples: left out.
	if ms := tab.Medians(t0, 2000, 0); len(ms) != 0 {
		t.Errorf("minSamples 2000 kept %+v", ms)
	}
}

// Old samples fade: after the network's RTT changes, the median follows
// once the new samples outweigh the decayed old ones.
func TestDecayFollowsChange(t *testing.T) {
	tab := New(Options{HalfLife: time.Minute})
	c := netip.MustParseAddr("2001:db8::1")
	for range 100 {
		tab.Add(c, 20*time.Millisecond, t0)
	}
	later := t0.Add(5 * time.Minute) // 100 samples weigh 3.1 now
	for range 10 {
		tab.Add(c, 90*time.Millisecond, later)
	}
	ms := tab.Medians(later, 1, 0)
	if len(ms) != 1 || ms[0].RTT < 85*time.Millisecond || ms[0].RTT > 95*time.Millisecond {
		t.Fatalf("after the change: %+v, want a median near 90ms", ms)
	}
	if ms[0].Samples < 13 || ms[0].Samples > 13.2 {
		t.Errorf("decayed samples %.2f, want 10 + 100/32", ms[0].Samples)
	}
}

// The table never holds more than its bound; the busiest networks stay.
func TestBoundedKeepsBusiest(t *testing.T) {
	tab := New(Options{MaxNetworks: 16})
	busy := netip.MustParseAddr("203.0.113.1")
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Second)
		tab.Add(busy, 10*time.Millisecond, now)
		// A new network every step, each seen once.
		tab.Add(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 50*time.Millisecond, now)
		if n := tab.Len(); n > 16 {
			t.Fatalf("step %d: %d networks held, bound 16", i, n)
		}
	}
	ms := tab.Medians(t0.Add(1000*time.Second), 0, 1)
	if len(ms) != 1 || ms[0].Network != Network(busy) {
		t.Fatalf("busiest network gone: %+v", ms)
	}
}

func TestIgnoresBadInput(t *testing.T) {
	tab := New(Options{})
	tab.Add(netip.Addr{}, time.Millisecond, t0)
	tab.Add(netip.MustParseAddr("192.0.2.1"), 0, t0)
	tab.Add(netip.MustParseAddr("192.0.2.1"), -time.Second, t0)
	if tab.Len() != 0 {
		t.Fatalf("held %d networks from bad samples", tab.Len())
	}
	// Beyond the buckets at both ends: clamped, not lost.
	tab.Add(netip.MustParseAddr("192.0.2.1"), time.Microsecond, t0)
	tab.Add(netip.MustParseAddr("192.0.2.1"), time.Hour, t0)
	if ms := tab.Medians(t0, 1, 0); len(ms) != 1 || ms[0].Samples != 2 {
		t.Fatalf("%+v", ms)
	}
}

func BenchmarkAdd(b *testing.B) {
	tab := New(Options{})
	addrs := make([]netip.Addr, 8192)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
	}
	i := 0
	for b.Loop() {
		tab.Add(addrs[i%len(addrs)], 30*time.Millisecond, t0)
		i++
	}
}

// A loopback connection's RTT is read from the kernel, at accept already.
func TestTCPRTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rtt, ok := TCPRTT(s.(*net.TCPConn))
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatalf("RTT %v off Linux", rtt)
		}
		return
	}
	if !ok || rtt <= 0 || rtt > time.Second {
		t.Fatalf("loopback RTT %v, %v", rtt, ok)
	}
}
