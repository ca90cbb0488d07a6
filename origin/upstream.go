package origin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/singleflight"

	"github.com/geocdn/geocdn/internal/ctxio"
	"github.com/geocdn/geocdn/internal/httpcache"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
)

// Pull-through: a namespace may name an upstream web server, the
// customer's own site. A request for a key the catalog does not hold is
// fetched from it by the leader, once for every edge asking at the same
// time, and a response a shared cache may store (RFC 9111 §3) becomes a
// version like a published one: its body a blob, its status and header
// fields in the log entry (wire.Pulled), committed through raft and
// replicated. A response that must not be stored is streamed through to
// the one request that asked and leaves nothing behind.
//
// Published keys win: in a mixed namespace a publish replaces a pulled
// version, and the FSM refuses a pulled version of a key whose current
// version was published (errPublishedWins), whatever the order the two
// raced in.

// UpstreamMode says what a namespace with an upstream accepts.
type UpstreamMode uint8

const (
	// Mixed takes publishes and pulls; a published key wins.
	Mixed UpstreamMode = iota
	// PullOnly refuses publishes: every object comes from the upstream.
	PullOnly
)

// Upstream is a namespace's upstream web server.
type Upstream struct {
	Namespace string
	// URL is the upstream's scheme and host, and optionally a base path
	// that every request target is appended to. No query, no fragment,
	// no user information.
	URL  *url.URL
	Mode UpstreamMode
}

