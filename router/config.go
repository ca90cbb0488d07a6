package router

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
)

// Headers a trusted proxy may name the client in (Config.ClientIPHeader).
const (
	HeaderXForwardedFor = "X-Forwarded-For"
	HeaderForwarded     = "Forwarded"
)

// Locator places a client. *geoip.Reader is one; it must be safe for
// concurrent use and never block.
type Locator interface {
	Locate(netip.Addr) geoip.Location
}

// Config configures a Router. Zero values take the defaults named in each
// field's comment; DefaultConfig returns them filled in.
type Config struct {
	// HTTPAddr is the listen address of the redirect and route API
	// (default "127.0.0.1:8088"); ignored when HTTPListener is set. "-"
	// means no HTTP server (a DNS front end uses Decide directly).
	HTTPAddr string
	// HTTPListener, when set, is used instead of listening on HTTPAddr.
	HTTPListener net.Listener
	// Certificate, when set, serves the same API over TLS (HTTP/1.1 and
	// HTTP/2) on HTTPSAddr or HTTPSListener; it chooses each handshake's
	// certificate (internal/tlscert).
	Certificate   func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	HTTPSAddr     string
	HTTPSListener net.Listener
	// DNSAddr, when set, serves the DNS front end (dns.go) on this
	// address over UDP and TCP, one port for both; port 0 takes one the
	// kernel picks that is free for both. Default none: no DNS server.
	// Ignored when DNSPacketConn is set.
	DNSAddr string
	// DNSPacketConn and DNSListener, when set (both), are used instead
	// of listening on DNSAddr. A UDP socket bound to one address is
	// served in batches (recvmmsg, sendmmsg); anything else, a wildcard
	// address included, by miekg/dns's server, at under half the rate.
	DNSPacketConn net.PacketConn
	DNSListener   net.Listener
	// DNSZone is the zone the DNS front end is authoritative for, such
	// as "cdn.example.com": SOA and NS at its apex, NXDOMAIN for the
	// names in it that it does not serve, REFUSED for names outside it.
	// Required with DNS; one zone, not the root.
	DNSZone string
	// DNSNames are the hostnames answered with the chosen edge's
	// addresses (A, AAAA), each the zone's apex or a name in it; no
	// wildcards. Default the apex alone.
	DNSNames []string
	// DNSTTL is the TTL of every DNS record, and the SOA minimum, so
	// negative answers are cached no longer than positive ones. Default
	// 30s; whole seconds (a fraction is dropped), from 1s to 1h.
	DNSTTL time.Duration
	// DNSNameservers are the zone's NS records, first the SOA's primary.
	// Names inside the zone need addresses, which are answered for them;
	// names outside it must have none. Default one, "ns.<zone>", whose
	// address is the one DNS is bound to (none on a wildcard address).
	DNSNameservers []Nameserver
	// DNSEdgeAddrs are the addresses DNS answers with for each edge, by
	// edge id. An edge not in it is answered with the host of its public
	// URL when that is an IP address; an edge with neither is left out
	// of DNS answers (logged and counted), never resolved. DNS answers
	// carry no port: edges reached by DNS serve on the scheme's default.
	DNSEdgeAddrs map[string][]netip.Addr

	// EdgeRootCAs verifies edges whose public URL is https:// when they
	// are probed (nil: the system's roots). Clients are sent to those
	// URLs as they are: an edge that serves TLS gets https redirects.
	EdgeRootCAs *x509.CertPool

	// OriginAdmin is the base URL of the origin's admin API, whose
	// GET /v1/edges lists the edges. Required.
	OriginAdmin string
	// Token is the origin's admin bearer token. Required.
	Token string

	// GeoIPPath is a GeoIP2/GeoLite2 City database. Required unless
	// Locator is set. It is verified when opened, and reopened when it
	// changes (checked every GeoIPReloadInterval, default 30 s;
	// negative: never) or on Router.ReloadGeoIP.
	GeoIPPath           string
	GeoIPReloadInterval time.Duration
	// Locator, when set, places clients instead of a database opened from
	// GeoIPPath (the next three fields then do not apply).
	Locator Locator
	// MaxAccuracyKm is the largest accuracy radius taken as a city-level
	// position. Default geoip.DefaultMaxAccuracyKm (500).
	MaxAccuracyKm int
	// DefaultLocation places clients the database cannot place even by
	// continent. Nil: such clients are spread over every edge.
	DefaultLocation *geo.Point
	// CountryLocations override the built-in point of a country (ISO
	// code → point) for clients located only by country.
	CountryLocations map[string]geo.Point

	// TrustedProxies are the peers whose ClientIPHeader is believed.
	// Default none: the connection's address is always the client's.
	TrustedProxies []netip.Prefix
	// ClientIPHeader is the header trusted proxies append the client to:
	// HeaderXForwardedFor (default) or HeaderForwarded. Only one is read,
	// because a proxy that appends to one passes the other through as
	// the client wrote it.
	ClientIPHeader string

	// Equivalence: edges within this much estimated RTT of the nearest
	// share clients by rendezvous hashing. Default 5ms; at most 100ms.
	Equivalence time.Duration
	// MembershipInterval is how often the origin's edge list is fetched.
	// Default 500ms; at most 1s.
	MembershipInterval time.Duration
	// ProbeInterval is how often each edge's /healthz is probed. Default
	// 250ms; at most 500ms.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe or one edge-list fetch. Default 1s;
	// at most 2s, so a black-holed edge is dropped within 3s.
	ProbeTimeout time.Duration
	// CacheEntries bounds each of the per-network location cache and the
	// per-location ranking cache. Default 65,536; negative disables both.
	CacheEntries int

	// Holders returns the edges that hold namespace/key under the plan in
	// force, or nil when unknown. It is called once per decision and must
	// be fast and safe for concurrent use. Nil: the router follows the
	// origin's plan (GET /v1/placement) itself.
	Holders func(namespace, key string) []string
	// PlanInterval is how often the origin's plan is fetched when Holders
	// is nil. Default 2s; negative: never (the plan is unknown).
	PlanInterval time.Duration
	// NamespaceFor maps a request's Host to a namespace. Nil maps every
	// host to objkey.DefaultNamespace.
	NamespaceFor func(host string) string

	// HTTPClient fetches the edge list and probes edges. Default a client
	// of its own with keep-alives.
	HTTPClient *http.Client
	// Clock drives fetches and probes. Default the real clock.
	Clock clock.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the router's metrics, served on /metrics.
	// Default a fresh registry.
	Registry *prometheus.Registry
}

