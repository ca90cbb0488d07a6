package origin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
)

const objectsPrefix = "/v1/objects/"

// HeaderLSN carries the LSN of a publish, and an edge's watermark.
const HeaderLSN = "GeoCDN-LSN"

// access says who may use an admin route. Its zero value needs the admin
// token, so a route registered without thought is closed, not open.
type access int

const (
	// needToken: the admin bearer token.
	needToken access = iota
	// public: anyone (health checks from load balancers).
	public
	// metricsAccess: anyone, unless Config.MetricsToken is set; then that
	// token or the admin token.
	metricsAccess
)

// route is one entry of the admin API.
type route struct {
	pattern string
	access  access
	handler http.Handler
}

// adminRoutes lists every route of the admin API: the mux is built from
// this list alone, and the authentication test walks it.
func (o *Origin) adminRoutes() []route {
	objects := http.HandlerFunc(o.serveObjects)
	return []route{
		{"GET /v1/status", needToken, http.HandlerFunc(o.handleStatus)},
		{"POST /v1/scrub", needToken, http.HandlerFunc(o.handleScrub)},
		{"GET /v1/edges", needToken, http.HandlerFunc(o.handleEdges)},
		{"GET /v1/placement", needToken, http.HandlerFunc(o.handlePlanGet)},
		{"PUT /v1/placement", needToken, http.HandlerFunc(o.handlePlanPut)},
		{"POST /v1/purge", needToken, http.HandlerFunc(o.handlePurge)},
		{"POST /v1/resync", needToken, http.HandlerFunc(o.handleResync)},
		{"POST /v1/cluster/members", needToken, http.HandlerFunc(o.handleMemberAdd)},
		{"DELETE /v1/cluster/members/{id}", needToken, http.HandlerFunc(o.handleMemberRemove)},
		// GET also answers HEAD. Object paths are dispatched before the
		// mux (see adminHandler); these entries make the mux know them,
		// so that an escaped spelling of one still reaches the
		// validation that refuses it.
		{"GET " + objectsPrefix, needToken, objects},
		{"PUT " + objectsPrefix, needToken, objects},
		{"DELETE " + objectsPrefix, needToken, objects},
		{"GET /healthz", public, http.HandlerFunc(o.handleHealthz)},
		{"GET /metrics", metricsAccess, promhttp.HandlerFor(o.cfg.Registry, promhttp.HandlerOpts{})},
	}
}