// ParseUpstream reads the --upstream flag's form, NAMESPACE=URL, with
// the URL an absolute http or https URL.
func ParseUpstream(s string) (Upstream, error) {
	ns, raw, ok := strings.Cut(s, "=")
	if !ok {
		return Upstream{}, fmt.Errorf("upstream %q: want NAMESPACE=URL", s)
	}
	if err := objkey.ValidNamespace(ns); err != nil {
		return Upstream{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Upstream{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	up := Upstream{Namespace: ns, URL: u}
	return up, up.validate()
}

func (up Upstream) validate() error {
	u := up.URL
	switch {
	case u == nil:
		return fmt.Errorf("upstream for %q: no URL", up.Namespace)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("upstream for %q: %q is not an http or https URL", up.Namespace, u.Redacted())
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("upstream for %q: %q has no host", up.Namespace, u.Redacted())
	case u.User != nil:
		return fmt.Errorf("upstream for %q: user information in the URL is not supported", up.Namespace)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("upstream for %q: %q has a query or fragment; give scheme, host and an optional base path", up.Namespace, u.Redacted())
	}
	return nil
}

// urlOf is the upstream URL of a pulled key: the base URL with the key's
// target appended. The host is always the upstream's own.
func (up Upstream) urlOf(key string) (string, error) {
	path, query := objkey.Target(key)
	u := *up.URL
	u.RawPath = ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	target, err := url.Parse(u.String() + path)
	if err != nil {
		return "", fmt.Errorf("upstream URL for %q: %w", key, err)
	}
	target.RawQuery = query
	return target.String(), nil
}

// ParseUpstreamMode reads the --upstream-mode flag's form,
// NAMESPACE=pull|mixed.
func ParseUpstreamMode(s string) (ns string, m UpstreamMode, err error) {
	ns, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", 0, fmt.Errorf("upstream mode %q: want NAMESPACE=pull or NAMESPACE=mixed", s)
	}
	switch v {
	case "pull":
		return ns, PullOnly, nil
	case "mixed":
		return ns, Mixed, nil
	}
	return "", 0, fmt.Errorf("upstream mode %q: %q is neither pull nor mixed", s, v)
}

// UpstreamTimeouts bound a fetch from an upstream.
type UpstreamTimeouts struct {
	// Connect bounds the TCP connection and the TLS handshake. Default 5s.
	Connect time.Duration
	// FirstByte bounds the wait for the response head once the request
	// is sent. Default 15s.
	FirstByte time.Duration
	// Total bounds the whole fetch, body included. Default 60s.
	Total time.Duration
}

func (t UpstreamTimeouts) withDefaults() UpstreamTimeouts {
	if t.Connect <= 0 {
		t.Connect = 5 * time.Second
	}
	if t.FirstByte <= 0 {
		t.FirstByte = 15 * time.Second
	}
	if t.Total <= 0 {
		t.Total = time.Minute
	}
	return t
}

// upstreams is an origin's pull-through state.
type upstreams struct {
	byNS     map[string]Upstream
	client   *http.Client
	timeouts UpstreamTimeouts
	// pulls collapses concurrent fetches of one key.
	pulls singleflight.Group
	// joined is a test seam: when set, it is called by every pull once
	// it has joined (or started) the collapsed fetch of its key.
	joined func(key string)
}

func newUpstreams(list []Upstream, t UpstreamTimeouts) *upstreams {
	t = t.withDefaults()
	dialer := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		// No proxy from the environment: the upstream is the one named.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.FirstByte,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
		// The client's Accept-Encoding goes upstream as it is and the
		// encoded body is stored as sent: the transport must not ask for
		// gzip itself and decode it behind our back.
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
	u := &upstreams{
		byNS:     make(map[string]Upstream, len(list)),
		timeouts: t,
		client: &http.Client{
			Transport: tr,
			// Redirects are answers to pass on (and store, when
			// cacheable), never followed: following one could lead the
			// origin to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	for _, up := range list {
		u.byNS[up.Namespace] = up
	}
	return u
}

// forNamespace returns ns's upstream, if it has one.
func (u *upstreams) forNamespace(ns string) (Upstream, bool) {
	if u == nil {
		return Upstream{}, false
	}
	up, ok := u.byNS[ns]
	return up, ok
}

// namespaces lists the namespaces with an upstream, sorted.
func (u *upstreams) namespaces() []string {
	if u == nil {
		return nil
	}
	ns := make([]string, 0, len(u.byNS))
	for n := range u.byNS {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

func (u *upstreams) close() {
	if u != nil {
		u.client.CloseIdleConnections()
	}
}

// pullRequest is a client's request for a pulled object, as the edge
// passes it on.
type pullRequest struct {
	Namespace, Key string
	// Header holds the client's end-to-end request fields.
	Header http.Header
	// ClientIP is the client's address, for X-Forwarded-For.
	ClientIP string
	// Host is the Host the client asked for, for X-Forwarded-Host.
	Host string
	// Forward fetches the key even if a version is stored: the edge
	// found that the stored response cannot answer this request (its
	// Vary fields differ, or the request has Authorization).
	Forward bool
}

// pullOutcome is the result of a pull: a committed version, or a response
// to stream through.
type pullOutcome struct {
	// Entry is the committed version when Stored.
	Entry  wire.LogEntry
	Stored bool

	// A response not stored: the upstream's status and end-to-end header
	// fields, and its body, which the caller must close. Detail says why
	// it was not stored, for Cache-Status.
	Status int
	Header http.Header
	Body   io.ReadCloser
	Detail string
}

// errUpstream is a fetch that failed at the upstream: no answer in time,
// a refused connection, a malformed response. Gateway timeouts wrap
// context.DeadlineExceeded.
type errUpstream struct{ err error }

func (e *errUpstream) Error() string { return "upstream: " + e.err.Error() }
func (e *errUpstream) Unwrap() error { return e.err }

// timeout reports whether the upstream did not answer in time (a gateway
// timeout rather than a bad gateway).
func (e *errUpstream) timeout() bool {
	var ne net.Error
	return errors.Is(e.err, context.DeadlineExceeded) || errors.As(e.err, &ne) && ne.Timeout()
}

// errPullOnly is a publish to a namespace that only pulls.
var errPullOnly = errors.New("the namespace pulls every object from its upstream; publishing to it is refused")

// errPublishedWins is the result of a pulled version proposed for a key
// whose current version was published meanwhile.
var errPublishedWins = errors.New("a published version holds the key")

// errRefreshGone is the result of a refresh (a revalidated pulled version,
// proposed without content) of a key whose current version no longer
// names that content.
var errRefreshGone = errors.New("the refreshed version is no longer the key's current one")

// pull fetches req's object from its namespace's upstream, collapsed with
// every concurrent pull of the same key, and commits it when a shared
// cache may store it. Only the leader pulls: the version goes through
// raft. A waiter whose collapsed fetch ended in a response not stored
// fetches again on its own, since that body went to the first caller.
func (o *Origin) pull(ctx context.Context, req pullRequest) (pullOutcome, error) {
	up, ok := o.ups.forNamespace(req.Namespace)
	if !ok {
		return pullOutcome{}, ErrNotFound
	}
	if req.Forward {
		// For this request's own fields: not shared with anyone.
		return o.fetchOwn(ctx, up, req)
	}
	first := false
	ch := o.ups.pulls.DoChan(o.pullGroup(req), func() (any, error) {
		first = true
		// The fetch serves every waiter: the first one leaving must not
		// cancel it; the total timeout bounds it.
		return o.fetchOwn(context.WithoutCancel(ctx), up, req)
	})
	if o.ups.joined != nil {
		o.ups.joined(req.Key)
	}
	select {
	case res := <-ch:
		out, _ := res.Val.(pullOutcome)
		if res.Err != nil {
			return pullOutcome{}, res.Err
		}
		if first || out.Stored && answers(out.Entry, req.Header) {
			return out, nil
		}
		// Somebody else's pass-through, or a variant selected by other
		// values of the fields its Vary names (the first fetch of a key
		// does not know it varies): fetch for this request alone.
		return o.fetchOwn(ctx, up, req)
	case <-ctx.Done():
		return pullOutcome{}, ctx.Err()
	}
}

// pullGroup is the key pulls of req collapse under: its namespace and key,
// and, when the key's stored response has Vary, the request's values of
// the fields it names, so that only requests for one variant share a
// fetch.
func (o *Origin) pullGroup(req pullRequest) string {
	g := req.Namespace + "\x00" + req.Key
	if cur, err := o.store.get(req.Namespace, req.Key); err == nil && cur.Pulled != nil {
		if vary := cur.Pulled.HTTPHeader().Values("Vary"); len(vary) > 0 {
			sk, _ := httpcache.VaryKey(vary, req.Header)
			g += "\x00" + sk
		}
	}
	return g
}

// answers reports whether e, a version of a pulled key, may answer a
// request with header h as far as Vary goes: a published version always
// does.
func answers(e wire.LogEntry, h http.Header) bool {
	if e.Pulled == nil {
		return true
	}
	s := e.Pulled.Stored()
	vary := s.Header.Values("Vary")
	return len(vary) == 0 || httpcache.VaryMatches(vary, s.Request, h)
}

// selectStored returns the stored version that answers req's fields: the
// key's own, or, when its response has Vary and req has other values of
// the fields it names, the variant stored for req's values (RFC 9111
// §4.1). ErrNotFound when there is none.
func (o *Origin) selectStored(req pullRequest) (wire.LogEntry, error) {
	cur, err := o.store.get(req.Namespace, req.Key)
	if err != nil || answers(cur, req.Header) {
		return cur, err
	}
	sk, ok := httpcache.VaryKey(cur.Pulled.HTTPHeader().Values("Vary"), req.Header)
	if !ok {
		return wire.LogEntry{}, ErrNotFound
	}
	vk, ok := objkey.Variant(req.Key, sk)
	if !ok {
		return wire.LogEntry{}, ErrNotFound
	}
	v, err := o.store.get(req.Namespace, vk)
	if err == nil && !answers(v, req.Header) {
		return wire.LogEntry{}, ErrNotFound // a hash collision
	}
	return v, err
}

// storeKey is the key a response to req with Vary field lines vary is
// stored under: req.Key, unless the key holds a pulled response with the
// same Vary for other values of the fields it names, which stays, and
// the new one becomes a variant (objkey.Variant). A response whose Vary
// differs from the stored one's replaces it.
func (o *Origin) storeKey(req pullRequest, vary []string) string {
	if len(vary) == 0 {
		return req.Key
	}
	cur, err := o.store.get(req.Namespace, req.Key)
	if err != nil || cur.Pulled == nil || answers(cur, req.Header) {
		return req.Key
	}
	stored := cur.Pulled.HTTPHeader().Values("Vary")
	names, _ := httpcache.VaryKey(stored, nil)
	if n, _ := httpcache.VaryKey(vary, nil); n != names {
		return req.Key
	}
	sk, ok := httpcache.VaryKey(vary, req.Header)
	if !ok {
		return req.Key
	}
	vk, ok := objkey.Variant(req.Key, sk)
	if !ok {
		return req.Key // too long for a variant: one variant, as RFC 9111 allows
	}
	return vk
}

// fetchOwn is fetchAndStore bounded by the total timeout. A body streamed
// through outlives the call, and the timeout with it, until it is closed.
func (o *Origin) fetchOwn(ctx context.Context, up Upstream, req pullRequest) (pullOutcome, error) {
	fctx, cancel := context.WithTimeout(ctx, o.ups.timeouts.Total)
	out, err := o.fetchAndStore(fctx, up, req)
	if err != nil || out.Stored {
		cancel()
		return out, err
	}
	out.Body = ctxio.CloseCancels(out.Body, cancel)
	return out, nil
}

// fetchAndStore brings req's key up to date from up: a key the catalog
// does not hold (or whose stored response cannot answer req, when
// req.Forward) is fetched; a pulled version that is stale by the
// origin's clock is revalidated (a 304 refreshes its header fields and
// times, keeping the body); a fresh one, or a published one, is left as
// it is. It returns the current version, or a response to stream through.
func (o *Origin) fetchAndStore(ctx context.Context, up Upstream, req pullRequest) (pullOutcome, error) {
	cur, err := o.selectStored(req)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return pullOutcome{}, err
	case cur.Pulled == nil:
		return pullOutcome{Entry: cur, Stored: true}, nil // published
	case !req.Forward:
		hr := &http.Request{Method: http.MethodGet, Header: req.Header}
		switch d, _ := httpcache.Evaluate(hr, cur.Pulled.Stored(), o.clk.Now(), httpcache.Options{}); d {
		case httpcache.Fresh, httpcache.StaleWhileRevalidate:
			return pullOutcome{Entry: cur, Stored: true}, nil
		case httpcache.Revalidate:
			return o.revalidate(ctx, up, req, cur)
		}
	}
	resp, times, err := o.fetchUpstream(ctx, up, req, nil)
	if err != nil {
		return pullOutcome{}, err
	}
	return o.storeResponse(ctx, req, resp, times)
}

// revalidate asks up whether cur, a stale pulled version, is still good
// (RFC 9111 §4.3). A 304 that matches its validators commits a refresh:
// the same content with the 304's header fields merged in and the times
// of this exchange. Any other response is handled as a new one. When the
// upstream fails, cur is served if stale-if-error allows it.
func (o *Origin) revalidate(ctx context.Context, up Upstream, req pullRequest, cur wire.LogEntry) (pullOutcome, error) {
	stored := cur.Pulled.HTTPHeader()
	resp, times, err := o.fetchUpstream(ctx, up, req, httpcache.ConditionalHeaders(stored))
	if err != nil {
		hr := &http.Request{Method: http.MethodGet, Header: req.Header}
		if httpcache.StaleIfErrorAllowed(cur.Pulled.Stored(), hr, o.clk.Now(), httpcache.Options{}) {
			o.log.Warn("upstream failed; serving a stale version as stale-if-error allows", "ns", req.Namespace, "key", req.Key, "err", err)
			return pullOutcome{Entry: cur, Stored: true, Detail: wire.StaleIfErrorReason}, nil
		}
		return pullOutcome{}, err
	}
	if resp.StatusCode >= 500 {
		hr := &http.Request{Method: http.MethodGet, Header: req.Header}
		if httpcache.StaleIfErrorAllowed(cur.Pulled.Stored(), hr, o.clk.Now(), httpcache.Options{}) {
			resp.Body.Close()
			return pullOutcome{Entry: cur, Stored: true, Detail: wire.StaleIfErrorReason}, nil
		}
	}
	if resp.StatusCode != http.StatusNotModified {
		return o.storeResponse(ctx, req, resp, times)
	}
	resp.Body.Close()
	if !httpcache.ValidatorsMatch(stored, resp.Header) {
		// A 304 for some other representation: fetch it whole.
		resp, times, err := o.fetchUpstream(ctx, up, req, nil)
		if err != nil {
			return pullOutcome{}, err
		}
		return o.storeResponse(ctx, req, resp, times)
	}
	fresh := httpcache.Freshen(stored, resp.Header)
	e := cur
	e.LSN = 0
	p := *cur.Pulled
	p.Header = wire.HeaderFields(storedHeader(fresh))
	p.Requested, p.Received = times.Request, times.Response
	e.Pulled = &p
	e.CacheControl = strings.Join(fresh.Values("Cache-Control"), ", ")
	e.SurrogateKeys = surrogateKeys(fresh)
	if err := e.Validate(); err != nil {
		return pullOutcome{}, &errUpstream{fmt.Errorf("refreshed header of %s: %w", req.Key, err)}
	}
	// No content in the command: the FSM applies it only while the key's
	// current version still names this content (see applyCommand).
	committed, err := o.commitContent(ctx, &command{Entry: e})
	switch {
	case errors.Is(err, errPublishedWins):
		committed, err = o.store.get(req.Namespace, req.Key) // published: it answers
	case errors.Is(err, errRefreshGone):
		// Replaced, purged or deleted meanwhile: start again.
		req.Forward = true
		return o.fetchAndStore(ctx, up, req)
	}
	if err != nil {
		return pullOutcome{}, err
	}
	return pullOutcome{Entry: committed, Stored: true, Detail: "revalidated"}, nil
}

// storeResponse commits resp, the upstream's answer to req, as the key's
// new version when a shared cache may store it, and otherwise returns it
// to stream through.
func (o *Origin) storeResponse(ctx context.Context, req pullRequest, resp *http.Response, times httpcache.Times) (pullOutcome, error) {
	ok, why := storablePull(req.Header, resp)
	if !ok {
		return passThrough(resp, why), nil
	}
	if resp.ContentLength > o.cfg.MaxObjectSize {
		return passThrough(resp, "too-large"), nil
	}
	key := o.storeKey(req, resp.Header.Values("Vary"))
	pulled := &wire.Pulled{
		Status:    resp.StatusCode,
		Header:    wire.HeaderFields(storedHeader(resp.Header)),
		Requested: times.Request,
		Received:  times.Response,
		Selecting: selectingFields(resp.Header, req.Header),
	}
	meta := PutMeta{
		ContentType:  resp.Header.Get("Content-Type"),
		CacheControl: strings.Join(resp.Header.Values("Cache-Control"), ", "),
		// Surrogate-Key (Fastly) and Cache-Tag (Cloudflare) feed the tags
		// purges select by, as a publisher's Surrogate-Key does.
		SurrogateKeys: surrogateKeys(resp.Header),
		Consistency:   wire.Eventual,
		// Pushed where a publish of the key would be: the placement
		// plan's replicas, or --replicas edges, or every edge.
		Replicas: o.replicaSet(req.Namespace, key),
		Pulled:   pulled,
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		meta.ModTime = lm
	}
	ent, err := putEntry(req.Namespace, key, meta)
	if err != nil {
		// A header no log entry can carry: streamed, not stored.
		o.log.Warn("upstream response cannot be stored", "ns", req.Namespace, "key", req.Key, "err", err)
		return passThrough(resp, "header-too-large"), nil
	}
	body, over, err := o.spoolPulled(ctx, resp.Body, o.cfg.MaxObjectSize)
	if err != nil {
		resp.Body.Close()
		return pullOutcome{}, &errUpstream{fmt.Errorf("read body of %s: %w", req.Key, err)}
	}
	if over != nil {
		// Longer than announced (or unannounced) and over the limit: what
		// was read so far, then the rest, straight through.
		out := passThrough(resp, "too-large")
		out.Body = over
		return out, nil
	}
	resp.Body.Close()
	c := &command{Entry: ent}
	if err := o.stageSpooled(ctx, c, body); err != nil {
		return pullOutcome{}, err
	}
	committed, err := o.commitContent(ctx, c)
	if errors.Is(err, errPublishedWins) {
		// Published meanwhile: the published version answers.
		committed, err = o.store.get(req.Namespace, key)
	}
	if err != nil {
		return pullOutcome{}, err
	}
	return pullOutcome{Entry: committed, Stored: true}, nil
}

// storablePull reports whether the upstream's response to req may become
// a shared version, and why not. To RFC 9111's rules it adds one of every
// CDN's: a response setting a cookie is one client's, and is never stored.
func storablePull(reqHeader http.Header, resp *http.Response) (bool, string) {
	if ok, why := httpcache.Storable(http.MethodGet, reqHeader, resp.StatusCode, resp.Header); !ok {
		return false, why
	}
	if len(resp.Header.Values("Set-Cookie")) > 0 {
		return false, "set-cookie"
	}
	if v := resp.Header.Values("Vary"); len(v) > 0 {
		if _, ok := httpcache.VaryKey(v, reqHeader); !ok {
			return false, "vary-star"
		}
	}
	return true, ""
}

// storedHeader is what is kept of a response's header: the end-to-end
// fields a shared cache may store, without Content-Length (the version's
// size says it) and with a Date.
func storedHeader(h http.Header) http.Header {
	s := httpcache.StorableHeader(h)
	delete(s, "Content-Length")
	return s
}

// selectingFields returns the request's values of the fields resp's Vary
// names (RFC 9111 §4.1), absent ones left out.
func selectingFields(resp, req http.Header) []wire.HeaderField {
	var fs []wire.HeaderField
	for _, v := range resp.Values("Vary") {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			for _, val := range req.Values(name) {
				fs = append(fs, wire.HeaderField{Name: name, Value: val})
			}
		}
	}
	return fs
}

// surrogateKeys reads the tags of a pulled response: Surrogate-Key is
// space-separated, Cache-Tag comma-separated.
func surrogateKeys(h http.Header) []string {
	var keys []string
	for _, v := range h.Values("Surrogate-Key") {
		keys = append(keys, strings.Fields(v)...)
	}
	for _, v := range h.Values("Cache-Tag") {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				keys = append(keys, t)
			}
		}
	}
	if len(keys) > wire.MaxSurrogateKeys {
		keys = keys[:wire.MaxSurrogateKeys]
	}
	return keys
}

// passThrough is resp to stream to its one client, not stored.
func passThrough(resp *http.Response, why string) pullOutcome {
	h := resp.Header.Clone()
	httpcache.RemoveHopByHop(h)
	return pullOutcome{Status: resp.StatusCode, Header: h, Body: resp.Body, Detail: why}
}

// fetchUpstream sends req to up, with the conditional fields cond when
// revalidating. A response it returns has hop-by-hop fields still in its
// header and its body open; an error is an errUpstream.
func (o *Origin) fetchUpstream(ctx context.Context, up Upstream, req pullRequest, cond http.Header) (*http.Response, httpcache.Times, error) {
	target, err := up.urlOf(req.Key)
	if err != nil {
		return nil, httpcache.Times{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, httpcache.Times{}, fmt.Errorf("upstream request for %q: %w", req.Key, err)
	}
	hr.Header = forwardHeader(req.Header, req.ClientIP, req.Host)
	for k, v := range cond {
		hr.Header[k] = v
	}
	var t httpcache.Times
	t.Request = o.clk.Now()
	resp, err := o.ups.client.Do(hr)
	t.Response = o.clk.Now()
	if err != nil {
		return nil, t, &errUpstream{err}
	}
	httpcache.EnsureDate(resp.Header, t.Response)
	return resp, t, nil
}

// forwardHeader is the header of a request to the upstream: the client's
// end-to-end fields, with Via and X-Forwarded-For (and -Host) extended.
// Host is the upstream's own (net/http sets it from the URL).
func forwardHeader(client http.Header, clientIP, host string) http.Header {
	h := client.Clone()
	if h == nil {
		h = http.Header{}
	}
	httpcache.RemoveHopByHop(h)
	delete(h, "Host")
	h.Add("Via", "1.1 geocdn")
	if clientIP != "" {
		if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
			h.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+clientIP)
		} else {
			h.Set("X-Forwarded-For", clientIP)
		}
	}
	if host != "" && h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", host)
	}
	return h
}

