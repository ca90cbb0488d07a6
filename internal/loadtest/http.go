package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/h1c"
)

// newTransport is the HTTP client of a run's admin requests (publishes,
// purges, the edge list), probes and final check; reads go through h1c.
// Keep-alive connections, and nothing a measurement does not need (no
// compression, no HTTP/2 upgrade, no proxy from the environment).
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   max(conns, 64),
		IdleConnTimeout:       30 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // the request's context bounds it
		ExpectContinueTimeout: 0,
		WriteBufferSize:       4 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// noRedirect makes a client hand back 3xx answers: the run follows the
// router's redirect itself, to know which edge it chose and to time it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// session is one virtual client: where it is, the address it sends as
// X-Forwarded-For, and the edge the router gave it when the scenario
// keeps that edge for the session.
type session struct {
	place *place
	ip    string
	// edge is set once the router chose one, when the scenario keeps it;
	// requests of one session may be in flight together.
	edge atomic.Pointer[Edge]
	left int // requests before it is replaced; guarded by run.sessMu
}

// readReq is one read to make.
type readReq struct {
	op       Op
	obj      *object
	sess     *session
	intended time.Duration
}

// responses are the h1c responses reads reuse: one per read in flight,
// so the steady state allocates none.
var responses = sync.Pool{New: func() any { return new(h1c.Response) }}

// doRead makes one read, following the router's redirect, and judges the
// answer. Reads go through h1c, a keep-alive HTTP/1.1 client that does
// its I/O on the calling goroutine and allocates nothing per request:
// net/http's client spent twice wrk's CPU per request, and the load
// generator must not be what limits a run.
func (r *run) doRead(ctx context.Context, q readReq, rng *rand.Rand) Sample {
	s := Sample{Intended: q.intended, Region: q.sess.place.region, Op: q.op, Key: q.obj.key}
	sent := r.since()
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()

	var fields [2]h1c.Field
	fields[0] = h1c.Field{Name: "X-Forwarded-For", Value: q.sess.ip}
	req := h1c.Request{Method: http.MethodGet, Target: "/" + q.obj.path, Header: fields[:1]}
	var rangeOff, rangeLen int64
	switch q.op {
	case OpHead:
		req.Method = http.MethodHead
	case OpConditional:
		if cur := q.obj.current(); cur != nil {
			fields[1] = h1c.Field{Name: "If-None-Match", Value: cur.c.etag()}
			req.Header = fields[:2]
		}
	case OpRange:
		size := q.obj.size
		if cur := q.obj.current(); cur != nil {
			size = cur.c.size
		}
		if size > 0 {
			rangeOff = rng.Int64N(size)
			rangeLen = min(size-rangeOff, 1+rng.Int64N(64<<10))
			fields[1] = h1c.Field{Name: "Range", Value: fmt.Sprintf("bytes=%d-%d", rangeOff, rangeOff+rangeLen-1)}
			req.Header = fields[:2]
		}
	}

	edge := q.sess.edge.Load()
	viaRouter := false
	switch {
	case r.scn.Target.Kind == TargetEdge:
		edge = r.fixedEdge
		req.Host = edge.host
	case edge != nil:
		req.Host = edge.host
	default:
		req.Host = r.routerHost
		viaRouter = true
	}
	resp := responses.Get().(*h1c.Response)
	defer responses.Put(resp)
	err := r.h1.Do(ctx, &req, resp)
	if err == nil && viaRouter && isRedirect(resp.Status) {
		loc := resp.GetString("Location")
		resp.Discard()
		host, target, lerr := h1c.SplitURL(loc)
		if lerr != nil {
			s.Latency = r.since() - q.intended
			return r.failed(s, ClassRedirect, fmt.Sprintf("router answered %d with Location %q: %v", resp.Status, loc, lerr))
		}
		edge = r.cl.edgeByHost(host)
		if r.scn.Target.KeepEdge && edge != nil {
			q.sess.edge.Store(edge)
		}
		req.Host, req.Target = host, target
		err = r.h1.Do(ctx, &req, resp)
		if err == nil && isRedirect(resp.Status) {
			resp.Discard()
			s.Latency = r.since() - q.intended
			return r.failed(s, ClassRedirect, fmt.Sprintf("%s answered %d after the router's redirect", host, resp.Status))
		}
	}
	if edge != nil {
		s.Edge = edge.ID
	}
	if err != nil {
		s.Latency = r.since() - q.intended
		// A client whose edge stopped answering asks the router again
		// next time, as a browser re-resolves after a failed connection.
		if edge != nil {
			q.sess.edge.CompareAndSwap(edge, nil)
		}
		return r.failed(s, classOf(ctx, err), err.Error())
	}
	defer resp.Close()
	s.Status = resp.Status
	cs := resp.Get("Cache-Status")
	s.Fill = bytes.Contains(cs, []byte("fwd="))
	s.Hit = !s.Fill && bytes.Contains(cs, []byte("hit"))

	etag := resp.GetString("Etag")
	var body []byte
	var n int64
	var sum [sha256.Size]byte
	if q.op == OpRange && resp.Status == http.StatusPartialContent {
		body, err = io.ReadAll(io.LimitReader(resp, rangeLen+1))
		n = int64(len(body))
	} else {
		h := sha256.New()
		n, err = resp.WriteTo(h)
		h.Sum(sum[:0])
	}
	s.Bytes = n
	s.Latency = r.since() - q.intended
	if edge != nil {
		s.Modelled = s.Latency + geo.RTT(q.sess.place.point, edge.Point)
	}
	if err != nil {
		return r.failed(s, classOf(ctx, err), "reading the body: "+err.Error())
	}

	switch code := resp.Status; {
	case code == http.StatusOK && req.Method == http.MethodGet:
		d := digestOfETag(etag)
		if d == "" {
			return r.failed(s, ClassCorrupt, fmt.Sprintf("%s: 200 with ETag %q, not a digest", q.obj.key, etag))
		}
		if got := hex.EncodeToString(sum[:]); got != d {
			return r.failed(s, ClassCorrupt, fmt.Sprintf("%s: body of %d bytes hashes to %s, ETag says %s", q.obj.key, n, got[:12], d[:12]))
		}
		if cl := resp.ContentLength; cl >= 0 && cl != n {
			return r.failed(s, ClassCorrupt, fmt.Sprintf("%s: Content-Length %d, body %d bytes", q.obj.key, cl, n))
		}
	case code == http.StatusPartialContent && q.op == OpRange:
		if detail := checkRange(resp.GetString("Content-Range"), rangeOff, rangeLen, body, q.obj, etag); detail != "" {
			return r.failed(s, ClassCorrupt, detail)
		}
	case code == http.StatusOK, code == http.StatusNotModified:
		// HEAD, a conditional GET that did not match, a Range answered
		// whole (RFC 9110 allows it; then the body was hashed above).
		if code == http.StatusOK && q.op == OpRange {
			if d := digestOfETag(etag); d == "" || hex.EncodeToString(sum[:]) != d {
				return r.failed(s, ClassCorrupt, fmt.Sprintf("%s: Range answered 200 whose body does not hash to ETag %s", q.obj.key, shortTag(etag)))
			}
		}
	case code >= 500:
		return r.failed(s, Class5xx, fmt.Sprintf("%s: %d", q.obj.key, code))
	default:
		return r.failed(s, Class4xx, fmt.Sprintf("%s: %d", q.obj.key, code))
	}
	// A 304 names no version of its own beyond its ETag; every answer
	// with one is checked for going back in time.
	if etag != "" {
		if _, stale := q.obj.check(etag, sent); stale != "" {
			return r.failed(s, ClassStale, stale)
		}
	}
	return s
}

