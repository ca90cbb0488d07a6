package h1c

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Client makes HTTP/1.1 requests over keep-alive connections, pooled
// per host:port. Set its fields before the first request; after that it
// is safe for concurrent use. The zero value is ready to use.
type Client struct {
	// DialTimeout bounds a dial, within the request's context. Zero
	// means 5s.
	DialTimeout time.Duration
	// MaxIdlePerHost is how many idle connections are kept per
	// host:port; more are closed when their response is. Zero means
	// 1024; negative keeps none, so every request dials.
	MaxIdlePerHost int
	// ReadBufferSize is each connection's read buffer, the largest
	// piece a body is read (and handed to Response.WriteTo's writer) in.
	// Zero means 32 KiB; it is raised to 8 KiB at least, and grows for
	// a head too large for it.
	ReadBufferSize int
	// Dial opens connections; nil means a net.Dialer's DialContext.
	// network is always "tcp".
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	mu   sync.Mutex
	idle map[string]*pool // by host:port
}

// pool holds the idle connections to one host:port, most recently used
// last. The map holds pointers so that taking a connection is a lookup,
// not a store of the caller's host string into the map.
type pool struct {
	conns []*conn
}

// Request is one request. Do does not keep it or anything it points
// to, so the caller may reuse it, and its Header array, at once.
type Request struct {
	// Method is a token; "" means GET. There is no request body.
	Method string
	// Host is the host:port to dial, sent as the Host header too.
	Host string
	// Target is the request-target, path and query, already escaped;
	// "" means "/". TargetBytes, when not nil, is sent instead, for a
	// caller that builds targets in a buffer of its own.
	Target      string
	TargetBytes []byte
	// Header holds extra header fields, sent in order. Host,
	// Content-Length and Transfer-Encoding are the client's to send.
	Header []Field
}

// Field is one header field.
type Field struct {
	Name, Value string
}

const (
	defaultDialTimeout = 5 * time.Second
	defaultMaxIdle     = 1024
	defaultBufSize     = 32 << 10
	minBufSize         = 8 << 10
)

// Do sends req and reads the response head into resp, releasing
// whatever resp held before. On success the caller must end the
// response with resp.Close or resp.Discard (the connection is reused
// only once the body has been read whole); on error there is nothing to
// close.
//
// A deadline of ctx is set on the connection and bounds the whole
// exchange, reading the body included; a request whose context is done
// fails before it is sent. A context that is cancelled before its
// deadline is noticed only between reads, which is what keeps a request
// free of allocations; a cancellable context without a deadline
// interrupts blocked I/O too, at the cost of a few allocations.
//
// A GET, HEAD, OPTIONS or TRACE sent on a pooled connection that fails
// before any byte of a response arrives (the server closed the idle
// connection) is retried once on a new connection.
func (cl *Client) Do(ctx context.Context, req *Request, resp *Response) error {
	resp.Close()
	if err := checkRequest(req); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return cl.wrap(req, err, nil)
	}
	for attempt := 0; ; attempt++ {
		c, err := cl.get(ctx, req.Host, attempt > 0)
		if err != nil {
			return cl.wrap(req, err, ctx)
		}
		c.begin(ctx)
		err = c.roundTrip(req)
		if err == nil {
			resp.c = c
			resp.Status = c.h.status
			resp.ContentLength = c.h.contentLength
			return nil
		}
		c.err = err
		c.release()
		if attempt > 0 || !c.reused || c.nread > 0 || !idempotent(req.Method) || ctx.Err() != nil || !closedByPeer(err) {
			return cl.wrap(req, err, ctx)
		}
	}
}

// wrap adds the request to err and, when ctx is done, ctx's error too,
// keeping both for errors.Is: a timeout is then both
// os.ErrDeadlineExceeded (a net.Error whose Timeout is true) and
// context.DeadlineExceeded.
func (cl *Client) wrap(req *Request, err error, ctx context.Context) error {
	// The strings are copied so that nothing req points to escapes
	// through the error: a caller's Request and Header array can then
	// live on its stack.
	target := req.Target
	if req.TargetBytes != nil {
		target = string(req.TargetBytes)
	}
	what := strings.Clone(method(req) + " http://" + req.Host + target)
	if ctx != nil {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("h1c: %s: %w (%w)", what, err, cerr)
		}
	}
	return fmt.Errorf("h1c: %s: %w", what, err)
}

