// Package tlscert provides the certificate store behind the client-facing
// TLS listeners of edges and routers (HTTPS over TCP and HTTP/3 over QUIC
// share one Store through tls.Config.GetCertificate). Certificates come from
// PEM files on disk, are chosen per handshake by SNI, and are reloaded in
// place when the files change.
//
// Invariant: every certificate a Store serves was, when it was loaded, whole
// (no truncated PEM block), its leaf matched its key and was valid. A
// reload that finds a pair's files broken (unreadable, mismatched, expired,
// half-written) keeps serving that pair's previous certificate, so a botched
// renewal never takes a listener down.
package tlscert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pair names one certificate and its key on disk. CertFile holds the leaf
// first, then any intermediates; KeyFile holds the leaf's private key
// (PKCS #1, PKCS #8 or SEC 1, PEM).
type Pair struct{ CertFile, KeyFile string }

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Logger receives reload warnings and new-certificate notices.
	// Nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for expiry checks at load time. Nil means time.Now.
	Now func() time.Time
	// OnReload, if not nil, is called once per pair after each Reload,
	// with that pair's error (nil on success), so the caller can count
	// failures in a metric. It is called after the reloaded certificates
	// are in use and without any lock held, from the goroutine that called
	// Reload (Watch's, for reloads Watch triggers); it may call the Store's
	// methods, including Reload.
	OnReload func(p Pair, err error)
	// NoDefault refuses a handshake whose server name (or, without one,
	// local address) no certificate names, rather than answer it with
	// the first pair's certificate.
	NoDefault bool
}

// Store holds the certificates of a set of Pairs. Create it with Load; its
// methods are safe for concurrent use.
type Store struct {
	pairs    []Pair
	log      *slog.Logger
	now      func() time.Time
	onReload func(Pair, error)
	// noDefault is Options.NoDefault.
	noDefault bool

	// snap is what handshakes read; it is replaced whole, never modified,
	// so GetCertificate takes no lock however often Reload runs.
	snap atomic.Pointer[snapshot]

	// mu serialises reloads, so that each keeps the certificates the
	// previous one left, and guards stamps.
	mu sync.Mutex
	// stamps[i] is what pairs[i]'s files looked like just before they
	// were last read; Watch reloads when they look different.
	stamps []pairStamp
}

// snapshot is an immutable view of the loaded certificates.
type snapshot struct {
	// certs[i] is the certificate of pairs[i]; certs[0] is the default.
	certs []*tls.Certificate
	// exact maps a lower-cased DNS SAN to the certificates naming it, in
	// pair order; wild maps the parent domain of a wildcard SAN
	// ("example.com" for "*.example.com") likewise; ips maps an IP SAN.
	exact map[string][]*tls.Certificate
	wild  map[string][]*tls.Certificate
	ips   map[netip.Addr][]*tls.Certificate
}

