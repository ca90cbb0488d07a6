package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/geocdn/geocdn/internal/ctxio"
	"github.com/geocdn/geocdn/internal/httpcache"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
)

// Pull-through at the edge. A namespace with an upstream web server keys
// its objects by the whole request target (objkey.FromTarget). A key the
// log names as published is served as any published object. A pulled
// version is served as an RFC 9111 shared cache serves a stored response:
// fresh, it is a hit; stale, it is revalidated through the origin (or
// served at once while a background revalidation runs, where
// stale-while-revalidate allows); a key the edge does not hold, or whose
// stored response cannot answer the request (Vary, Authorization), goes
// to the origin, which fetches it from the upstream, collapsed with every
// other edge. A response the origin did not store is streamed to the one
// client that asked. An upstream that fails leaves a stale version
// served where stale-if-error allows, and otherwise a 502 or 504.

// puller fetches pulled objects through the origin (Edge.pull).
type puller interface {
	// pull brings ns/key up to date through the origin, as a fill with
	// the client's request in info, have the content held. It returns
	// the current version, stored, or a response not stored whose body
	// the caller must close.
	pull(ctx context.Context, ns, key string, have wire.Digest, info *wire.PullInfo) (fillAnswer, error)
	// forward passes a request no cache answers on to the upstream.
	forward(ctx context.Context, req wire.ForwardRequest, body io.Reader) (*passThrough, error)
}

// cacheName is the cache's name in Cache-Status.
const cacheName = "geocdn"

// pullInfo is what the origin forwards upstream of r: its end-to-end
// fields, the client's address and the Host it asked for.
func pullInfo(r *http.Request) *wire.PullInfo {
	h := r.Header.Clone()
	httpcache.RemoveHopByHop(h)
	delete(h, minLSNKey)
	info := &wire.PullInfo{Header: wire.HeaderFields(h), Host: r.Host}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		info.ClientIP = host
	}
	return info
}

