// Package h1 is the edge's HTTP/1.1 server. It answers the requests a
// cache serves most, a plain GET or HEAD of a held object, from a lean
// loop that parses the request head in place and writes the response with
// one system call (writev, or a header held back with MSG_MORE followed by
// sendfile). Every other request goes, one at a time on the same
// connection, through net/http's own request parser to an http.Handler.
//
// Why not net/http alone: for a 1 KiB hit net/http spends more than the
// hit itself on what a cache does not need per request (a context, a
// goroutine watching the connection for the client leaving, several
// deadline updates and a cloned header map), and at 64 KiB and 1 MiB
// its copy through a bufio.Writer and its sendfile path (which seeks the
// file twice and calls sendfile once more to find the end) cost throughput
// against nginx. The fast path keeps net/http's behaviour where it matters
// to a client: the same header limits and timeouts, the same answers to
// malformed requests (it hands anything unusual to net/http's parser) and
// the same response headers, which a test compares header by header.
//
// Differences from net/http a handler may notice: a request's context is
// cancelled when its handler returns or the server closes, not when the
// client goes away (no goroutine watches the connection during a
// request); a request that carries a body closes the connection after its
// answer rather than being drained; there is no HTTP/2, no Hijack and no
// trailers. Where net/http is lax it is stricter: an HTTP/1.0 request
// with Transfer-Encoding is answered 400 (RFC 9112 § 6.1), and the Host
// header line is checked even when an absolute-form target overrides it.
//
// Key invariant: no client holds a connection for long without moving
// bytes. The first request must begin within ReadHeaderTimeout of the
// accept, a head must arrive within ReadHeaderTimeout, a kept-alive
// connection waits IdleTimeout for the next, and a response body must
// keep draining at MinWriteRate over every WriteTimeout window; beyond
// MaxConns, a connection is refused in the accept loop before it costs a
// goroutine.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Request is the head of a request offered to a FastHandler. Its fields
// are valid only until the handler returns.
type Request struct {
	// Head reports a HEAD request; otherwise it is a GET.
	Head bool
	// Path is the target's path, still percent-encoded, without the query.
	Path string
	// Query is the target's query as sent, without the '?': empty when
	// there is none (or nothing follows the '?').
	Query string
	// TLS reports that the request came over TLS.
	TLS bool
	// Host is the Host header's value.
	Host []byte
}

// FastHandler answers a request from its head through w, or declines by
// returning false without having written anything; the request then goes
// to the Server's Handler. It is only offered GET and HEAD requests that
// carry no body and none of the Server's SlowHeaders.
type FastHandler func(w *Reply, r *Request) bool

// Server serves HTTP/1.1 (and 1.0) on plain TCP connections.
type Server struct {
	// Handler answers every request Fast declines or is not offered.
	// Required.
	Handler http.Handler
	// Fast, if set, is offered the plain requests first.
	Fast FastHandler
	// SlowHeaders names request headers (case-insensitively) whose
	// presence sends a request to Handler: those that change the answer,
	// such as Range or the conditionals. Content-Length, Transfer-Encoding,
	// Expect and Upgrade always do.
	SlowHeaders []string

	// ReadHeaderTimeout bounds the wait for a new connection's first
	// byte, and then the reading of each request head from its first
	// byte. ReadTimeout bounds a slow-path request's head and body, and
	// stands in for ReadHeaderTimeout where that is zero, as in net/http
	// (and IdleTimeout for a first request where both are). IdleTimeout
	// bounds the wait for the next request on a kept-alive connection;
	// ReadTimeout stands in where it is zero, as in net/http.
	// WriteTimeout bounds writing a response: its head and, for bodies
	// sent by SendFile or the slow path's ReadFrom, each MinWriteRate ×
	// WriteTimeout bytes of body (a handler may move the deadline itself
	// with http.ResponseController). Zero, with no stand-in, means no
	// limit.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MinWriteRate, in bytes per second, is the slowest a client may read
	// a body sent by SendFile, or from a reader by the slow path's ReadFrom
	// (http.ServeContent's way), averaged over each WriteTimeout: the body
	// goes in pieces of MinWriteRate × WriteTimeout bytes, and each piece
	// written moves the write deadline to WriteTimeout from then. So a
	// client that stops reading is cut about WriteTimeout later (once the
	// kernel's socket buffers are full), and one that keeps up is served
	// however large the body. (The kernel wakes a writer only when a third
	// or so of the socket's send buffer is free, so a window of
	// WriteTimeout must also drain that much: with WriteTimeout in seconds
	// this is far below any useful MinWriteRate.) Zero (or a zero
	// WriteTimeout) sends the whole body under the response's
	// WriteTimeout.
	MinWriteRate int64
	// MaxHeaderBytes caps a request head. Default 1 MiB, as net/http's.
	MaxHeaderBytes int
	// MaxConns caps the open client connections; zero means no cap. A
	// connection accepted beyond it is answered 503 with Retry-After from
	// the accept loop, in one write of a canned response, and closed
	// without its request being read. A client that had already sent its
	// request may see the connection reset instead.
	MaxConns int
	// Logger receives handler panics and connection errors worth an
	// operator's attention. Nil means slog.Default().
	Logger *slog.Logger

	// For a listener that yields *tls.Conn (tls.NewListener): the
	// handshake runs on the connection's goroutine, bounded by
	// HandshakeTimeout (default ReadHeaderTimeout, else 10 s). Then a
	// protocol ALPN negotiated that TLSNextProto names (such as "h2")
	// gets the connection, which stays counted as open and busy until
	// the function returns: Shutdown waits for it, so the caller ends it
	// gracefully itself (an HTTP/2 GOAWAY), and Close closes it. Any
	// other protocol, or none, is HTTP/1.1 here; requests know they came
	// over TLS (Request.TLS, and http.Request.TLS on the slow path).
	HandshakeTimeout time.Duration
	TLSNextProto     map[string]func(*tls.Conn)

	initOnce sync.Once
	slow     slowSet
	// rslack and wslack are how far a read or write deadline may drift
	// from its exact value before it is set again (see deadlineSlack);
	// piece is the body bytes sent under one write deadline, 0 for all.
	rslack, wslack time.Duration
	piece          int64

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	active    sync.WaitGroup // Serve loops
	handlers  sync.WaitGroup // connection goroutines
	closing   atomic.Bool
	// done is closed by the first Shutdown or Close, to wake Serve loops
	// that back off after an accept error.
	done      chan struct{}
	closeOnce sync.Once
	baseCtx   context.Context
	cancel    context.CancelFunc
	// open counts the connections between accept and close, refused
	// those turned away at MaxConns.
	open    atomic.Int64
	refused atomic.Uint64
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

const defaultMaxHeaderBytes = 1 << 20

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.slow = newSlowSet(s.SlowHeaders)
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = defaultMaxHeaderBytes
		}
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		s.rslack = slackFor(s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout)
		s.wslack = slackFor(s.WriteTimeout)
		if s.MinWriteRate > 0 && s.WriteTimeout > 0 {
			s.piece = max(1, int64(float64(s.MinWriteRate)*s.WriteTimeout.Seconds()))
		}
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.done = make(chan struct{})
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
	})
}