// adminHandler routes the admin API. Authentication is decided for the
// route the mux matches, never by a test on the raw path, because the mux
// unescapes a path before matching it (/%761/edges is GET /v1/edges). It
// denies by default: a request that matches no public route (an unknown
// path, a method a route does not serve, a path the mux would redirect)
// needs the admin token before it is answered at all. Every handler
// checks again for its own route, so a mistake in one layer alone opens
// nothing.
//
// Object paths go to their handler before the mux sees them, because the
// mux would answer a path with `..` or `//` with its own 307 redirect
// instead of a clear 400.
func (o *Origin) adminHandler() http.Handler {
	mux := http.NewServeMux()
	accessOf := map[string]access{}
	for _, rt := range o.adminRoutes() {
		mux.Handle(rt.pattern, o.guard(rt.access, rt.handler))
		accessOf[rt.pattern] = rt.access
	}
	objects := o.guard(needToken, http.HandlerFunc(o.serveObjects))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Unmatched patterns map to needToken, the zero access.
		if _, pattern := mux.Handler(r); !o.permits(r, accessOf[pattern]) {
			unauthorized(w)
			return
		}
		inner := http.Handler(mux)
		if strings.HasPrefix(r.URL.EscapedPath(), objectsPrefix) {
			inner = objects
		}
		if !servedLocally(r) && !o.isLeader() {
			o.toLeader(w, r, inner)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// guard wraps a route's handler with the check its access asks for.
func (o *Origin) guard(a access, h http.Handler) http.Handler {
	if a == public {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !o.permits(r, a) {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// permits reports whether r may use a route with access a.
func (o *Origin) permits(r *http.Request, a access) bool {
	switch a {
	case public:
		return true
	case metricsAccess:
		if o.cfg.MetricsToken == "" {
			return true
		}
		return authorized(r, o.metricsTokenSum) || authorized(r, o.tokenSum)
	}
	return authorized(r, o.tokenSum)
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="geocdn"`)
	writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
}

// serveObjects answers /v1/objects/{key}: the path is validated here, from
// its escaped form, so that a key the mux would clean is refused (400).
func (o *Origin) serveObjects(w http.ResponseWriter, r *http.Request) {
	key, err := objkey.FromPath(r.URL.EscapedPath(), objectsPrefix)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ns := r.URL.Query().Get("namespace")
	if ns == "" {
		ns = objkey.DefaultNamespace
	} else if err := objkey.ValidNamespace(ns); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch r.Method {
	case http.MethodPut:
		o.handlePut(w, r, ns, key)
	case http.MethodGet, http.MethodHead:
		o.handleGet(w, r, ns, key)
	case http.MethodDelete:
		o.handleDelete(w, r, ns, key)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// authorized compares the bearer token in constant time. Hashing both sides
// first keeps the comparison's duration independent of the token's length.
func authorized(r *http.Request, want [32]byte) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// isMediaType reports whether v is a media type with its parameters
// (RFC 9110 § 8.3.1); mime.ParseMediaType alone takes a bare token.
func isMediaType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	typ, sub, ok := strings.Cut(mt, "/")
	return err == nil && ok && typ != "" && sub != ""
}

// requireJSON answers 415 unless the request's Content-Type is JSON, and
// reports whether it did not have to. Requiring it keeps a browser's form
// post (which cannot set this type without a CORS preflight) from ever
// reaching a mutating endpoint.
func requireJSON(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return true
	}
	if ct == "" {
		ct = "none"
	}
	w.Header().Set("Accept", "application/json")
	writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %s: want application/json", ct))
	return false
}

// PublishResult is the body of a publish answer.
type PublishResult struct {
	Key         string   `json:"key"`
	Namespace   string   `json:"namespace"`
	LSN         uint64   `json:"lsn"`
	Digest      string   `json:"digest"`
	Size        uint64   `json:"size"`
	Consistency string   `json:"consistency"`
	Replicas    []string `json:"replicas"`
	Acked       []string `json:"acked"`
	Committed   bool     `json:"committed"`
	Error       string   `json:"error,omitempty"`
}

// writeQuorum is a parsed w= parameter.
type writeQuorum struct {
	n           int // for a number
	quorum, all bool
}

func parseW(s string) (writeQuorum, error) {
	switch s {
	case "", "0":
		return writeQuorum{}, nil
	case "quorum":
		return writeQuorum{quorum: true}, nil
	case "all":
		return writeQuorum{all: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return writeQuorum{}, fmt.Errorf("w=%q: want 0, a positive count, quorum or all", s)
	}
	return writeQuorum{n: n}, nil
}

// ackPlan works out which edges count towards w= and how many are needed.
func (o *Origin) ackPlan(wq writeQuorum, replicas []string) (eligible []string, need int, err error) {
	set := replicas
	if len(set) == 0 {
		for _, e := range o.edges.all() {
			set = append(set, e.info.ID)
		}
	}
	switch {
	case wq.all:
		now := o.clk.Now()
		for _, id := range set {
			if e := o.edges.get(id); e != nil && e.state(now, o.stateRule()) != EdgeDown {
				eligible = append(eligible, id)
			}
		}
		return eligible, len(eligible), nil
	case wq.quorum:
		return set, len(set)/2 + 1, nil
	case wq.n > len(set):
		return nil, 0, fmt.Errorf("w=%d exceeds the replica set of %d edges", wq.n, len(set))
	}
	return set, wq.n, nil
}

// allRecheck is how often a w=all publish looks for edges gone down
// while it waits: a few times per lease term, since a lease running out
// is what marks an edge down.
func allRecheck(term time.Duration) time.Duration {
	return min(max(term/4, 10*time.Millisecond), time.Second)
}

func (o *Origin) handlePut(w http.ResponseWriter, r *http.Request, ns, key string) {
	// Query parameters come from the URL only: r.FormValue would parse a
	// form-encoded body and consume the content being published.
	q := r.URL.Query()
	wq, err := parseW(q.Get("w"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cons, bound := wire.Eventual, time.Duration(0)
	if c := q.Get("consistency"); c != "" {
		if cons, bound, err = wire.ParseConsistency(c); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	// The Content-Type is the object's own, stored and served as given:
	// any media type will do, but it must be one (RFC 9110 § 8.3.1).
	if ct := r.Header.Get("Content-Type"); ct != "" && !isMediaType(ct) {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not a media type (type/subtype, then parameters)", ct))
		return
	}
	if r.ContentLength > o.cfg.MaxObjectSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, o.cfg.MaxObjectSize))
		return
	}
	if up, ok := o.ups.forNamespace(ns); ok && up.Mode == PullOnly {
		writeError(w, http.StatusConflict, fmt.Sprintf("namespace %q: %v", ns, errPullOnly))
		return
	}
	if o.isClosing() {
		writeJSON(w, http.StatusServiceUnavailable, PublishResult{Key: key, Namespace: ns, Error: "origin shutting down"})
		return
	}
	replicas := o.replicaSet(ns, key)
	eligible, need, err := o.ackPlan(wq, replicas)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	meta := PutMeta{
		ContentType:   r.Header.Get("Content-Type"),
		CacheControl:  r.Header.Get("Cache-Control"),
		SurrogateKeys: strings.Fields(r.Header.Get("Surrogate-Key")),
		Consistency:   cons,
		Bound:         bound,
		Replicas:      replicas,
		ModTime:       o.clk.Now(),
	}
	strong := cons == wire.Strong
	if strong {
		o.strongReserve(ns, key)
	}
	body := &deadlineReader{r: r.Body, rc: http.NewResponseController(w), now: o.clk.Now}
	ent, err := o.publish(r.Context(), requestIDFrom(r), ns, key, body, o.cfg.MaxObjectSize, meta)
	if err != nil && strong {
		o.strongAbort(ns, key)
	}
	if err != nil {
		o.metrics.publishes.WithLabelValues("refused").Inc()
		switch {
		case errors.Is(err, ErrTooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes; nothing stored", o.cfg.MaxObjectSize))
		case errors.Is(err, wire.ErrMalformed):
			writeError(w, http.StatusBadRequest, "metadata refused: "+err.Error())
		case errors.Is(err, syscall.ENOSPC):
			writeJSON(w, http.StatusServiceUnavailable, PublishResult{Key: key, Namespace: ns, Error: "origin disk full"})
		case o.writeRefused(w, err, PublishResult{Key: key, Namespace: ns}):
		case body.readErr != nil:
			writeError(w, http.StatusBadRequest, "reading body: "+body.readErr.Error())
		default:
			o.log.Error("publish", "key", key, "err", err)
			writeJSON(w, http.StatusInternalServerError, PublishResult{Key: key, Namespace: ns, Error: err.Error()})
		}
		return
	}
	// The body is in; what remains is waiting for acks, bounded by the
	// publish timeout, which the server-wide WriteTimeout must not cut.
	http.NewResponseController(w).SetWriteDeadline(o.clk.Now().Add(o.cfg.PublishTimeout + time.Minute))
	o.metrics.publishes.WithLabelValues("committed").Inc()
	o.metrics.publishBytes.Add(float64(ent.Size))
	var visible <-chan struct{}
	if strong {
		sw := o.strongCommitted(ent)
		o.strongVisible(ns, key, sw)
		visible = sw.visible
	}
	aw := o.acks.wait(ent.LSN, eligible, need)
	defer o.acks.release(ent.LSN, aw)

	res := PublishResult{
		Key: key, Namespace: ns, LSN: ent.LSN, Digest: ent.Digest.String(), Size: ent.Size,
		Consistency: cons.String(), Replicas: replicas, Committed: true,
	}
	if len(res.Replicas) == 0 {
		for _, e := range o.edges.all() {
			res.Replicas = append(res.Replicas, e.info.ID)
		}
	}
	status := http.StatusCreated
	timer := o.clk.NewTimer(o.cfg.PublishTimeout)
	defer timer.Stop()
	if visible != nil {
		// A strong write returns once every edge that may hold a lease
		// has applied it or lost its lease, and the version is visible.
		select {
		case <-visible:
		case <-timer.C():
			status = http.StatusGatewayTimeout
			res.Error = fmt.Sprintf("strong write not yet visible after %v; it is committed and becomes visible when every edge has applied it or lost its lease", o.cfg.PublishTimeout)
		case <-r.Context().Done():
			return
		}
	}
	// w=all waits for the replica-set edges not down: one that goes down
	// while the publish waits is dropped from it, as if it had been down
	// when the publish came.
	var recheck <-chan time.Time
	if wq.all && need > 0 {
		tk := o.clk.NewTicker(allRecheck(o.cfg.LeaseTerm))
		defer tk.Stop()
		recheck = tk.C()
	}
wait:
	for status == http.StatusCreated {
		select {
		case <-aw.done:
			break wait
		case <-recheck:
			now := o.clk.Now()
			o.acks.dropDown(aw, func(id string) bool {
				e := o.edges.get(id)
				return e == nil || e.state(now, o.stateRule()) == EdgeDown
			})
		case <-timer.C():
			status = http.StatusGatewayTimeout
			res.Error = fmt.Sprintf("w: %d of %d edge acknowledgements within %v; the write is committed and delivery continues", len(o.acks.result(aw)), need, o.cfg.PublishTimeout)
		case <-r.Context().Done():
			return
		}
	}
	res.Acked = o.acks.result(aw)
	if res.Acked == nil {
		res.Acked = []string{}
	}
	w.Header().Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	writeJSON(w, status, res)
}

// deadlineReader extends the connection's read deadline while a large body
// keeps arriving, so the server's ReadTimeout bounds idleness, not size.
type deadlineReader struct {
	r        io.Reader
	rc       *http.ResponseController
	now      func() time.Time
	extended time.Time
	readErr  error
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if n > 0 {
		now := d.now()
		if now.Sub(d.extended) > 5*time.Second {
			d.rc.SetReadDeadline(now.Add(time.Minute))
			d.extended = now
		}
	}
	if err != nil && err != io.EOF {
		d.readErr = err
	}
	return n, err
}

func (o *Origin) handleGet(w http.ResponseWriter, r *http.Request, ns, key string) {
	var (
		ent  wire.LogEntry
		blob fsys.File
		err  error
	)
	// Reads are answered from this origin's catalog, but not before it has
	// applied what it knows to be committed: a restarted origin replaying
	// its log would otherwise answer with versions it already replaced.
	if !o.awaitCaughtUp(r.Context()) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "origin is catching up with the cluster's log")
		return
	}
	if r.URL.Query().Get("consistent") == "true" {
		if err := o.verifyRead(r.Context()); err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "consistent read: "+err.Error())
			return
		}
	}
	// As in serveFill: a commit between the catalog read and the open
	// collects the blob, and the catalog then names a newer version.
	for attempt := 1; ; attempt++ {
		ent, err = o.store.get(ns, key)
		if errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusNotFound, "no such object")
			return
		} else if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if blob, err = o.store.openBlob(ent.Digest); err == nil {
			break
		}
		if attempt == fillAttempts {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	defer blob.Close()
	h := w.Header()
	h.Set("ETag", `"`+ent.Digest.String()+`"`)
	ct := ent.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	if ent.CacheControl != "" {
		h.Set("Cache-Control", ent.CacheControl)
	}
	h.Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	// Allow a minute plus one second per MiB, so a slow client of a large
	// object is not cut off by the server-wide WriteTimeout.
	http.NewResponseController(w).SetWriteDeadline(o.clk.Now().Add(time.Minute + time.Duration(ent.Size>>20)*time.Second))
	http.ServeContent(w, r, "", ent.ModTime, blob)
}

func (o *Origin) handleDelete(w http.ResponseWriter, r *http.Request, ns, key string) {
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		// A delete has no content; one that carries some was not meant
		// for this endpoint.
		writeError(w, http.StatusUnsupportedMediaType, "DELETE takes no body and no Content-Type")
		return
	}
	if o.isClosing() {
		writeJSON(w, http.StatusServiceUnavailable, PublishResult{Key: key, Namespace: ns, Error: "origin shutting down"})
		return
	}
	ent, err := o.propose(r.Context(), &command{ID: requestIDFrom(r), Entry: deleteEntry(ns, key, o.clk.Now())})
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such object")
		return
	} else if o.writeRefused(w, err, PublishResult{Key: key, Namespace: ns}) {
		return
	} else if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set(HeaderLSN, strconv.FormatUint(ent.LSN, 10))
	writeJSON(w, http.StatusOK, map[string]any{"key": key, "namespace": ns, "lsn": ent.LSN, "committed": true})
}

// Edges returns the origin's view of every edge it has heard of.
func (o *Origin) Edges() []EdgeStatus {
	now := o.clk.Now()
	last := o.store.lastLSN()
	var out []EdgeStatus
	lost := o.LostEdges()
	for _, e := range o.edges.all() {
		e.mu.Lock()
		st := EdgeStatus{
			ID: e.info.ID, Region: e.info.Region, Lat: e.info.Lat, Lon: e.info.Lon,
			FaultDomain: e.info.FaultDomain, PublicURL: e.info.PublicURL,
			State: e.stateLocked(now, o.stateRule()), LeaseExpires: e.leaseExpires,
			Watermark: e.watermark, LastResync: e.lastResync, Scrub: e.scrub, RTT: e.rtt,
		}
		if e.control != nil {
			st.Origin = o.cfg.ID
		}
		e.mu.Unlock()
		if last > st.Watermark {
			st.Lag = last - st.Watermark
		}
		st.LostSince = lost[st.ID]
		out = append(out, st)
	}
	return out
}

// edgeList is Edges, as an empty list rather than null when there are none.
func (o *Origin) edgeList() []EdgeStatus {
	if edges := o.Edges(); edges != nil {
		return edges
	}
	return []EdgeStatus{}
}

func (o *Origin) handleEdges(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, o.edgeList())
}

func (o *Origin) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if o.isClosing() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeRefused answers a write that raft did not commit here, reporting
// whether err was one: 503 with "committed": false when nothing was
// appended (not the leader, shutting down), 500 without it when the
// outcome is unknown. res carries what the answer says of the object.
func (o *Origin) writeRefused(w http.ResponseWriter, err error, res PublishResult) bool {
	var nl *errNotLeader
	switch {
	case errors.As(err, &nl):
		if nl.leader != "" {
			w.Header().Set(HeaderLeader, nl.leader)
		}
		res.Error = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, res)
	case errors.Is(err, errShuttingDown):
		res.Error = "origin shutting down"
		writeJSON(w, http.StatusServiceUnavailable, res)
	case errors.As(err, new(*errNotCommitted)):
		res.Error = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, res)
	case errors.Is(err, errOutcomeUnknown):
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		return false
	}
	return true
}

// HeaderLeader names the cluster leader's admin address on a 503 from an
// origin that does not lead.
const HeaderLeader = "GeoCDN-Leader"