// servePulled answers a GET or HEAD of key in ns, a namespace with an
// upstream.
func (h *handler) servePulled(w http.ResponseWriter, r *http.Request, ns, key string) {
	obj, known := h.st.lookup(ns, key)
	if known && obj.Entry.Pulled == nil {
		h.serveObject(w, r, ns, key) // published: it wins
		return
	}
	// Pulls collapse per key, and per variant where the stored response
	// has Vary and this request other values of the fields it names.
	group, fwd := key, httpcache.FwdURIMiss
	if known {
		if v, vk, ok := h.variantFor(ns, key, &obj, r); vk != "" {
			obj, known, group, fwd = v, ok, vk, httpcache.FwdVaryMiss
		}
	}
	var (
		have    wire.Digest
		forward bool    // for this request's own fields (Authorization, Vary: *)
		stale   *object // a stored version to fall back on (stale-if-error)
		stored  httpcache.Stored
	)
	if known && obj.Present && !obj.Stale {
		stored = pulledMetaOf(&obj).stored
		d, in := httpcache.Evaluate(r, stored, h.now(), h.cacheOpts)
		switch d {
		case httpcache.Fresh:
			if h.writeStored(w, r, &obj.Entry, in.Age, httpcache.CacheStatus{Cache: cacheName, Hit: true, TTL: in.TTL, TTLSet: true}, h.hitXCache) {
				h.m.hit()
				return
			}
		case httpcache.StaleWhileRevalidate:
			if h.writeStored(w, r, &obj.Entry, in.Age, httpcache.CacheStatus{Cache: cacheName, Hit: true, TTL: in.TTL, TTLSet: true, Detail: "stale-while-revalidate"}, h.hitXCache) {
				h.m.hit()
				h.revalidateLater(ns, key, group, obj.Entry.Digest, pullInfo(r))
				return
			}
		case httpcache.GatewayTimeout:
			noStore(w)
			w.Header().Set("Cache-Status", httpcache.CacheStatus{Cache: cacheName, Detail: "only-if-cached"}.String())
			http.Error(w, "not in cache and only-if-cached", http.StatusGatewayTimeout)
			return
		case httpcache.Forward:
			forward, fwd = true, in.Fwd
		case httpcache.Revalidate:
			have, fwd = obj.Entry.Digest, in.Fwd
		}
		stale = &obj
	} else if known && obj.Present {
		// Soft-purged: revalidated before it is served again.
		stored = pulledMetaOf(&obj).stored
		have, fwd, stale = obj.Entry.Digest, httpcache.FwdStale, &obj
	}
	// Built only now: a hit does not pay for copying the request's fields.
	info := pullInfo(r)
	info.Forward = forward
	a, collapsed, err := h.pullOnce(r.Context(), ns, key, group, have, info)
	if err == nil && collapsed && a.pass == nil && !answersRequest(&a.entry, r) {
		// The first pull of a key cannot know that it varies: this
		// request waited on one for other values of the fields the
		// response's Vary names. Its own pull brings its variant.
		a, err = h.pullOwn(r.Context(), ns, key, have, info)
		collapsed = false
	}
	e := a.entry
	switch {
	case err == nil && a.pass != nil:
		h.m.miss()
		h.writePassThrough(w, r, a.pass, fwd)
		return
	case err == nil && a.reason == wire.StaleIfErrorReason && e.Pulled != nil:
		// The upstream failed; the origin's copy stood in, as
		// stale-if-error allows.
		if e.LSN > h.st.watermark() {
			h.view.waitLog(r.Context(), e.LSN)
		}
		if h.writeStored(w, r, &e, pulledAge(&e, h.now()), httpcache.CacheStatus{Cache: cacheName, Hit: true, Detail: "stale-if-error"}, h.hitXCache) {
			h.m.hit()
			return
		}
		h.pullFailed(w, ns, key, fwd, err)
		return
	case err == nil:
	case r.Context().Err() != nil:
		return // the client left
	case stale != nil && !errors.Is(err, errNotFound) && httpcache.StaleIfErrorAllowed(stored, r, h.now(), h.cacheOpts):
		_, in := httpcache.Evaluate(r, stored, h.now(), h.cacheOpts)
		if h.writeStored(w, r, &stale.Entry, in.Age, httpcache.CacheStatus{Cache: cacheName, Hit: true, TTL: in.TTL, TTLSet: true, Detail: "stale-if-error"}, h.hitXCache) {
			h.m.hit()
			return
		}
		fallthrough
	default:
		h.pullFailed(w, ns, key, fwd, err)
		return
	}
	if e.LSN > h.st.watermark() {
		// Committed before the origin answered: the log brings it in a
		// moment, and then the next request here is a hit, not a pull.
		h.view.waitLog(r.Context(), e.LSN)
	}
	cs := httpcache.CacheStatus{Cache: cacheName, Fwd: fwd, FwdStatus: http.StatusOK, Stored: true, StoredSet: true, Collapsed: collapsed}
	if e.Pulled != nil {
		cs.FwdStatus = e.Pulled.Status // else published meanwhile, which answers
	}
	if !have.IsZero() && e.Digest == have {
		cs.FwdStatus, cs.Stored, cs.StoredSet = http.StatusNotModified, false, false
		h.st.revalidated(ns, e.Key, e.Digest)
	}
	h.m.miss()
	if !h.writeStored(w, r, &e, pulledAge(&e, h.now()), cs, h.missXCache) {
		noStore(w)
		http.Error(w, "stored content unavailable", http.StatusBadGateway)
	}
}

// variantFor looks up the variant of key that answers r, when obj, key's
// pulled version, has Vary and r has other values of the fields it names
// (RFC 9111 §4.1; the origin stores each set of values as a variant,
// objkey.Variant). vk is the variant's key, or "" when obj itself is the
// one to evaluate (no Vary, the same values, or Vary: *, which matches
// nothing); ok reports that the variant is stored.
func (h *handler) variantFor(ns, key string, obj *object, r *http.Request) (v object, vk string, ok bool) {
	s := pulledMetaOf(obj).stored
	vary := s.Header.Values("Vary")
	if len(vary) == 0 || httpcache.VaryMatches(vary, s.Request, r.Header) {
		return object{}, "", false
	}
	sk, matchable := httpcache.VaryKey(vary, r.Header)
	if !matchable {
		return object{}, "", false
	}
	if vk, ok = objkey.Variant(key, sk); !ok {
		return object{}, "", false // too long for a variant: one is kept
	}
	v, ok = h.st.lookup(ns, vk)
	if ok && (v.Entry.Pulled == nil || !answersRequest(&v.Entry, r)) {
		return object{}, vk, false
	}
	return v, vk, ok
}

// answersRequest reports whether e may answer r as far as Vary goes: a
// published version always does.
func answersRequest(e *wire.LogEntry, r *http.Request) bool {
	if e.Pulled == nil {
		return true
	}
	s := e.Pulled.Stored()
	vary := s.Header.Values("Vary")
	return len(vary) == 0 || httpcache.VaryMatches(vary, s.Request, r.Header)
}