// DefaultConfig returns a Config with every default filled in; the caller
// still sets OriginAdmin, Token and GeoIPPath.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:           "127.0.0.1:8088",
		MaxAccuracyKm:      geoip.DefaultMaxAccuracyKm,
		ClientIPHeader:     HeaderXForwardedFor,
		Equivalence:        DefaultEquivalence,
		MembershipInterval: 500 * time.Millisecond,
		ProbeInterval:      250 * time.Millisecond,
		ProbeTimeout:       time.Second,
		PlanInterval:       2 * time.Second,
		CacheEntries:       1 << 16,
		DNSTTL:             DefaultDNSTTL,
	}
}

// dnsEnabled reports whether c configures the DNS front end.
func (c Config) dnsEnabled() bool { return c.DNSAddr != "" || c.DNSPacketConn != nil }

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HTTPAddr == "" {
		c.HTTPAddr = d.HTTPAddr
	}
	if c.MaxAccuracyKm == 0 {
		c.MaxAccuracyKm = d.MaxAccuracyKm
	}
	if c.ClientIPHeader == "" {
		c.ClientIPHeader = d.ClientIPHeader
	}
	if c.Equivalence == 0 {
		c.Equivalence = d.Equivalence
	}
	if c.GeoIPReloadInterval == 0 {
		c.GeoIPReloadInterval = 30 * time.Second
	}
	if c.MembershipInterval == 0 {
		c.MembershipInterval = d.MembershipInterval
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = d.CacheEntries
	}
	if c.PlanInterval == 0 {
		c.PlanInterval = d.PlanInterval
	}
	if c.DNSTTL == 0 {
		c.DNSTTL = d.DNSTTL
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // probes go straight to the edges
		if c.EdgeRootCAs != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: c.EdgeRootCAs}
		}
		tr.MaxIdleConnsPerHost = 4
		c.HTTPClient = &http.Client{
			Transport: tr,
			// A /healthz that redirects is not a healthy edge.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return c
}

