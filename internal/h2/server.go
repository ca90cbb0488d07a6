// Package h2 is the edge's HTTP/2 server (RFC 9113, with HPACK, RFC
// 7541), for connections whose TLS handshake chose "h2" by ALPN. Like
// internal/h1 it answers the requests a cache serves most, a plain GET or
// HEAD of a held object, on the connection's own goroutine: no goroutine,
// channel or context per request, and the answers to a burst of requests
// leave in one write. Every other request goes to an http.Handler on a
// goroutine of its own, as net/http's server would run it.
//
// Why not net/http's HTTP/2 server: it runs every request on a goroutine
// of its own that hands each header and body write back to the
// connection's serve loop over channels, so that for a 1 KiB hit the
// hand-offs, the goroutine's stack growth and a flush per response cost
// more than the hit; under h2load it served half of what nginx did.
//
// One goroutine per connection reads frames (golang.org/x/net/http2's
// Framer, which also checks frame sizes, header blocks and their
// CONTINUATION frames) and answers them. Output frames go into one
// buffer per connection, guarded by its mutex, and are written by
// whichever goroutine finds the wire free: the reader when it has no more
// input to process or the buffer has grown past flushAt, a handler after
// its writes. The Framer is used only to read: frames are written by
// appending their bytes to that buffer, DATA frames read straight from
// the body's file or slice, and header blocks are encoded without a
// dynamic table from the handler's header lines (as nginx does).
//
// Key invariant: a connection holds bounded memory whatever its peer
// does. Request bodies are bounded by the windows advertised, output by
// maxPending (writers wait beyond it, and the write deadline cuts a peer
// that does not read), control frames answered by maxControlFrames
// unwritten, header lists by MaxHeaderBytes and, with CONTINUATION
// frames, by the bytes one header block may take from the connection; a
// fast-path body the peer's windows cannot take yet waits as a file
// handle and an offset, never read ahead.
package h2

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geocdn/geocdn/internal/h1"
)

// FastHandler answers a request from its head through w, or declines by
// returning false without having written anything; the request then goes
// to the Server's Handler. It runs on the connection's goroutine, so it
// must not block. It is offered only GET and HEAD requests whose HEADERS
// frame ends the stream (no body) and that carry none of the Server's
// SlowHeaders. r and its fields are valid only until it returns.
type FastHandler func(w *Reply, r *h1.Request) bool

// Server serves HTTP/2 on connections handed to ServeConn. The zero value
// with a Handler is usable; the defaults are those documented per field.
type Server struct {
	// Handler answers every request Fast declines or is not offered.
	// Required.
	Handler http.Handler
	// Fast, if set, is offered the plain requests first.
	Fast FastHandler
	// SlowHeaders names request header fields (case-insensitively) whose
	// presence sends a request to Handler. Content-Length,
	// Transfer-Encoding, Expect and Upgrade always do.
	SlowHeaders []string

	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: streams
	// beyond it are refused with RST_STREAM(REFUSED_STREAM). It also caps
	// the handler goroutines a connection runs, counting those of streams
	// the client has reset and whose handlers have not returned yet: a
	// client that keeps opening and resetting streams (CVE-2023-44487,
	// "rapid reset") gets REFUSED_STREAM, and more than that many such
	// refusals end its connection with GOAWAY(ENHANCE_YOUR_CALM).
	// Default 250.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes caps a request's header list as HPACK counts it
	// (SETTINGS_MAX_HEADER_LIST_SIZE, each field's name and value plus 32
	// bytes). Default 1 MiB, as net/http's.
	MaxHeaderBytes int
	// PrefaceTimeout bounds the wait for the client's preface and first
	// SETTINGS frame. Default 10 s.
	PrefaceTimeout time.Duration
	// IdleTimeout closes a connection (GOAWAY, then close) that has had no
	// stream open and sent no frame for that long (checked every quarter
	// of the shortest timeout). Zero means never.
	IdleTimeout time.Duration
	// PingInterval and PingTimeout: after PingInterval without a frame
	// from the client, a PING goes out, and the connection closes if
	// nothing arrives within PingTimeout of it. Zero PingInterval sends
	// none. PingTimeout defaults to 15 s.
	PingInterval, PingTimeout time.Duration
	// WriteTimeout bounds each write to the connection (at most about
	// maxPending bytes, so a client must read at least maxPending per
	// WriteTimeout, as internal/h1's MinWriteRate), and the time a
	// response may wait for a client's flow-control window with no
	// WINDOW_UPDATE arriving. A client that exceeds either loses the
	// connection. Default 1 minute.
	WriteTimeout time.Duration
	// Logger receives handler panics. Nil means slog.Default().
	Logger *slog.Logger

	initOnce   sync.Once
	slow       map[string]bool
	wslack     time.Duration
	mu         sync.Mutex
	conns      map[*conn]struct{}
	wg         sync.WaitGroup // ServeConn calls
	closing    atomic.Bool
	baseCtx    context.Context
	cancel     context.CancelFunc
	shutdownCh chan struct{}
	shutOnce   sync.Once
	date       dateCache
}

// alwaysSlow are the request fields that always send a request to the
// Handler (as internal/h1's).
var alwaysSlow = []string{"content-length", "transfer-encoding", "expect", "upgrade"}

const (
	defaultMaxStreams     = 250
	defaultMaxHeaderBytes = 1 << 20
	defaultPrefaceTimeout = 10 * time.Second
	defaultPingTimeout    = 15 * time.Second
	defaultWriteTimeout   = time.Minute
)

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.MaxConcurrentStreams == 0 {
			s.MaxConcurrentStreams = defaultMaxStreams
		}
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = defaultMaxHeaderBytes
		}
		if s.PrefaceTimeout <= 0 {
			s.PrefaceTimeout = defaultPrefaceTimeout
		}
		if s.PingTimeout <= 0 {
			s.PingTimeout = defaultPingTimeout
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = defaultWriteTimeout
		}
		s.wslack = min(time.Second, s.WriteTimeout/8)
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		s.slow = map[string]bool{}
		for _, n := range append(append([]string(nil), alwaysSlow...), s.SlowHeaders...) {
			s.slow[strings.ToLower(n)] = true
		}
		s.conns = map[*conn]struct{}{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.shutdownCh = make(chan struct{})
	})
}

// ErrServerClosed is returned by ServeConn after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// ServeConn serves HTTP/2 on c, whose peer is to send the client preface
// next (for TLS, after the handshake chose "h2"), and returns when the
// connection has closed and the handlers of its streams have returned.
// It closes c.
func (s *Server) ServeConn(c net.Conn) error {
	s.init()
	cc := newConn(s, c)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		c.Close()
		return ErrServerClosed
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	cc.serve()
	return nil
}

// Shutdown sends every connection a GOAWAY naming the last stream it
// will answer, lets the streams below it finish and closes each
// connection when they have; it returns when all have closed, or closes
// the rest when ctx ends first and returns ctx's error. Connections
// handed to ServeConn afterwards are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing.Store(true)
	s.shutOnce.Do(func() { close(s.shutdownCh) })
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.startGoAway(http2ErrCodeNo, true)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once, cancels the contexts of the
// requests in hand and waits for their handlers to return.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closing.Store(true)
	s.shutOnce.Do(func() { close(s.shutdownCh) })
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