// spoolPulled reads a pulled body into a synced file under tmp. Within
// limit it returns the file's name, size and digest for staging. Over
// limit it returns, as over, a reader of everything read so far followed
// by the rest of body, for streaming through; the file is gone once it
// is closed.
func (o *Origin) spoolPulled(ctx context.Context, body io.ReadCloser, limit int64) (spooled, io.ReadCloser, error) {
	lr := &limitCut{r: body, left: limit}
	tmp, d, size, err := o.store.writeTemp(ctx, lr, -1)
	if err != nil {
		return spooled{}, nil, err
	}
	if !lr.over {
		return spooled{tmp: tmp, digest: d, size: size}, nil, nil
	}
	f, err := o.store.fs.OpenFile(tmp, os.O_RDONLY, 0)
	o.store.fs.Remove(tmp) // read through the open file, gone when closed
	if err != nil {
		return spooled{}, nil, err
	}
	return spooled{}, &multiCloser{
		Reader:  io.MultiReader(f, bytes.NewReader(lr.cut), body),
		closers: []io.Closer{f, body},
	}, nil
}

// spooled is a pulled body written under tmp, not yet staged.
type spooled struct {
	tmp    string
	digest wire.Digest
	size   int64
}

// stageSpooled puts a spooled body where c can name it, as publish does:
// small content inline in the command, larger content staged on a quorum
// of origins. The spool file is gone afterwards, whatever happens.
func (o *Origin) stageSpooled(ctx context.Context, c *command, sp spooled) error {
	c.Entry.Digest, c.Entry.Size = sp.digest, uint64(sp.size)
	if sp.size <= maxInline {
		defer o.store.fs.Remove(sp.tmp)
		f, err := o.store.fs.OpenFile(sp.tmp, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		c.Inline = make([]byte, sp.size)
		if _, err := io.ReadFull(f, c.Inline); err != nil {
			return fmt.Errorf("read spooled body: %w", err)
		}
		return nil
	}
	st, err := o.store.stageTemp(rand.Text(), sp.tmp, sp.digest, sp.size)
	if err != nil {
		return err
	}
	c.Stage = st.name
	if err := o.replicateStage(ctx, st); err != nil {
		o.store.unstage(st.name)
		return &errNotCommitted{err}
	}
	return nil
}

// limitCut reads r until left bytes have passed; the read that would go
// past them ends the stream, keeping its bytes in cut, and sets over.
type limitCut struct {
	r    io.Reader
	left int64
	over bool
	cut  []byte
}

func (l *limitCut) Read(p []byte) (int, error) {
	if l.over {
		return 0, io.EOF
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		l.over = true
		keep := int(l.left)
		l.cut = bytes.Clone(p[keep:n])
		l.left = 0
		if keep == 0 {
			return 0, io.EOF
		}
		return keep, nil
	}
	l.left -= int64(n)
	return n, err
}

// multiCloser is a reader whose Close closes several things.
type multiCloser struct {
	io.Reader
	closers []io.Closer
}

func (m *multiCloser) Close() error {
	var errs []error
	for _, c := range m.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// serveForward passes a request no cache answers (POST, PUT, PATCH,
// DELETE, OPTIONS, ...) in a namespace with an upstream on to it, body and
// answer streamed, nothing stored. A successful unsafe request invalidates
// what is stored for its target and for the Location and Content-Location
// it names on the same site (RFC 9111 §4.4): the pulled versions the
// catalog holds for them are purged softly, through the log, so every
// edge revalidates them before serving them again.
func (o *Origin) serveForward(e *edge, st *quic.Stream, req wire.ForwardRequest) {
	defer st.Close()
	up, ok := o.ups.forNamespace(req.Namespace)
	if !ok {
		st.CancelRead(0)
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: fmt.Sprintf("namespace %q has no upstream", req.Namespace)})
		return
	}
	target, err := up.urlOf(req.Key)
	if err != nil {
		st.CancelRead(0)
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(st.Context(), o.ups.timeouts.Total)
	defer cancel()
	client := (&wire.Pulled{Header: req.Header}).HTTPHeader()
	var body io.Reader = st
	size := int64(-1) // unknown: chunked
	if v := client.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			size, body = n, io.LimitReader(st, n)
		}
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, target, body)
	if err != nil {
		st.CancelRead(0)
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: err.Error()})
		return
	}
	hr.ContentLength = size
	if size == 0 {
		hr.Body = http.NoBody
	}
	hr.Header = forwardHeader(client, req.ClientIP, req.Host)
	delete(hr.Header, "Content-Length")
	resp, err := o.ups.client.Do(hr)
	st.CancelRead(0) // whatever the upstream did not read is not wanted
	if err != nil {
		ue := &errUpstream{err}
		status := wire.FillBadGateway
		if ue.timeout() {
			status = wire.FillGatewayTimeout
		}
		wire.WriteFrame(st, wire.FillResponse{Status: status, Reason: ue.Error()})
		return
	}
	defer resp.Body.Close()
	h := resp.Header.Clone()
	httpcache.RemoveHopByHop(h)
	fr := wire.FillResponse{Status: wire.FillPassThrough, Reason: "method", Entry: wire.LogEntry{
		Op: wire.OpPut, Namespace: req.Namespace, Key: req.Key,
		Pulled: &wire.Pulled{Status: resp.StatusCode, Header: wire.HeaderFields(h)},
	}}
	if err := fr.Entry.Validate(); err != nil {
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillBadGateway, Reason: "upstream response header: " + err.Error()})
		return
	}
	if err := wire.WriteFrame(st, fr); err != nil {
		return
	}
	o.invalidateAfter(req, resp)
	if _, err := io.Copy(st, resp.Body); err != nil {
		st.CancelWrite(0)
	}
}