// Load reads every pair. The first pair's certificate is the default, served
// when the ClientHello's server name matches no certificate or there is
// none. It fails, naming the file and the reason, if any pair cannot be
// used: an unreadable file, no PEM certificate, a truncated PEM block, a key
// that does not match its certificate, or a leaf that is expired or not yet
// valid at Now. Zero pairs is an error too.
func Load(pairs []Pair, opts Options) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("tlscert: no certificate pairs to load")
	}
	s := &Store{
		pairs:     slices.Clone(pairs),
		log:       opts.Logger,
		now:       opts.Now,
		onReload:  opts.OnReload,
		noDefault: opts.NoDefault,
		stamps:    make([]pairStamp, len(pairs)),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	certs := make([]*tls.Certificate, len(pairs))
	var errs []error
	for i, p := range s.pairs {
		s.stamps[i] = stampPair(p)
		c, err := loadPair(p, s.now())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		certs[i] = c
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.snap.Store(newSnapshot(certs))
	return s, nil
}

// Pairs returns the pairs the Store was loaded from, in order.
func (s *Store) Pairs() []Pair { return slices.Clone(s.pairs) }

// GetCertificate chooses the certificate for a handshake; it is meant for
// tls.Config.GetCertificate (and so for quic-go, which passes it through).
//
// A server name is matched case-insensitively, ignoring a trailing dot,
// against the leaves' DNS SANs: exact names first, then wildcard SANs
// ("*.example.com" matches exactly one label, so neither "example.com" nor
// "a.b.example.com"). A server name that is an IP address (which RFC 6066
// forbids, but some clients send), or failing that, when there is no server
// name, the address the connection arrived on, is matched against the
// leaves' IP SANs. Subject common names are ignored, as clients ignore them.
// When nothing matches, the result is the default certificate.
//
// When several certificates match (say an ECDSA and an RSA one for the same
// name), the first, in the order the pairs were given, that the client
// supports wins (tls.ClientHelloInfo.SupportsCertificate); if it supports
// none, the first. It returns an error only with Options.NoDefault, for a
// handshake no certificate names.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	snap := s.snap.Load()
	if snap == nil {
		return nil, errors.New("tlscert: store has no certificates; create it with Load")
	}
	if hello == nil {
		return snap.certs[0], nil
	}
	name := normalizeName(hello.ServerName)
	var first, second []*tls.Certificate
	if ip, err := netip.ParseAddr(name); err == nil {
		first = snap.ips[normalizeAddr(ip)]
	} else if name != "" {
		first = snap.exact[name]
		if i := strings.IndexByte(name, '.'); i > 0 {
			second = snap.wild[name[i+1:]]
		}
	} else if ip, ok := localAddr(hello.Conn); ok {
		first = snap.ips[ip]
	}
	if len(first)+len(second) == 0 && s.noDefault {
		return nil, fmt.Errorf("tlscert: no certificate for server name %q", hello.ServerName)
	}
	return choose(hello, snap.certs[0], first, second), nil
}

// choose returns the first certificate in first, then second, that hello
// supports, else the first one in either, else def.
func choose(hello *tls.ClientHelloInfo, def *tls.Certificate, first, second []*tls.Certificate) *tls.Certificate {
	n := len(first) + len(second)
	if n == 0 {
		return def
	}
	var fallback *tls.Certificate
	if len(first) > 0 {
		fallback = first[0]
	} else {
		fallback = second[0]
	}
	if n == 1 {
		// The usual case; checking support would change nothing.
		return fallback
	}
	for _, list := range [][]*tls.Certificate{first, second} {
		for _, c := range list {
			if hello.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return fallback
}

// localAddr returns the address a connection arrived on, if known. Both
// crypto/tls and quic-go set ClientHelloInfo.Conn; quic-go's carries the
// UDP addresses.
func localAddr(c net.Conn) (netip.Addr, bool) {
	if c == nil {
		return netip.Addr{}, false
	}
	a, ok := c.LocalAddr().(interface{ AddrPort() netip.AddrPort })
	if !ok {
		return netip.Addr{}, false
	}
	ip := a.AddrPort().Addr()
	if !ip.IsValid() {
		return netip.Addr{}, false
	}
	return normalizeAddr(ip), true
}

// normalizeAddr makes addresses comparable across the forms a dual-stack
// listener and a certificate use: IPv4-mapped IPv6 becomes IPv4, and zones
// (meaningless in a certificate) are dropped.
func normalizeAddr(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }

// normalizeName lower-cases a DNS name and drops a trailing dot, so that
// "Example.COM." and "example.com" meet in the maps.
func normalizeName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// Reload re-reads every pair. A pair whose files are now broken
// (unreadable, mismatched, expired, half-written) keeps its previous
// certificate; the failure is logged as a warning, passed to OnReload and
// returned, joined with any others. Established connections keep the
// certificate they were made with; handshakes that start after Reload
// returns see the new ones. Concurrent calls are serialised.
func (s *Store) Reload() error {
	if s.snap.Load() == nil {
		return errors.New("tlscert: store has no certificates; create it with Load")
	}
	errs := make([]error, len(s.pairs))
	s.mu.Lock()
	certs := slices.Clone(s.snap.Load().certs)
	now := s.now()
	for i, p := range s.pairs {
		s.stamps[i] = stampPair(p)
		c, err := loadPair(p, now)
		if err != nil {
			errs[i] = err
			s.log.Warn("tlscert: reload failed; keeping the previous certificate",
				"cert_file", p.CertFile, "key_file", p.KeyFile, "err", err)
			continue
		}
		if !c.Leaf.Equal(certs[i].Leaf) {
			s.log.Info("tlscert: loaded new certificate", "cert_file", p.CertFile,
				"subject", c.Leaf.Subject.String(), "dns_names", c.Leaf.DNSNames,
				"ip_addresses", c.Leaf.IPAddresses, "not_after", c.Leaf.NotAfter)
		}
		certs[i] = c
	}
	s.snap.Store(newSnapshot(certs))
	s.mu.Unlock()

	if s.onReload != nil {
		for i, p := range s.pairs {
			s.onReload(p, errs[i])
		}
	}
	return errors.Join(errs...)
}

// Leaves returns the leaf certificates now in use, one per pair in the
// order given to Load, for logging and metrics (subject, SANs, NotAfter).
// They are shared with handshakes in progress and must not be modified.
func (s *Store) Leaves() []*x509.Certificate {
	snap := s.snap.Load()
	if snap == nil {
		return nil
	}
	leaves := make([]*x509.Certificate, len(snap.certs))
	for i, c := range snap.certs {
		leaves[i] = c.Leaf
	}
	return leaves
}

// Watch polls the pairs' files every interval (a non-positive interval
// means DefaultWatchInterval) and calls Reload when any file's modification
// time, size or identity (inode, where the platform has one) differs from
// when it was last read, until ctx ends. Polling needs no dependency and
// works on every file system, network ones included; certificates change
// rarely enough that a poll a minute costs nothing.
//
// A pair that failed to load is not retried until one of its files changes
// again, so a broken renewal is logged once, not at every tick; a writer
// that is still writing will change the file again. Call Reload directly
// (say, on SIGHUP) to retry regardless.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.changed() {
			// Reload logs and reports its failures itself.
			_ = s.Reload()
		}
	}
}

