package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/h2"
	"github.com/geocdn/geocdn/internal/httpcache"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// errNotFound is what a filler returns (possibly wrapped) when the origin
// says the object, or the exact content asked for, does not exist.
var errNotFound = errors.New("object not found")

// filler fetches content the store does not hold.
type filler interface {
	// fill fetches ns/key from the origin and stores its content with
	// store.writeBlob(required=false). A zero want asks for the latest
	// version; any other asks for exactly that content. It returns the
	// entry describing the stored bytes, or an error wrapping errNotFound
	// when the origin says there is no such object or content. It must
	// return when ctx is done, and records the fill metrics (fills also
	// happen outside requests, to repair missing replicas). Called
	// concurrently, at most once at a time per key or digest from the
	// handler, which collapses requests.
	fill(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error)
}

// fillFunc adapts a function to filler.
type fillFunc func(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error)

func (f fillFunc) fill(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error) {
	return f(ctx, ns, key, want)
}

// view is the edge's standing with the origin. Safe for concurrent use.
type view interface {
	// fresh reports that the edge is connected to the origin and caught up
	// with its log, so a key missing from the local index does not exist
	// and may be answered 404 without asking the origin.
	fresh() bool
	// heldLease is the edge's volume lease as its last counted renewal
	// left it: valid until when, and when the edge last confirmed its
	// view with the origin (zero if it never has). It is read on every
	// hit, so it takes no lock.
	heldLease() invalidation.HeldLease
	// waitLog waits briefly for the log to reach lsn and reports whether
	// it has.
	waitLog(ctx context.Context, lsn uint64) bool
	// originIssued is asked only for a session read whose LSN is above
	// the watermark, which arrived at since (on the handler's clock). It
	// waits, briefly and while ctx lasts, until it can tell whether the
	// origin has issued lsn, and returns the origin's last LSN as the
	// edge knows it with the verdict. It never contacts the origin for
	// the request: a made-up LSN must cost the origin nothing.
	originIssued(ctx context.Context, lsn uint64, since time.Time) (uint64, lsnVerdict)
}

// lsnVerdict is what view.originIssued found out about a session client's
// LSN.
type lsnVerdict uint8

const (
	// lsnApplied: the log has reached the LSN.
	lsnApplied lsnVerdict = iota + 1
	// lsnIssued: the origin has issued the LSN and the log has not
	// brought it yet; the read waits for the log, then asks the origin.
	lsnIssued
	// lsnAhead: the origin had not issued the LSN at a moment after the
	// request arrived, so no client can have been given it: the read is
	// refused (412), never filled.
	lsnAhead
	// lsnUnconfirmed: neither the log nor a heartbeat answer came in
	// time (cut off from the origin): 503, never filled.
	lsnUnconfirmed
)

// HeaderMinLSN is the request header of session consistency: the client's
// last seen LSN (a publish's GeoCDN-LSN, or an earlier read's), which the
// edge's log must have reached to answer. An edge whose log is behind it
// waits briefly for the log, then asks the origin. An LSN above what the
// origin has issued cannot be satisfied: once a heartbeat answer from after
// the request's arrival shows the origin below it, the edge answers 412
// with HeaderOriginLSN, and 503 if it cannot hear from the origin in time
// to tell; neither is filled from the origin.
const HeaderMinLSN = "GeoCDN-Min-LSN"

// HeaderOriginLSN is the response header of a 412 to HeaderMinLSN: the
// origin's last LSN as the edge knows it, below the client's.
const HeaderOriginLSN = "GeoCDN-Origin-LSN"

// minLSNKey is HeaderMinLSN in the canonical form net/http stores it in.
const minLSNKey = "Geocdn-Min-Lsn"

// revalidateWait bounds a revalidation of a strong or bounded object, so a
// cut-off edge answers 503 within the 2 s DESIGN.md promises, never stale.
const revalidateWait = 1500 * time.Millisecond

// freshEnough reports whether the edge may serve version o without asking
// the origin, by its consistency level, holding lease l at now
// (invalidation.MayServe).
func freshEnough(o *object, l invalidation.HeldLease, now time.Time) bool {
	return invalidation.MayServe(o.Entry.Consistency, o.Entry.Bound, o.Pending, l, now)
}

const defaultFillTimeout = 10 * time.Second