// pulledAge is the current age at now of a pulled version (RFC 9111
// §4.2.3); zero for a published one.
func pulledAge(e *wire.LogEntry, now time.Time) time.Duration {
	if e.Pulled == nil {
		return 0
	}
	s := e.Pulled.Stored()
	return httpcache.CurrentAge(s.Header, s.Times, now)
}

// pullFailed answers a pull that got no usable response.
func (h *handler) pullFailed(w http.ResponseWriter, ns, key, fwd string, err error) {
	noStore(w)
	var ue *errUpstream
	cs := httpcache.CacheStatus{Cache: cacheName, Fwd: fwd}
	switch {
	case errors.Is(err, errNotFound):
		// The origin holds no such key and the namespace lost its
		// upstream, or the key was published and deleted.
		cs.FwdStatus = http.StatusNotFound
		w.Header().Set("Cache-Status", cs.String())
		http.Error(w, "not found", http.StatusNotFound)
	case errors.As(err, &ue) && ue.timeout:
		cs.Detail = "upstream-timeout"
		w.Header().Set("Cache-Status", cs.String())
		http.Error(w, "upstream timed out: "+ue.reason, http.StatusGatewayTimeout)
	case errors.As(err, &ue):
		cs.Detail = "upstream-error"
		w.Header().Set("Cache-Status", cs.String())
		http.Error(w, "upstream failed: "+ue.reason, http.StatusBadGateway)
	default:
		h.log.Warn("edge: pull failed", "ns", ns, "key", key, "err", err)
		cs.Detail = "origin-error"
		w.Header().Set("Cache-Status", cs.String())
		msg := "origin unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "origin timed out"
		}
		http.Error(w, msg, http.StatusBadGateway)
	}
}

// pullOnce runs one pull, collapsed with the concurrent pulls of the same
// key unless info.Forward (which is for this request's own fields). A
// response not stored streams to one client only: a request that waited
// on another's pull and got one pulls again on its own. collapsed reports
// that this request waited on another's pull.
func (h *handler) pullOnce(ctx context.Context, ns, key, group string, have wire.Digest, info *wire.PullInfo) (a fillAnswer, collapsed bool, err error) {
	if info.Forward {
		a, err := h.pullOwn(ctx, ns, key, have, info)
		return a, false, err
	}
	leader := false
	ch := h.group.DoChan("p\x00"+ns+"\x00"+group, func() (any, error) {
		leader = true
		// The pull serves every waiter, so the first client leaving must
		// not cancel it; the timeout alone bounds it.
		return h.pullOwn(context.WithoutCancel(ctx), ns, key, have, info)
	})
	wctx, cancel := context.WithTimeout(ctx, h.fillTimeout)
	defer cancel()
	select {
	case res := <-ch:
		a, _ := res.Val.(fillAnswer)
		if res.Err != nil {
			return fillAnswer{}, !leader, res.Err
		}
		if a.pass != nil && !leader {
			a, err := h.pullOwn(ctx, ns, key, have, info)
			return a, false, err
		}
		return a, !leader, nil
	case <-wctx.Done():
		return fillAnswer{}, false, wctx.Err()
	}
}

// pullOwn is one pull for this request alone.
func (h *handler) pullOwn(ctx context.Context, ns, key string, have wire.Digest, info *wire.PullInfo) (fillAnswer, error) {
	fctx, cancel := context.WithTimeout(ctx, h.fillTimeout)
	a, err := h.puller.pull(fctx, ns, key, have, info)
	a.holdUntilClosed(cancel)
	return a, err
}

// holdUntilClosed calls cancel, the end of the context a pull ran under,
// now, or, for a response streamed through, once its body is closed.
func (a *fillAnswer) holdUntilClosed(cancel context.CancelFunc) {
	if a.pass == nil {
		cancel()
		return
	}
	a.pass.body = ctxio.CloseCancels(a.pass.body, cancel)
}

// revalidateLater revalidates a stale version in the background
// (stale-while-revalidate), joined with any pull of the key under way.
func (h *handler) revalidateLater(ns, key, group string, have wire.Digest, info *wire.PullInfo) {
	go func() {
		a, _, err := h.pullOnce(context.Background(), ns, key, group, have, info)
		if a.pass != nil {
			a.pass.body.Close()
		}
		if err != nil {
			h.log.Debug("edge: background revalidation failed", "ns", ns, "key", key, "err", err)
		}
	}()
}