func method(req *Request) string {
	if req.Method == "" {
		return "GET"
	}
	return req.Method
}

// idempotent reports the methods that are safe to send twice without a
// body: net/http retries the same ones.
func idempotent(m string) bool {
	switch m {
	case "", "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// closedByPeer reports the errors of a connection the server had
// closed while it sat idle.
func closedByPeer(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

var errRequest = errors.New("h1c: invalid request")

// checkRequest refuses what would not make a well-formed request head,
// header injection first of all. Its errors quote copies of req's
// strings, as wrap does.
func checkRequest(req *Request) error {
	switch {
	case req.Method != "" && !isToken(req.Method):
		return fmt.Errorf("%w: method %q", errRequest, strings.Clone(req.Method))
	case req.Host == "" || !isClass(req.Host, hostByte):
		return fmt.Errorf("%w: host %q", errRequest, strings.Clone(req.Host))
	case req.TargetBytes != nil && (len(req.TargetBytes) == 0 || !isClass(req.TargetBytes, targetByte)):
		return fmt.Errorf("%w: target %q", errRequest, string(req.TargetBytes))
	case req.TargetBytes == nil && !isClass(req.Target, targetByte):
		return fmt.Errorf("%w: target %q", errRequest, strings.Clone(req.Target))
	}
	for _, f := range req.Header {
		if !isToken(f.Name) || !isFieldValue(f.Value) {
			return fmt.Errorf("%w: header field %q: %q", errRequest, strings.Clone(f.Name), strings.Clone(f.Value))
		}
		b := []byte(f.Name) // does not escape: no allocation
		if equalFold(b, "host") || equalFold(b, "content-length") || equalFold(b, "transfer-encoding") {
			return fmt.Errorf("%w: header field %q is the client's to send", errRequest, strings.Clone(f.Name))
		}
	}
	return nil
}

// get returns an idle connection to host, or a new one when there is
// none or fresh is set.
func (cl *Client) get(ctx context.Context, host string, fresh bool) (*conn, error) {
	if !fresh {
		cl.mu.Lock()
		if p := cl.idle[host]; p != nil && len(p.conns) > 0 {
			c := p.conns[len(p.conns)-1]
			p.conns[len(p.conns)-1] = nil
			p.conns = p.conns[:len(p.conns)-1]
			cl.mu.Unlock()
			c.reused = true
			return c, nil
		}
		cl.mu.Unlock()
	}
	addr := strings.Clone(host) // the pool keeps it; see wrap
	timeout := cl.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	var nc net.Conn
	var err error
	if cl.Dial == nil {
		d := net.Dialer{Timeout: timeout}
		nc, err = d.DialContext(ctx, "tcp", addr)
	} else {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		nc, err = cl.Dial(dctx, "tcp", addr)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	return newConn(nc, cl, addr, cl.bufSize()), nil
}

func (cl *Client) bufSize() int {
	switch n := cl.ReadBufferSize; {
	case n == 0:
		return defaultBufSize
	case n < minBufSize:
		return minBufSize
	default:
		return n
	}
}

// put pools c, unless the pool for its host is full.
func (cl *Client) put(c *conn) {
	if n := cl.bufSize(); len(c.buf) > n {
		c.buf = make([]byte, n) // drop what an oversized head grew
	}
	max := cl.MaxIdlePerHost
	if max == 0 {
		max = defaultMaxIdle
	}
	cl.mu.Lock()
	p := cl.idle[c.host]
	if p == nil {
		if cl.idle == nil {
			cl.idle = make(map[string]*pool)
		}
		p = new(pool)
		cl.idle[c.host] = p
	}
	if len(p.conns) >= max {
		cl.mu.Unlock()
		c.nc.Close()
		return
	}
	p.conns = append(p.conns, c)
	cl.mu.Unlock()
}

// CloseIdleConnections closes the pooled connections. Connections in
// use are not affected: they are pooled again when their responses
// are closed.
func (cl *Client) CloseIdleConnections() {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle = nil
	cl.mu.Unlock()
	for _, p := range idle {
		for _, c := range p.conns {
			c.nc.Close()
		}
	}
}