// Validate reports every problem with c (after defaults).
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.OriginAdmin); c.OriginAdmin == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("origin admin: %q is not an http(s) URL", c.OriginAdmin))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("token: required"))
	}
	if c.Locator == nil && c.GeoIPPath == "" {
		errs = append(errs, errors.New("geoip: a database file is required"))
	}
	if c.MaxAccuracyKm < 1 {
		errs = append(errs, fmt.Errorf("max accuracy: %d km must be at least 1", c.MaxAccuracyKm))
	}
	if c.DefaultLocation != nil && !validPoint(*c.DefaultLocation) {
		errs = append(errs, fmt.Errorf("default location %v: latitude or longitude out of range", *c.DefaultLocation))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("trusted proxies: invalid prefix %v", p))
		}
	}
	if c.ClientIPHeader != HeaderXForwardedFor && c.ClientIPHeader != HeaderForwarded {
		errs = append(errs, fmt.Errorf("client ip header: %q is neither %s nor %s", c.ClientIPHeader, HeaderXForwardedFor, HeaderForwarded))
	}
	if c.Equivalence < 0 || c.Equivalence > 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("equivalence: %v is outside 0..100ms", c.Equivalence))
	}
	if c.MembershipInterval <= 0 || c.MembershipInterval > time.Second {
		errs = append(errs, fmt.Errorf("membership interval: %v is outside (0, 1s]", c.MembershipInterval))
	}
	if c.ProbeInterval <= 0 || c.ProbeInterval > 500*time.Millisecond {
		errs = append(errs, fmt.Errorf("probe interval: %v is outside (0, 500ms]", c.ProbeInterval))
	}
	if c.ProbeTimeout <= 0 || c.ProbeTimeout > 2*time.Second {
		errs = append(errs, fmt.Errorf("probe timeout: %v is outside (0, 2s]", c.ProbeTimeout))
	}
	if c.dnsEnabled() {
		if (c.DNSPacketConn == nil) != (c.DNSListener == nil) {
			errs = append(errs, errors.New("dns: a packet conn and a listener go together"))
		}
		if _, err := newDNSZone(c, netip.Addr{}, 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseNameAddrs parses "NAME=ADDR,ADDR;NAME;..." (the addresses are
// optional): --dns-ns, and --dns-edge-addrs with edge ids for names.
func ParseNameAddrs(s string) ([]Nameserver, error) {
	var out []Nameserver
	for f := range strings.SplitSeq(s, ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, addrs, _ := strings.Cut(f, "=")
		ns := Nameserver{Name: strings.TrimSpace(name)}
		if ns.Name == "" {
			return nil, fmt.Errorf("%q: want NAME=ADDR,ADDR", f)
		}
		for a := range strings.SplitSeq(addrs, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			ip, err := netip.ParseAddr(a)
			if err != nil || ip.Zone() != "" {
				return nil, fmt.Errorf("%s: %q is not an IP address", ns.Name, a)
			}
			ns.Addrs = append(ns.Addrs, ip.Unmap())
		}
		out = append(out, ns)
	}
	return out, nil
}

// ParseEdgeAddrs parses "ID=ADDR,ADDR;ID=ADDR" into
// Config.DNSEdgeAddrs.
func ParseEdgeAddrs(s string) (map[string][]netip.Addr, error) {
	list, err := ParseNameAddrs(s)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]netip.Addr, len(list))
	for _, e := range list {
		if len(e.Addrs) == 0 {
			return nil, fmt.Errorf("%s: no address", e.Name)
		}
		if _, dup := out[e.Name]; dup {
			return nil, fmt.Errorf("%s: given twice", e.Name)
		}
		out[e.Name] = e.Addrs
	}
	return out, nil
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or bare
// addresses ("127.0.0.0/8,::1").
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", f, err)
			}
			a = a.Unmap().WithZone("")
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 means 10.0.0.0/8: peers are unmapped
			// before they are compared.
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q: an IPv4-mapped prefix needs at least 96 bits", f)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseLocation parses "LAT,LON" in degrees.
func ParseLocation(s string) (geo.Point, error) {
	lat, lon, ok := strings.Cut(s, ",")
	if !ok {
		return geo.Point{}, fmt.Errorf("%q: want LAT,LON", s)
	}
	var p geo.Point
	var err error
	if p.Lat, err = parseDegrees(lat); err != nil {
		return geo.Point{}, fmt.Errorf("%q: latitude: %w", s, err)
	}
	if p.Lon, err = parseDegrees(lon); err != nil {
		return geo.Point{}, fmt.Errorf("%q: longitude: %w", s, err)
	}
	if !validPoint(p) {
		return geo.Point{}, fmt.Errorf("%q: latitude must be within ±90 and longitude within ±180", s)
	}
	return p, nil
}

func parseDegrees(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err == nil && math.IsNaN(f) {
		err = errors.New("not a number")
	}
	return f, err
}
