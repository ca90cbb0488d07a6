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
// trailers.
package h1

import (
	"context"
	"errors"
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

	// ReadHeaderTimeout bounds reading a request head once its first byte
	// has arrived; ReadTimeout bounds a slow-path request's head and body;
	// WriteTimeout bounds writing a response (a handler may move the
	// deadline with http.ResponseController, and large bodies move it by
	// MinWriteRate); IdleTimeout bounds the wait for the next request on a
	// kept-alive connection. Zero means no limit.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MinWriteRate, in bytes per second, extends the write deadline of a
	// body sent by SendFile, or from a reader by the slow path's ReadFrom
	// (http.ServeContent's way), by size/MinWriteRate seconds, so a large
	// body is not cut off by WriteTimeout. Zero leaves it at WriteTimeout.
	MinWriteRate int64
	// MaxHeaderBytes caps a request head. Default 1 MiB, as net/http's.
	MaxHeaderBytes int
	// Logger receives handler panics and connection errors worth an
	// operator's attention. Nil means slog.Default().
	Logger *slog.Logger

	initOnce sync.Once
	slow     slowSet

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	active    sync.WaitGroup // Serve loops
	handlers  sync.WaitGroup // connection goroutines
	closing   atomic.Bool
	baseCtx   context.Context
	cancel    context.CancelFunc
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
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
	})
}

// Serve accepts connections on ln until Shutdown or Close, and closes ln.
// It returns ErrServerClosed after those, or the accept error.
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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of descriptors or a transient failure: back off as
				// net/http does rather than spin or give up.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.Logger.Warn("h1: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, rw)
		if !s.track(c) {
			rw.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

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
	s.handlers.Done()
}

// Shutdown stops accepting, closes idle connections and waits for the
// others to finish the request in hand (they close after it) or for ctx,
// whichever comes first; then it closes what is left. It returns ctx's
// error if it had to cut requests short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
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
	s.closing.Store(true)
	s.closeListeners()
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
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