// handlerConfig configures newHandler.
type handlerConfig struct {
	// Store serves hits and receives fills. Required.
	Store *store
	// Fill fetches misses from the origin. Required.
	Fill filler
	// View decides whether an unknown key is a 404, and Age. Required.
	View view
	// Clock tells the time for Age. Nil means time.Now.
	Clock func() time.Time
	// Metrics records hits, misses and bytes served. Nil records nothing.
	Metrics *metrics
	// Logger receives fill failures. Nil means slog.Default().
	Logger *slog.Logger
	// Healthy decides /healthz. Nil means always healthy.
	Healthy func() bool
	// NamespaceFor maps a request's Host to a namespace. Nil maps every
	// host to objkey.DefaultNamespace.
	NamespaceFor func(host string) string
	// FillTimeout bounds one fill, and how long a request waits for one.
	// Default 10 s.
	FillTimeout time.Duration
	// Pulls reports whether a namespace has an upstream web server
	// (pull-through), and Pull fetches its objects through the origin.
	// Nil: no namespace pulls.
	Pulls func(ns string) bool
	Pull  puller
	// AltSvc, if set, is the Alt-Svc field sent on every response over
	// TLS: where HTTP/3 answers.
	AltSvc string
	// HonorClientNoCache lets a client's Cache-Control: no-cache,
	// max-age, min-fresh and max-stale (and Pragma: no-cache) take
	// effect on pulled objects. Off, as at most CDNs: one client must
	// not make every other's request go to the upstream.
	HonorClientNoCache bool
}

// respHeaders are the header values of one object version, built once per
// version. The slices are shared by every response for that version: they
// are only ever replaced in a Header map, never written through, and their
// capacity is 1 so that an Add copies rather than appends into them.
type respHeaders struct {
	etag          []string
	contentType   []string
	cacheControl  []string // nil when the publisher sent none
	lastModified  []string // nil when the version has no modification time
	contentLength []string
	// lines are the same headers as HTTP/1.1 header lines, for the fast
	// path (h1.Reply), plus Accept-Ranges.
	lines []byte
}

func newRespHeaders(e *wire.LogEntry) *respHeaders {
	ct := e.ContentType
	if ct == "" {
		// Never sniff: the publisher did not say, so neither do we.
		ct = "application/octet-stream"
	}
	h := &respHeaders{
		etag:        []string{`"` + e.Digest.String() + `"`},
		contentType: []string{ct},
	}
	if e.CacheControl != "" {
		h.cacheControl = []string{e.CacheControl}
	}
	if !e.ModTime.IsZero() && e.ModTime.Unix() != 0 {
		h.lastModified = []string{e.ModTime.UTC().Format(http.TimeFormat)}
	}
	h.contentLength = []string{strconv.FormatUint(e.Size, 10)}
	b := appendLine(nil, "Accept-Ranges", acceptRanges[0])
	if h.cacheControl != nil {
		b = appendLine(b, "Cache-Control", h.cacheControl[0])
	}
	b = appendLine(b, "Content-Length", h.contentLength[0])
	b = appendLine(b, "Content-Type", h.contentType[0])
	b = appendLine(b, "Etag", h.etag[0])
	if h.lastModified != nil {
		b = appendLine(b, "Last-Modified", h.lastModified[0])
	}
	h.lines = b
	return h
}

// annotateHeaders is the store's Annotate hook (storeConfig.Annotate): it
// builds a version's response headers once, when the version is first
// looked up, for the hit path to read back with headersOf.
func annotateHeaders(e *wire.LogEntry) any {
	if e.Pulled != nil {
		return newPulledMeta(e)
	}
	return newRespHeaders(e)
}

// headersOf returns the response headers of obj's version: those the store
// keeps with it, or, from a store opened without annotateHeaders (some
// tests), headers built now.
func headersOf(obj *object) *respHeaders {
	if hv, ok := obj.meta.(*respHeaders); ok {
		return hv
	}
	return newRespHeaders(&obj.Entry)
}

// appendLine appends "name: value\r\n". CR and LF in a value (a
// publisher's Content-Type or Cache-Control) become spaces, as net/http's
// Header.Write makes them, so a value can never end the header early.
func appendLine(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, "\r\n"...)
}

// acceptRanges is the constant Accept-Ranges value, shared like respHeaders.
var acceptRanges = []string{"bytes"}