// writeStored sends a stored version: a pulled one with its upstream
// status and fields, Age at age; a published one as serveObject would.
// It reports false, having sent nothing, when the content is gone.
func (h *handler) writeStored(w http.ResponseWriter, r *http.Request, e *wire.LogEntry, age time.Duration, cs httpcache.CacheStatus, xCache []string) bool {
	c, err := h.st.openContent(e.Digest)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			h.log.Warn("edge: open stored object", "ns", e.Namespace, "key", e.Key, "err", err)
		}
		return false
	}
	if e.Pulled == nil {
		h.write(w, r, e, newRespHeaders(e), c, []string{cs.String()}, xCache, 0)
		return true
	}
	hd := w.Header()
	for _, f := range e.Pulled.Header {
		k := http.CanonicalHeaderKey(f.Name)
		hd[k] = append(hd[k], f.Value)
	}
	hd["Age"] = []string{httpcache.AgeHeader(age)}
	hd["Cache-Status"] = []string{cs.String()}
	hd["X-Cache"] = xCache
	hd["Geocdn-Lsn"] = []string{strconv.FormatUint(h.st.watermark(), 10)}
	if e.Pulled.Status != http.StatusOK {
		// Redirects, 404s and the like: as stored, preconditions aside.
		defer c.close()
		hd["Content-Length"] = []string{strconv.FormatInt(c.size, 10)}
		w.WriteHeader(e.Pulled.Status)
		if r.Method != http.MethodHead {
			n, _ := io.Copy(w, readerOf(c))
			h.m.served(n)
		}
		return true
	}
	if _, ok := hd["Content-Type"]; !ok {
		// The upstream did not say; neither do we (no sniffing).
		hd["Content-Type"] = nil
	}
	if plainRequest(r) {
		// The size is known: ServeContent leaves Content-Length out when
		// there is a Content-Encoding, and the response would be chunked.
		hd["Content-Length"] = []string{strconv.FormatInt(c.size, 10)}
	}
	var mod time.Time
	if t, err := http.ParseTime(hd.Get("Last-Modified")); err == nil {
		mod = t
	}
	h.serveContent(w, r, c, mod)
	return true
}

// readerOf reads c from its start.
func readerOf(c content) io.Reader {
	if c.file != nil {
		return io.NewSectionReader(c.file, 0, c.size)
	}
	return bytes.NewReader(c.hot)
}

// writePassThrough streams a response the origin did not store.
func (h *handler) writePassThrough(w http.ResponseWriter, r *http.Request, p *passThrough, fwd string) {
	defer p.body.Close()
	hd := w.Header()
	for _, f := range p.entry.Pulled.Header {
		k := http.CanonicalHeaderKey(f.Name)
		hd[k] = append(hd[k], f.Value)
	}
	delete(hd, "Content-Length") // the upstream's framing is not ours
	cs := httpcache.CacheStatus{Cache: cacheName, Fwd: fwd, FwdStatus: p.entry.Pulled.Status, StoredSet: true, Detail: p.reason}
	hd["Cache-Status"] = []string{cs.String()}
	hd["X-Cache"] = h.missXCache
	w.WriteHeader(p.entry.Pulled.Status)
	if r.Method == http.MethodHead {
		return
	}
	n, _ := io.Copy(w, p.body)
	h.m.served(n)
}

// serveForwarded passes a request that no cache answers (POST, PUT,
// PATCH, DELETE, OPTIONS, ...) in ns, a namespace with an upstream, on to
// the upstream through the origin, and streams the answer back, stored
// nowhere. A successful unsafe request makes what this edge holds for its
// target, and for the Location and Content-Location it names on the same
// site, stale (RFC 9111 §4.4); the origin does the same for every edge.
func (h *handler) serveForwarded(w http.ResponseWriter, r *http.Request, ns, key string) {
	info := pullInfo(r)
	hd := (&wire.Pulled{Header: info.Header}).HTTPHeader()
	if r.ContentLength >= 0 {
		hd.Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	req := wire.ForwardRequest{Namespace: ns, Key: key, Method: r.Method, Header: wire.HeaderFields(hd), ClientIP: info.ClientIP, Host: r.Host}
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	}
	fctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	pass, err := h.puller.forward(fctx, req, body)
	if err != nil {
		if r.Context().Err() == nil {
			h.pullFailed(w, ns, key, httpcache.FwdMethod, err)
		}
		return
	}
	u := *r.URL
	u.Scheme, u.Host = "http", r.Host
	for _, target := range httpcache.InvalidatedURLs(r.Method, pass.entry.Pulled.Status, &u, pass.entry.Pulled.HTTPHeader()) {
		p, q, _ := strings.Cut(target, "?")
		if k, err := objkey.FromTarget(p, q); err == nil {
			h.st.markStale(ns, k)
		}
	}
	h.writePassThrough(w, r, pass, httpcache.FwdMethod)
}
