package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/h2"
)

// Clients over TLS. One port, two sockets: TCP carries HTTP/1.1 and
// HTTP/2, chosen by ALPN, and UDP carries HTTP/3 (quic-go's http3), on a
// socket of its own so that client QUIC never shares the origin-facing
// one. Every protocol runs the same handler, so a response is the same
// whichever a client speaks (TestProtocolsAnswerAlike).
//
//   - HTTP/1.1 over TLS is the plain listener's server (internal/h1), fast
//     path included; the handshake runs on the connection's goroutine.
//   - HTTP/2 connections are handed by ALPN to the edge's own HTTP/2
//     server (internal/h2): hits from the fast path on the connection's
//     goroutine, the rest through the same handler; its limits are set
//     below, and its Shutdown sends GOAWAY and lets requests in flight
//     finish. (net/http's served half of nginx's rate: a goroutine and
//     channel hand-offs per request, and a write per response.)
//   - HTTP/3 answers on the same port number over UDP, advertised by
//     Alt-Svc on every response over TLS.
//
// TLS 1.2 and 1.3 with Go's defaults (cipher suites, curves); session
// resumption by tickets, whose keys crypto/tls rotates; 0-RTT stays off
// (HTTP/3 only could have it): early data can be replayed by anyone who
// recorded it, and a CDN's GETs change counters and caches.

// Limits of the TLS listeners, set deliberately rather than left to
// library defaults that may move.
const (
	// tlsHandshakeTimeout bounds a TLS handshake over TCP and QUIC's
	// handshake idle time.
	tlsHandshakeTimeout = 10 * time.Second
	// h2MaxStreams is the concurrent streams an HTTP/2 client may open
	// (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused with
	// RST_STREAM(REFUSED_STREAM). It also caps the handlers a connection
	// runs, counting those of streams the client reset: more refusals
	// than that end the connection (rapid reset, CVE-2023-44487).
	// h3MaxStreams is HTTP/3's equivalent.
	h2MaxStreams = 250
	h3MaxStreams = 250
	// h2PingInterval and h2PingTimeout: a PING after 30 s of silence, and
	// the connection closed if nothing comes within 15 s: dead peers do
	// not hold streams.
	h2PingInterval = 30 * time.Second
	h2PingTimeout  = 15 * time.Second
	// altSvcMaxAge is how long clients may remember the HTTP/3 endpoint.
	altSvcMaxAge = 24 * time.Hour
)

// tlsServers serves clients over TLS: HTTP/1.1 and HTTP/2 on ln (TCP),
// HTTP/3 on udp.
type tlsServers struct {
	ln      net.Listener // TCP, handing out *tls.Conn
	udp     net.PacketConn
	ownsUDP bool
	h1      *h1.Server
	h2      *h2.Server
	h3      *http3.Server
}

// tlsConfig is the TLS configuration every client listener shares.
func tlsConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// altSvcValue is the Alt-Svc field advertising HTTP/3 on port.
func altSvcValue(port int) string {
	return `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.Itoa(int(altSvcMaxAge/time.Second))
}

// newTLSServers builds the servers of ln (a plain TCP listener, wrapped
// here) and udp for h, and the fast path of HTTP/1.1 hits.
func newTLSServers(ln net.Listener, udp net.PacketConn, h *handler, conf *tls.Config, maxConns int, log *slog.Logger) *tlsServers {
	s := &tlsServers{
		ln:  tls.NewListener(ln, conf),
		udp: udp,
	}
	s.h2 = &h2.Server{
		Handler:     h,
		Fast:        func(w *h2.Reply, r *h1.Request) bool { return h.serveFastTo(w, r) },
		SlowHeaders: SlowHeaders,
		// A new connection's preface and SETTINGS, as a request head.
		PrefaceTimeout: readHeaderTimeout,
		IdleTimeout:    idleTimeout,
		// The header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE).
		MaxHeaderBytes:       maxHeaderBytes,
		MaxConcurrentStreams: h2MaxStreams,
		PingInterval:         h2PingInterval,
		PingTimeout:          h2PingTimeout,
		// Each write of at most 512 KiB, and a response waiting for the
		// client's window with no WINDOW_UPDATE, get writeTimeout.
		WriteTimeout: writeTimeout,
		Logger:       log,
	}
	s.h1 = clientServer(h, maxConns, log)
	s.h1.HandshakeTimeout = tlsHandshakeTimeout
	s.h1.TLSNextProto = map[string]func(*tls.Conn){"h2": s.serveH2}
	if udp != nil {
		s.h3 = &http3.Server{
			Handler:   h,
			TLSConfig: http3.ConfigureTLSConfig(conf),
			QUICConfig: &quic.Config{
				HandshakeIdleTimeout: tlsHandshakeTimeout,
				MaxIdleTimeout:       idleTimeout,
				MaxIncomingStreams:   h3MaxStreams,
				Allow0RTT:            false,
			},
			IdleTimeout:    idleTimeout,
			MaxHeaderBytes: maxHeaderBytes,
			Logger:         log,
		}
	}
	return s
}

// serveH2 serves tc, whose ALPN chose HTTP/2, and returns once it
// closed, so that the HTTP/1.1 server counts it open until then.
func (s *tlsServers) serveH2(tc *tls.Conn) {
	s.h2.ServeConn(tc)
}

// serve runs every server until shutdown; errc receives the first
// failure.
func (s *tlsServers) serve(errc chan<- error) {
	go func() {
		if err := s.h1.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("https: %w", err)
		}
	}()
	if s.h3 != nil {
		go func() {
			if err := s.h3.Serve(s.udp); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
				errc <- fmt.Errorf("http/3: %w", err)
			}
		}()
	}
}

// shutdown stops accepting and lets requests in flight finish: HTTP/2
// and HTTP/3 clients get a GOAWAY. What ctx does not allow is closed.
func (s *tlsServers) shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.h2.Shutdown(ctx) })
	wg.Go(func() { s.h1.Shutdown(ctx) })
	if s.h3 != nil {
		wg.Go(func() { s.h3.Shutdown(ctx) })
	}
	wg.Wait()
	s.close()
}

// close closes every listener and connection at once.
func (s *tlsServers) close() {
	s.h2.Close()
	s.h1.Close()
	s.ln.Close()
	if s.h3 != nil {
		s.h3.Close()
	}
	if s.ownsUDP {
		s.udp.Close()
	}
}

// listenTLSPair binds addr over TCP and the same address and port over
// UDP. With port 0 the kernel picks the TCP port, and the pair is tried
// again (a few times) if that port is taken over UDP.
func listenTLSPair(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("https address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen https %s: %w", addr, err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return ln, udp, nil
		}
		ln.Close()
		if port != "0" || attempt == 8 {
			return nil, nil, fmt.Errorf("listen http/3 (udp) %s: %w", net.JoinHostPort(host, strconv.Itoa(p)), err)
		}
	}
}