// variantPrefixes returns the prefixes of the variant keys of keys
// (objkey.VariantPrefix): a purge of a pulled key is a purge of every
// variant stored for it.
func variantPrefixes(keys []string) []string {
	var ps []string
	for _, k := range keys {
		if _, ok := objkey.Variant(k, ""); ok { // else too long to have variants
			ps = append(ps, objkey.VariantPrefix(k))
		}
	}
	return ps
}

// invalidateAfter purges softly the pulled versions a successful unsafe
// request invalidates (RFC 9111 §4.4), if the catalog holds any.
func (o *Origin) invalidateAfter(req wire.ForwardRequest, resp *http.Response) {
	self := &url.URL{Scheme: "http", Host: req.Host}
	path, query := objkey.Target(req.Key)
	self.Path, self.RawQuery = path, query
	var keys []string
	for _, u := range httpcache.InvalidatedURLs(req.Method, resp.StatusCode, self, resp.Header) {
		p, q, _ := strings.Cut(u, "?")
		k, err := objkey.FromTarget(p, q)
		if err != nil {
			continue
		}
		if cur, err := o.store.get(req.Namespace, k); err == nil && cur.Pulled != nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	_, err := o.propose(context.Background(), &command{Entry: wire.LogEntry{
		Op: wire.OpPurge, Namespace: req.Namespace, PurgeKeys: keys, PurgePrefixes: variantPrefixes(keys),
		Soft: true, ModTime: o.clk.Now(),
	}})
	if err != nil {
		o.log.Warn("could not invalidate after an unsafe request", "ns", req.Namespace, "keys", keys, "err", err)
	}
}