// Cache-Status (RFC 9211). A hit is served from the store. A 404 the
// edge answers from its own caught-up log is a hit too: the cache
// satisfied the request without going forward, and detail says what it
// found. Forwarded requests say fwd=miss when the log named the version
// but its content was absent, fwd=uri-miss when the key was unknown (or
// its version gone at the origin) and the fill asked by key; then stored,
// fwd-status=404, or detail=origin-error, and collapsed when the request
// waited on another's fill.
const (
	statusHit      = "geocdn; hit"
	statusNotFound = "geocdn; hit; detail=not-found"
	// An eventual or consistent-prefix version served while cut off from
	// the origin (stale-if-error, RFC 5861).
	statusUnleased = statusHit + "; detail=unleased"
)

// handler serves GET and HEAD for objects, and /healthz.
type handler struct {
	st          *store
	fillr       filler
	view        view
	now         func() time.Time
	m           *metrics
	log         *slog.Logger
	healthy     func() bool
	nsFor       func(string) string
	fillTimeout time.Duration
	group       singleflight.Group
	pulls       func(string) bool
	puller      puller
	cacheOpts   httpcache.Options

	// Constant header values, shared like respHeaders.
	hitXCache, missXCache, hitStatus, unleasedStatus []string
	// altSvc and altSvcLine are the Alt-Svc of responses over TLS, as a
	// value and as a header line; nil without HTTP/3.
	altSvc     []string
	altSvcLine []byte
}