// DefaultWatchInterval is how often Watch polls when given no interval.
const DefaultWatchInterval = time.Minute

// changed reports whether any file looks different from when it was last
// read.
func (s *Store) changed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pairs {
		if stampPair(p) != s.stamps[i] {
			return true
		}
	}
	return false
}

func newSnapshot(certs []*tls.Certificate) *snapshot {
	s := &snapshot{
		certs: certs,
		exact: make(map[string][]*tls.Certificate),
		wild:  make(map[string][]*tls.Certificate),
		ips:   make(map[netip.Addr][]*tls.Certificate),
	}
	for _, c := range certs {
		for _, n := range c.Leaf.DNSNames {
			n = normalizeName(n)
			switch {
			case strings.HasPrefix(n, "*."):
				// Only a whole leftmost label may be a wildcard; clients
				// reject partial ones ("f*.example.com"), so do we.
				if parent := n[2:]; parent != "" && !strings.Contains(parent, "*") {
					s.wild[parent] = appendOnce(s.wild[parent], c)
				}
			case n != "" && !strings.Contains(n, "*"):
				s.exact[n] = appendOnce(s.exact[n], c)
			}
		}
		for _, b := range c.Leaf.IPAddresses {
			if ip, ok := netip.AddrFromSlice(b); ok {
				ip = normalizeAddr(ip)
				s.ips[ip] = appendOnce(s.ips[ip], c)
			}
		}
	}
	return s
}

// appendOnce appends c unless it is already last, which it is when a leaf
// lists a name twice.
func appendOnce(list []*tls.Certificate, c *tls.Certificate) []*tls.Certificate {
	if len(list) > 0 && list[len(list)-1] == c {
		return list
	}
	return append(list, c)
}

// String names a pair in test failures and logs.
func (p Pair) String() string {
	return fmt.Sprintf("%s (key %s)", p.CertFile, p.KeyFile)
}
