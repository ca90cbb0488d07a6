package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRouterDNSProcess runs `geocdn router --dns 127.0.0.1:0` against a
// real origin and two edges, and asks it as a resolver would, over UDP
// and TCP: an edge given an address by --dns-edge-addrs is answered with
// it, one without with its public URL's address; names it does not serve
// are NXDOMAIN, other zones REFUSED; the ready file names the DNS
// address, and /metrics counts the answers.
func TestRouterDNSProcess(t *testing.T) {
	c := newCluster(t)
	lhr := c.addEdge("lhr", "eu-west", 51.51, -0.13)
	c.addEdge("nrt", "ap-northeast", 35.68, 139.69)
	c.start()

	readyPath := filepath.Join(c.dir, "router.ready.json")
	rp, rf, taken := startNode(t, "router", readyPath, "router", "--http", anyPort, "--dns", anyPort,
		"--dns-zone", "CDN.test", "--dns-names", "cdn.test,www.cdn.test", "--dns-ttl", "10s",
		"--dns-edge-addrs", "lhr=198.18.0.1,2001:db8:ffff::1",
		"--origin-admin", c.originURL(), "--token-file", c.tokenFile, "--geoip", repoFile("geoip-test.mmdb"),
		"--membership-interval", "100ms", "--probe-interval", "100ms")
	if taken {
		t.Fatalf("router could not bind port 0:\n%s", rp.out.String())
	}
	checkUDPInUse(t, "router dns", rf.DNS)
	if ln, err := net.Listen("tcp", rf.DNS); err == nil {
		ln.Close()
		t.Errorf("router dns %s: nothing holds this TCP address", rf.DNS)
	}

	ask := func(network, name string, qtype uint16, subnet string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		if subnet != "" {
			ip, ipnet, err := net.ParseCIDR(subnet)
			if err != nil {
				t.Fatal(err)
			}
			bits, _ := ipnet.Mask.Size()
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(bits), Address: ip.To4()})
		}
		cl := &dns.Client{Net: network, Timeout: 10 * time.Second} // guards a hang only
		m, _, err := cl.Exchange(q, rf.DNS)
		if err != nil {
			t.Fatalf("%s %s: %v", network, name, err)
		}
		return m
	}
	firstA := func(m *dns.Msg) string {
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				return a.A.String()
			}
		}
		return ""
	}
	// London (192.0.2.16/28 in the test database) goes to lhr once the
	// router has found and probed it.
	waitFor(t, "DNS answers London with lhr", func() bool {
		return firstA(ask("udp", "www.cdn.test.", dns.TypeA, "192.0.2.17/32")) == "198.18.0.1"
	}, rp, c.origin, lhr.p)
	m := ask("tcp", "WWW.cdn.TEST.", dns.TypeAAAA, "192.0.2.17/32")
	if len(m.Answer) != 1 || m.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8:ffff::1" || m.Answer[0].Header().Ttl != 10 || !m.Authoritative {
		t.Fatalf("AAAA over TCP: %v, want lhr's 2001:db8:ffff::1, TTL 10, authoritative", m)
	}
	// Tokyo goes to nrt, which has no --dns-edge-addrs entry: its public
	// URL's host, the loopback address it listens on.
	waitFor(t, "DNS answers Tokyo with nrt", func() bool {
		return firstA(ask("tcp", "cdn.test.", dns.TypeA, "198.51.100.65/32")) == "127.0.0.1"
	}, rp, c.origin)
	if m := ask("udp", "nope.cdn.test.", dns.TypeA, ""); m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 {
		t.Fatalf("unserved name: %s %v, want NXDOMAIN with the SOA", dns.RcodeToString[m.Rcode], m.Ns)
	}
	if m := ask("udp", "example.com.", dns.TypeA, ""); m.Rcode != dns.RcodeRefused || m.RecursionAvailable {
		t.Fatalf("other zone: %s ra=%v, want REFUSED without recursion", dns.RcodeToString[m.Rcode], m.RecursionAvailable)
	}
	// Garbage does not stop it.
	if conn, err := net.Dial("udp", rf.DNS); err == nil {
		conn.Write([]byte{0xde, 0xad, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}) // a name cut short: FORMERR
		conn.Close()
	}
	if m := ask("udp", "cdn.test.", dns.TypeSOA, ""); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("SOA after garbage: %v", m)
	}

	resp, err := c.http.Get("http://" + rf.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`geocdn_router_dns_responses_total{rcode="NOERROR",transport="tcp"}`,
		`geocdn_router_dns_responses_total{rcode="NXDOMAIN",transport="udp"} 1`,
		`geocdn_router_dns_responses_total{rcode="REFUSED",transport="udp"} 1`,
		`geocdn_router_dns_responses_total{rcode="FORMERR",transport="udp"} 1`,
		`geocdn_router_dns_edges 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	rp.signal(t, syscall.SIGTERM)
	if st := rp.wait(t); st.ExitCode() != 0 {
		t.Fatalf("router exited with %v after SIGTERM, want status 0", st)
	}
}

// TestRouterDNSFlags: DNS flags are checked before anything binds, and
// the error names the flag.
func TestRouterDNSFlags(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(strings.Repeat("0123456789abcdef", 2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"router", "--http", anyPort, "--origin-admin", "http://127.0.0.1:1", "--token-file", tok, "--geoip", repoFile("geoip-test.mmdb")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dns", anyPort}, "--dns-zone"},
		{[]string{"--dns", anyPort, "--dns-zone", "cdn.test", "--dns-edge-addrs", "lhr=not-an-ip"}, "--dns-edge-addrs"},
		{[]string{"--dns", anyPort, "--dns-zone", "cdn.test", "--dns-ns", "=192.0.2.1"}, "--dns-ns"},
		{[]string{"--dns", anyPort, "--dns-zone", "cdn.test", "--dns-names", "www.example.com"}, "not in the zone"},
		{[]string{"--dns", anyPort, "--dns-zone", "cdn.test", "--dns-ttl", "2h"}, "dns ttl"},
	} {
		_, stderr, err := runCLI(t, append(common, tc.args...)...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("geocdn %s: %v\n%s\nwant an error naming %s", strings.Join(tc.args, " "), err, stderr, tc.want)
		}
	}
}