// newHandler returns the edge's client-facing HTTP handler. It validates
// the path itself, before anything could clean it, so that `..`, `.`,
// empty segments and other bad keys answer 400 rather than a redirect.
func newHandler(cfg handlerConfig) *handler {
	if cfg.Store == nil || cfg.Fill == nil || cfg.View == nil {
		panic("edge: newHandler needs Store, Fill and View")
	}
	h := &handler{
		st:             cfg.Store,
		fillr:          cfg.Fill,
		view:           cfg.View,
		now:            cfg.Clock,
		m:              cfg.Metrics,
		log:            cfg.Logger,
		healthy:        cfg.Healthy,
		nsFor:          cfg.NamespaceFor,
		fillTimeout:    cfg.FillTimeout,
		pulls:          cfg.Pulls,
		puller:         cfg.Pull,
		cacheOpts:      httpcache.Options{HonorClientNoCache: cfg.HonorClientNoCache},
		hitXCache:      []string{"HIT"},
		missXCache:     []string{"MISS"},
		hitStatus:      []string{statusHit},
		unleasedStatus: []string{statusUnleased},
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.healthy == nil {
		h.healthy = func() bool { return true }
	}
	if h.fillTimeout <= 0 {
		h.fillTimeout = defaultFillTimeout
	}
	if h.pulls == nil || h.puller == nil {
		h.pulls = func(string) bool { return false }
	}
	if cfg.AltSvc != "" {
		h.altSvc = []string{cfg.AltSvc}
		h.altSvcLine = appendLine(nil, "Alt-Svc", cfg.AltSvc)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil && h.altSvc != nil {
		w.Header()["Alt-Svc"] = h.altSvc
	}
	path := r.URL.EscapedPath()
	if path == "/healthz" {
		if !h.allowMethod(w, r) {
			return
		}
		h.serveHealth(w)
		return
	}
	ns := objkey.DefaultNamespace
	if h.nsFor != nil {
		ns = h.nsFor(r.Host)
	}
	if h.pulls(ns) {
		key, err := objkey.FromTarget(path, r.URL.RawQuery)
		if err != nil {
			noStore(w)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.serveForwarded(w, r, ns, key)
			return
		}
		h.servePulled(w, r, ns, key)
		return
	}
	key, err := objkey.FromPath(path, "/")
	if err != nil {
		noStore(w)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !h.allowMethod(w, r) {
		return
	}
	h.serveObject(w, r, ns, key)
}

// SlowHeaders are the request headers that send a request past the fast
// path to ServeHTTP: each changes the answer (a part, a 304 or 412, a
// session's wait for the log).
var SlowHeaders = []string{
	"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since",
	"If-Unmodified-Since", HeaderMinLSN,
	// A pulled response may be served to a request with Authorization
	// only if it says so (RFC 9111 §3.5).
	"Authorization",
}

// fastReply is how the fast path answers: internal/h1's Reply over
// HTTP/1.1, internal/h2's over HTTP/2. Both take HTTP/1.1 header lines;
// a Reply is used by one goroutine, for one response.
type fastReply interface {
	// Buffer is a scratch buffer for the header lines.
	Buffer() []byte
	// OwnDate says the lines carry their own Date.
	OwnDate()
	Send(status int, hdr, body []byte) error
	SendFile(hdr []byte, f *os.File, size int64) error
}

var (
	_ fastReply = (*h1.Reply)(nil)
	_ fastReply = (*h2.Reply)(nil)
)

// serveFast answers a plain GET or HEAD of an object this edge holds and
// may serve without asking anyone: the hit that dominates a cache's
// traffic. Everything else (misses, revalidations, 404s, bad keys,
// /healthz) it declines, and ServeHTTP answers. Both send the same headers
// (TestFastPathMatchesServeHTTP).
func (h *handler) serveFast(w *h1.Reply, r *h1.Request) bool { return h.serveFastTo(w, r) }

// serveFastTo is serveFast for either protocol's Reply.
func (h *handler) serveFastTo(w fastReply, r *h1.Request) bool {
	if r.Path == "/healthz" {
		return false
	}
	ns := objkey.DefaultNamespace
	if h.nsFor != nil {
		ns = h.nsFor(string(r.Host))
	}
	var key string
	var err error
	if h.pulls(ns) {
		// Keyed by the whole target; a pulled version is served as an
		// RFC 9111 shared cache serves it, a published one as below.
		key, err = objkey.FromTarget(r.Path, r.Query)
	} else {
		key, err = objkey.FromPath(r.Path, "/")
	}
	if err != nil {
		return false
	}
	obj, known := h.st.lookup(ns, key)
	if !known || !obj.Present || obj.Stale {
		return false
	}
	if obj.Entry.Pulled != nil {
		return h.servePulledFast(w, r, &obj)
	}
	// One lease snapshot and one clock reading decide, label and age the
	// hit.
	l, now := h.view.heldLease(), h.now()
	if !freshEnough(&obj, l, now) {
		return false
	}
	c, err := h.st.openShared(obj.Entry.Digest)
	if err != nil {
		return false // gone since the lookup: ServeHTTP fills it
	}
	status := statusHit
	if !l.Valid(now) {
		status = statusUnleased
	}
	b := append(w.Buffer(), headersOf(&obj).lines...)
	if age := hitAge(l.Confirmed, now); age >= 0 {
		b = append(b, "Age: "...)
		b = strconv.AppendInt(b, age, 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Cache-Status: "...)
	b = append(b, status...)
	b = append(b, "\r\nGeocdn-Lsn: "...)
	b = strconv.AppendUint(b, h.st.watermark(), 10)
	b = append(b, "\r\nX-Cache: HIT\r\n"...)
	return h.sendFast(w, r, c, b)
}

// sendFast sends c, a hit, with the header lines b, and counts it.
func (h *handler) sendFast(w fastReply, r *h1.Request, c content, b []byte) bool {
	if r.TLS {
		b = append(b, h.altSvcLine...)
	}
	var err error
	h.m.hit()
	if c.file != nil {
		err = w.SendFile(b, c.file, c.size)
		c.close()
	} else {
		err = w.Send(http.StatusOK, b, c.hot)
	}
	if err == nil && !r.Head {
		h.m.served(c.size)
	}
	return true
}

func (h *handler) allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func (h *handler) serveHealth(w http.ResponseWriter) {
	noStore(w)
	if !h.healthy() {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// noStore keeps answers that depend on the moment (errors, 404s, health)
// out of downstream caches: a 404 is heuristically cacheable, and the key
// may be published a second later.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}

func (h *handler) serveObject(w http.ResponseWriter, r *http.Request, ns, key string) {
	obj, known := h.st.lookup(ns, key)
	// Session consistency: the log must have reached the client's LSN,
	// else the origin answers.
	behind := false
	// Indexed by its canonical form: Header.Get would canonicalise the
	// name, allocating, on every hit.
	if vs := r.Header[minLSNKey]; len(vs) > 0 && vs[0] != "" {
		v := vs[0]
		min, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			noStore(w)
			http.Error(w, HeaderMinLSN+": want a decimal LSN", http.StatusBadRequest)
			return
		}
		if h.st.watermark() < min {
			switch last, v := h.view.originIssued(r.Context(), min, h.now()); v {
			case lsnAhead:
				h.minLSNAhead(w, min, last)
				return
			case lsnUnconfirmed:
				if r.Context().Err() == nil {
					h.minLSNUnconfirmed(w, min)
				}
				return
			case lsnIssued:
				behind = !h.view.waitLog(r.Context(), min)
			}
			obj, known = h.st.lookup(ns, key)
		}
	}
	l, now := h.view.heldLease(), h.now()
	confirm := behind || (known && !freshEnough(&obj, l, now))
	if known && obj.Present && !obj.Stale && !confirm {
		c, err := h.st.openContent(obj.Entry.Digest)
		if err == nil {
			h.m.hit()
			status := h.hitStatus
			if !l.Valid(now) {
				// An eventual or consistent-prefix version served while
				// cut off from the origin (stale-if-error, RFC 5861).
				status = h.unleasedStatus
			}
			h.write(w, r, &obj.Entry, headersOf(&obj), c, status, h.hitXCache, hitAge(l.Confirmed, now))
			return
		}
		// Evicted or superseded since lookup: fill it like any miss.
		if !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("edge: open stored object", "ns", ns, "key", key, "err", err)
		}
	}

	var (
		e         wire.LogEntry
		collapsed bool
		err       error
		fwd       = "geocdn; fwd=miss"
	)
	if known && confirm {
		// A strong or bounded version the lease no longer vouches for,
		// or a session the log has not caught up with: the origin
		// confirms the version (no body if it is the one held) or the
		// answer is an error, never a stale body.
		ctx, cancel := context.WithTimeout(r.Context(), revalidateWait)
		if obj.Entry.Consistency == wire.Strong {
			// Never collapsed: a read that arrives after the write became
			// visible must not take the answer of a request sent before.
			e, err = h.fillr.fill(ctx, ns, key, wire.Digest{})
		} else {
			e, collapsed, err = h.fill(ctx, ns, key, wire.Digest{})
		}
		cancel()
		fwd = "geocdn; fwd=stale"
		if err == nil {
			h.st.revalidated(ns, key, e.Digest)
		}
		var pe *pendingError
		if err != nil && !errors.Is(err, errNotFound) && !errors.As(err, &pe) && r.Context().Err() == nil {
			noStore(w)
			w.Header().Set("Cache-Status", fwd+"; detail=unconfirmed")
			http.Error(w, "freshness cannot be confirmed with the origin", http.StatusServiceUnavailable)
			return
		}
	} else if known && obj.Stale {
		// A soft purge: ask the origin for the current version. If it is
		// the one held, only the answer crosses the network, not the body.
		e, collapsed, err = h.fill(r.Context(), ns, key, wire.Digest{})
		fwd = "geocdn; fwd=stale"
		if err == nil {
			h.st.revalidated(ns, key, e.Digest)
		}
	} else if known {
		e, collapsed, err = h.fill(r.Context(), ns, key, obj.Entry.Digest)
		if errors.Is(err, errNotFound) {
			// The origin no longer has that content: the key moved on and
			// the log has not told us yet. Ask for its latest version.
			e, collapsed, err = h.fill(r.Context(), ns, key, wire.Digest{})
			fwd = "geocdn; fwd=uri-miss"
		}
	} else {
		if h.view.fresh() && !behind {
			h.notFound(w, statusNotFound)
			return
		}
		e, collapsed, err = h.fill(r.Context(), ns, key, wire.Digest{})
		fwd = "geocdn; fwd=uri-miss"
	}
	var pe *pendingError
	switch {
	case err == nil:
	case errors.As(err, &pe) && pe.notFound:
		// A strong write of a new key, not visible yet.
		h.notFound(w, fwd+"; fwd-status=404; detail=pending")
		return
	case errors.As(err, &pe):
		// The previous version of a strong write not visible yet: served,
		// but neither kept as current here nor cacheable downstream.
		h.servePending(w, r, &pe.entry, fwd)
		return
	case errors.Is(err, errNotFound):
		h.notFound(w, fwd+"; fwd-status=404")
		return
	case r.Context().Err() != nil:
		return // the client left; nobody to answer
	default:
		h.log.Warn("edge: fill failed", "ns", ns, "key", key, "err", err)
		noStore(w)
		w.Header().Set("Cache-Status", fwd+"; detail=origin-error")
		if errors.Is(err, ErrDiskFull) {
			// The origin answered; this edge could not keep the bytes.
			http.Error(w, "edge storage full", http.StatusServiceUnavailable)
			return
		}
		msg := "origin unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "origin timed out"
		}
		http.Error(w, msg, http.StatusBadGateway)
		return
	}

	c, err := h.st.openContent(e.Digest)
	if errors.Is(err, fs.ErrNotExist) && r.Context().Err() == nil {
		// The fill was dropped before it could be opened: a purge (or an
		// eviction) applied between the two. Fill once more, alone, so
		// the client gets the content rather than an error.
		var e2 wire.LogEntry
		if e2, err = h.fillr.fill(r.Context(), ns, key, wire.Digest{}); err == nil {
			e, collapsed = e2, false
			c, err = h.st.openContent(e.Digest)
		}
	}
	if err != nil {
		h.log.Warn("edge: open filled object", "ns", ns, "key", key, "err", err)
		noStore(w)
		http.Error(w, "stored content unavailable", http.StatusBadGateway)
		return
	}
	var hdr *respHeaders
	if known && e.Digest == obj.Entry.Digest {
		hdr = headersOf(&obj)
	} else {
		hdr = newRespHeaders(&e)
	}
	status := fwd + "; stored"
	if collapsed {
		status += "; collapsed"
	}
	h.m.miss()
	// Age 0: the origin produced this content just now.
	h.write(w, r, &e, hdr, c, []string{status}, h.missXCache, 0)
}

// fill runs one collapsed fill: concurrent requests for the same digest
// (or, for a zero want, the same key) share a single call to the filler
// and then each read the stored content. collapsed reports that this
// request waited for a fill another request started.
func (h *handler) fill(ctx context.Context, ns, key string, want wire.Digest) (e wire.LogEntry, collapsed bool, err error) {
	var group string
	if want.IsZero() {
		group = "k\x00" + ns + "\x00" + key
	} else {
		group = "d\x00" + want.String()
	}
	leader := false
	ch := h.group.DoChan(group, func() (any, error) {
		leader = true
		// The fill serves every waiter, so the leader's client leaving must
		// not cancel it; the timeout alone bounds it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.fillTimeout)
		defer cancel()
		e, err := h.fillr.fill(fctx, ns, key, want)
		if err == nil && e.Op != wire.OpPut {
			err = fmt.Errorf("edge: fill of %s returned a %v entry", key, e.Op)
		}
		return e, err
	})
	// Waiters are bounded too, in case a filler ignores its context.
	wctx, cancel := context.WithTimeout(ctx, h.fillTimeout)
	defer cancel()
	select {
	case res := <-ch:
		if res.Err != nil {
			return wire.LogEntry{}, !leader, res.Err
		}
		return res.Val.(wire.LogEntry), !leader, nil
	case <-wctx.Done():
		return wire.LogEntry{}, false, wctx.Err()
	}
}

func (h *handler) notFound(w http.ResponseWriter, cacheStatus string) {
	hd := w.Header()
	noStore(w)
	hd.Set("Cache-Status", cacheStatus)
	hd.Set("GeoCDN-LSN", strconv.FormatUint(h.st.watermark(), 10))
	http.Error(w, "not found", http.StatusNotFound)
}

// Cache-Status of session reads answered without the object: the client's
// LSN is above the origin's (412), or the origin could not be asked (503).
const (
	statusLSNAhead       = "geocdn; detail=lsn-ahead-of-origin"
	statusLSNUnconfirmed = "geocdn; detail=lsn-unconfirmed"
)

// minLSNAhead answers a read whose GeoCDN-Min-LSN the origin has not
// issued. The origin is not asked: everything it holds is older than the
// client claims to have seen, so no answer of its could satisfy the read,
// and asking it anyway would be a cache bypass any client could trigger.
func (h *handler) minLSNAhead(w http.ResponseWriter, min, origin uint64) {
	hd := w.Header()
	noStore(w)
	hd.Set("Cache-Status", statusLSNAhead)
	hd.Set("GeoCDN-LSN", strconv.FormatUint(h.st.watermark(), 10))
	hd.Set(HeaderOriginLSN, strconv.FormatUint(origin, 10))
	http.Error(w, fmt.Sprintf("%s %d is above the origin's last LSN %d", HeaderMinLSN, min, origin), http.StatusPreconditionFailed)
}

// minLSNUnconfirmed answers a read whose GeoCDN-Min-LSN the edge cannot
// check with the origin: cut off, it can neither serve what the client's
// LSN asks for nor tell that the LSN does not exist.
func (h *handler) minLSNUnconfirmed(w http.ResponseWriter, min uint64) {
	hd := w.Header()
	noStore(w)
	hd.Set("Cache-Status", statusLSNUnconfirmed)
	hd.Set("GeoCDN-LSN", strconv.FormatUint(h.st.watermark(), 10))
	http.Error(w, fmt.Sprintf("%s %d cannot be confirmed with the origin", HeaderMinLSN, min), http.StatusServiceUnavailable)
}

// hitAge is the Age of a hit at now: whole seconds since the edge last
// confirmed its view with the origin, at confirmed; -1 (no header) if it
// never has, since any number would be made up.
func hitAge(confirmed, now time.Time) int64 {
	if confirmed.IsZero() {
		return -1
	}
	d := now.Sub(confirmed)
	if d <= 0 {
		return 0
	}
	return int64(d / time.Second)
}

// write sends an object. http.ServeContent answers conditionals (304,
// 412), ranges (206, 416, If-Range) and HEAD from the ETag set here and
// the modification time; content comes from RAM or from the file, whose
// *os.File lets plain HTTP use sendfile.
func (h *handler) write(w http.ResponseWriter, r *http.Request, e *wire.LogEntry, hv *respHeaders, c content, cacheStatus, xCache []string, age int64) {
	hd := w.Header()
	hd["Etag"] = hv.etag
	hd["Content-Type"] = hv.contentType
	if hv.cacheControl != nil {
		hd["Cache-Control"] = hv.cacheControl
	}
	hd["Geocdn-Lsn"] = []string{strconv.FormatUint(h.st.watermark(), 10)}
	if age >= 0 {
		hd["Age"] = []string{strconv.FormatInt(age, 10)}
	}
	hd["X-Cache"] = xCache
	hd["Cache-Status"] = cacheStatus

	if c.file == nil && plainRequest(r) && int64(len(c.hot)) == c.size {
		// A whole in-memory body with no preconditions (the fast path
		// takes most; this serves those it declines and tests' recorders).
		// ServeContent would split it into two writes and copy it through
		// a fresh 32 KiB buffer; one Write sends headers and body together.
		if hv.lastModified != nil {
			hd["Last-Modified"] = hv.lastModified
		}
		hd["Content-Length"] = hv.contentLength
		hd["Accept-Ranges"] = acceptRanges
		if r.Method != http.MethodHead {
			w.Write(c.hot)
			h.m.served(int64(len(c.hot)))
		}
		return
	}

	h.serveContent(w, r, c, e.ModTime)
}

// serveContent sends c with http.ServeContent, which answers conditionals
// (304, 412), ranges (206, 416, If-Range) and HEAD from the validators
// already in w's header and the modification time mod, and counts the
// bytes served. It closes c's file, if any.
func (h *handler) serveContent(w http.ResponseWriter, r *http.Request, c content, mod time.Time) {
	var rs io.ReadSeeker
	if c.file != nil {
		defer c.close()
		rs = c.file
	} else {
		rs = bytes.NewReader(c.hot)
	}
	http.ServeContent(w, r, "", mod, rs)

	if r.Method != http.MethodHead {
		// Content-Length is set for 200 and 206 and removed for 304 and
		// errors; counting it spares a ResponseWriter wrapper, which would
		// hide the connection's ReadFrom and so sendfile.
		if v := w.Header()["Content-Length"]; len(v) == 1 {
			n, _ := strconv.ParseInt(v[0], 10, 64)
			h.m.served(n)
		}
	}
}

// servePending sends the previous version of a pending strong write with
// Cache-Control: no-store.
func (h *handler) servePending(w http.ResponseWriter, r *http.Request, e *wire.LogEntry, fwd string) {
	c, err := h.st.openContent(e.Digest)
	if err != nil {
		noStore(w)
		http.Error(w, "stored content unavailable", http.StatusBadGateway)
		return
	}
	hv := *newRespHeaders(e)
	hv.cacheControl = noStoreValue
	h.m.miss()
	h.write(w, r, e, &hv, c, []string{fwd + "; detail=pending"}, h.missXCache, 0)
}

// noStoreValue is the shared Cache-Control value of answers that must not
// be cached downstream.
var noStoreValue = []string{"no-store"}

// plainRequest reports that r asks for the whole object unconditionally,
// so the answer is a 200 with the full body.
func plainRequest(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) == 0 && len(h["If-None-Match"]) == 0 && len(h["If-Modified-Since"]) == 0 &&
		len(h["If-Match"]) == 0 && len(h["If-Unmodified-Since"]) == 0 && len(h["If-Range"]) == 0
}