// checkRange judges a 206 against the bytes the run published, when the
// ETag names a version it published.
func checkRange(cr string, off, n int64, body []byte, o *object, etag string) string {
	var first, last, total int64
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil {
		return fmt.Sprintf("%s: 206 with Content-Range %q", o.key, cr)
	}
	if first != off || last-first+1 != int64(len(body)) || (total > 0 && last >= total) {
		return fmt.Sprintf("%s: asked bytes %d-%d, got Content-Range %q and %d bytes", o.key, off, off+n-1, cr, len(body))
	}
	o.mu.Lock()
	var c *content
	for _, p := range o.versions {
		if p.c.etag() == etag {
			c = p.c
		}
	}
	o.mu.Unlock()
	if c == nil {
		return "" // not a version the run published: nothing to compare with
	}
	want, _ := io.ReadAll(c.reader(first, int64(len(body))))
	if !bytes.Equal(want, body) {
		return fmt.Sprintf("%s: bytes %d-%d differ from generation %d (%s)", o.key, first, last, c.gen, shortTag(etag))
	}
	return ""
}

func (r *run) get(ctx context.Context, method, u string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header = hdr
	return r.hc.Do(req)
}

func isRedirect(code int) bool {
	return code == http.StatusFound || code == http.StatusMovedPermanently ||
		code == http.StatusTemporaryRedirect || code == http.StatusSeeOther || code == http.StatusPermanentRedirect
}

// failed marks s as failed in class, with what went wrong.
func (r *run) failed(s Sample, class ErrorClass, detail string) Sample {
	s.Class = class
	s.Detail = detail
	return s
}

// classOf sorts a transport error.
func classOf(ctx context.Context, err error) ErrorClass {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	}
	// Anything else that kept a request from an answer (a reset, a
	// closed connection, a malformed response) is the connection's.
	return ClassConnect
}

// escapeKey makes a key a URL path: each segment escaped, slashes kept.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// itoa is strconv.Itoa, short.
func itoa(i int) string { return strconv.Itoa(i) }