// slackFor is the deadline slack for the shortest of timeouts (zeros
// ignored): deadlineSlack, or an eighth of the timeout if that is less,
// so that a short timeout is never off by more than an eighth (and a
// deadline still moves when requests come faster than deadlineSlack).
func slackFor(timeouts ...time.Duration) time.Duration {
	slack := deadlineSlack
	for _, d := range timeouts {
		if d > 0 {
			slack = min(slack, d/8)
		}
	}
	return slack
}

// Serve accepts connections on ln until Shutdown or Close, and closes ln.
// It returns ErrServerClosed after those, or the first accept error that
// is not transient.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[&ln] = struct{}{}
	s.active.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, &ln)
		s.mu.Unlock()
		ln.Close()
		s.active.Done()
	}()

	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if !transientAcceptError(err) {
				return err
			}
			// Out of descriptors or buffers, or a connection that failed
			// before it was accepted: back off as net/http does rather
			// than spin or give up, but not past a Close.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.Logger.Warn("h1: accept", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		delay = 0
		if !s.reserve() {
			s.refuse(rw)
			continue
		}
		c := newConn(s, rw)
		if !s.track(c) {
			s.open.Add(-1)
			rw.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// transientAcceptError reports an accept error that a later Accept may
// not meet: what net/http retries (timeouts, EMFILE, ENFILE, EINTR,
// ECONNRESET, ECONNABORTED), the lack of kernel memory (ENOBUFS, ENOMEM),
// a refusal by the firewall (EPERM), and the network errors accept(2)
// passes on from a connection that failed while it was queued.
func transientAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
		syscall.EPROTO, syscall.EPERM, syscall.ENETDOWN, syscall.ENETUNREACH,
		syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP:
		return true
	}
	return errno.Temporary()
}

// reserve counts a new connection in, unless MaxConns are open.
func (s *Server) reserve() bool {
	for {
		n := s.open.Load()
		if s.MaxConns > 0 && n >= int64(s.MaxConns) {
			return false
		}
		if s.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// refusal is the whole answer to a connection beyond MaxConns.
const refusal = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"

// refuseWriteTimeout bounds the one write of a refusal. A new socket's
// empty send buffer takes it at once; the bound is for the accept loop,
// which must never wait on a client.
const refuseWriteTimeout = 10 * time.Millisecond

// refuse answers a connection beyond MaxConns from the accept loop and
// closes it, without reading its request: under a flood of connections
// that is the cheapest answer that still tells a client to come back.
func (s *Server) refuse(rw net.Conn) {
	s.refused.Add(1)
	if _, ok := rw.(*tls.Conn); !ok {
		// Over TLS the answer would need a handshake first, which the
		// accept loop must not wait for: the connection is just closed.
		rw.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		io.WriteString(rw, refusal)
	}
	rw.Close()
}

// OpenConns is the number of client connections open now: accepted and
// not yet closed, idle or serving.
func (s *Server) OpenConns() int { return int(s.open.Load()) }

// RefusedConns is the number of connections refused at MaxConns so far.
func (s *Server) RefusedConns() uint64 { return s.refused.Load() }

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1) // under mu, so never after Close's Wait began
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.open.Add(-1)
	s.handlers.Done()
}

// stop marks the server closing, wakes Serve loops that back off and
// closes the listeners.
func (s *Server) stop() {
	s.closing.Store(true)
	s.closeOnce.Do(func() { close(s.done) })
	s.closeListeners()
}

// Shutdown stops accepting, closes idle connections and waits for the
// others to finish the request in hand (they close after it) or for ctx,
// whichever comes first; then it closes what is left. It returns ctx's
// error if it had to cut requests short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stop()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() {
			s.active.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes the listeners and every connection at once, cancels the
// contexts of the requests in hand and waits for their handlers to return,
// so that what they use may be closed after it.
func (s *Server) Close() error {
	s.init()
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	// Only now: a handler woken by its context must find its connection
	// closed, not send a last answer on it.
	s.cancel()
	s.active.Wait()
	s.handlers.Wait()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		(*ln).Close()
	}
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}
