package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/geocdn/geocdn/internal/h1c"
)

// Options configures Run.
type Options struct {
	Scenario *Scenario
	Cluster  Cluster
	// GeoIP is the GeoIP2 City database the virtual clients' addresses
	// are drawn from: the router's, so it places them where they are.
	GeoIP string
	// Progress, if not nil, gets the live progress line.
	Progress io.Writer
	Logger   *slog.Logger
	// RequestTimeout bounds each request (default 10 s).
	RequestTimeout time.Duration
	// Duration, if set, overrides the scenario's.
	Duration time.Duration
	// Converge bounds the wait, after the run, for every edge to catch
	// up before the final check (default 60 s).
	Converge time.Duration
	// Transport, if set, replaces the run's HTTP transport for the
	// admin API and probes, and Dial the reads' dialer (tests run
	// against handlers in memory, in simulated time).
	Transport http.RoundTripper
	Dial      func(ctx context.Context, network, address string) (net.Conn, error)
}

// run is one load test in progress.
type run struct {
	opts Options
	scn  *Scenario
	cl   *Cluster
	log  *slog.Logger
	hc   *http.Client // admin API, probes, the final check
	h1   *h1c.Client  // reads
	// routerHost is the router's host:port.
	routerHost string
	pop        *population
	start      time.Time
	dur        time.Duration
	rec        *Recorder

	objects   []*object
	zipf      *Zipf
	mix       []float64 // cumulative weights of readOps
	fixedEdge *Edge
	seed      uint64

	// extra holds objects events publish, by key.
	extraMu sync.Mutex
	extra   map[string]*object

	focus    atomic.Pointer[focus]
	inFlight atomic.Int64
	wg       sync.WaitGroup

	sessMu   sync.Mutex
	sessions []*session

	eventsMu sync.Mutex
	events   []EventRecord
	// down are the edges a fault event left killed, by id.
	down map[string]bool
}

var readOps = []Op{OpGet, OpHead, OpConditional, OpRange}

// focus is a flash crowd in progress.
type focus struct {
	obj        *object
	share      float64
	multiplier float64
	until      time.Duration
}

// EventRecord is one thing that happened during a run, for the
// report's timeline.
type EventRecord struct {
	At          time.Duration
	Description string
	Err         string
}

func (r *run) since() time.Duration { return time.Since(r.start) }

func (r *run) event(at time.Duration, err error, format string, args ...any) {
	e := EventRecord{At: at, Description: fmt.Sprintf(format, args...)}
	if err != nil {
		e.Err = err.Error()
		r.log.Warn("loadtest event failed", "event", e.Description, "err", err)
	} else {
		r.log.Info("loadtest event", "at", at.Round(time.Millisecond), "event", e.Description)
	}
	r.eventsMu.Lock()
	r.events = append(r.events, e)
	r.eventsMu.Unlock()
}

// prepare checks the target, reads the clients and builds the objects.
func prepare(ctx context.Context, o Options) (*run, error) {
	scn := o.Scenario
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.Converge <= 0 {
		o.Converge = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	conns := scn.Arrivals.Concurrency
	if scn.Arrivals.Mode == Open {
		conns = min(scn.Arrivals.MaxInFlight, 1024)
	}
	r := &run{
		opts: o, scn: scn, cl: &o.Cluster, log: o.Logger,
		hc:    &http.Client{Transport: o.Transport, CheckRedirect: noRedirect},
		extra: map[string]*object{}, down: map[string]bool{},
		seed: scn.Seed,
	}
	if r.hc.Transport == nil {
		r.hc.Transport = newTransport(conns)
	}
	r.h1 = &h1c.Client{MaxIdlePerHost: conns, ReadBufferSize: 16 << 10, Dial: o.Dial}
	if r.seed == 0 {
		r.seed = rand.Uint64()
	}
	r.dur = scn.Duration
	if o.Duration > 0 {
		r.dur = o.Duration
	}
	if err := r.cl.Discover(ctx, r.hc); err != nil {
		return nil, err
	}
	switch scn.Target.Kind {
	case TargetEdge:
		r.fixedEdge = r.cl.edge(scn.Target.Edge)
		if r.fixedEdge == nil {
			return nil, fmt.Errorf("%s: target edge %q: the origin knows no such edge (it knows %s)", scn.File, scn.Target.Edge, r.edgeIDs())
		}
		if err := probe(ctx, r.hc, r.fixedEdge.URL+"/healthz"); err != nil {
			return nil, fmt.Errorf("target edge %s unreachable at %s: %w", r.fixedEdge.ID, r.fixedEdge.URL, err)
		}
	default:
		if r.cl.Router == "" {
			return nil, fmt.Errorf("%s: the target is the router, but no router was given (--router URL, or --cluster READY-FILE)", scn.File)
		}
		host, _, err := h1c.SplitURL(r.cl.Router)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", r.cl.Router, err)
		}
		r.routerHost = host
	}
	for _, e := range scn.Events {
		switch e.Kind {
		case EventKill, EventPause, EventRestart:
			if r.cl.Control == "" {
				return nil, fmt.Errorf("%s:%d: a %s event needs a cluster started by `geocdn dev --processes` (its control API); this one has none", scn.File, e.Line, e.Kind)
			}
			if r.cl.edge(e.Edge) == nil {
				return nil, fmt.Errorf("%s:%d: %s %s: the origin knows no such edge (it knows %s)", scn.File, e.Line, e.Kind, e.Edge, r.edgeIDs())
			}
		}
	}
	pop, err := newPopulation(scn.Clients, o.GeoIP)
	if err != nil {
		return nil, err
	}
	r.pop = pop

	rng := rand.New(rand.NewPCG(r.seed, 1))
	r.objects = make([]*object, scn.Objects.Count)
	for i := range r.objects {
		key := scn.Objects.Prefix + itoa(i)
		r.objects[i] = &object{key: key, path: escapeKey(key), size: scn.Objects.Sizes.Sample(rng), tag: tagOf(scn, i)}
	}
	r.zipf = NewZipf(scn.Objects.Count, scn.Objects.Zipf)
	m := scn.Mix
	acc := 0.0
	for _, w := range []float64{m.Get, m.Head, m.Conditional, m.Range} {
		acc += w
		r.mix = append(r.mix, acc)
	}
	if acc <= 0 {
		r.mix = []float64{1, 1, 1, 1}
	}
	r.rec = NewRecorder()
	return r, nil
}

// tagOf is the Surrogate-Key of object i: 16 tags, so a purge by tag
// takes one object in 16.
func tagOf(scn *Scenario, i int) string {
	return fmt.Sprintf("%st%d", strings.NewReplacer("/", "-").Replace(scn.Objects.Prefix), i%16)
}

func (r *run) edgeIDs() string {
	ids := make([]string, len(r.cl.Edges))
	for i, e := range r.cl.Edges {
		ids[i] = e.ID
	}
	return strings.Join(ids, ", ")
}

// Run runs the scenario against the cluster and returns its report. A
// cancelled ctx (Ctrl-C) ends the run early; the report still covers
// what ran, and says it was interrupted.
func Run(ctx context.Context, o Options) (*Report, error) {
	r, err := prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	defer r.h1.CloseIdleConnections()
	defer r.hc.CloseIdleConnections()
	before := r.scrapeEdges(ctx)
	if r.scn.Objects.Preload {
		if err := r.preload(ctx); err != nil {
			return nil, err
		}
	}
	// Counters are read after the preload, so its pushes do not count
	// as the run's.
	if r.scn.Objects.Preload {
		before = r.scrapeEdges(ctx)
	}

	runCtx, stop := context.WithTimeout(ctx, r.dur)
	defer stop()
	r.start = time.Now()
	var prog *Progress
	if o.Progress != nil {
		prog = StartProgress(runCtx, o.Progress, r.rec, r.dur)
	}
	var drivers sync.WaitGroup
	drivers.Go(func() { r.reads(runCtx) })
	for _, w := range r.scn.Writes {
		drivers.Go(func() { r.writes(runCtx, w) })
	}
	drivers.Go(func() { r.runEvents(runCtx) })
	drivers.Wait()
	interrupted := ctx.Err() != nil
	// Requests in flight finish, each within its timeout.
	r.wg.Wait()
	elapsed := r.since()
	if prog != nil {
		prog.Stop()
	}

	// The edges' counters are read before the final check, whose reads
	// are not the run's.
	after := r.scrapeEdges(context.WithoutCancel(ctx))
	var conv *Convergence
	if !interrupted {
		conv = r.converge(ctx)
	}
	r.eventsMu.Lock()
	events := append([]EventRecord(nil), r.events...)
	r.eventsMu.Unlock()
	info := RunInfo{
		Scenario: r.scn.Name, File: r.scn.File, Description: r.scn.Description,
		Seed: r.seed, Target: r.targetString(), Start: r.start, Duration: elapsed,
		Interrupted: interrupted, Events: events,
		EdgesBefore: before, EdgesAfter: after, Convergence: conv,
		Regions: r.pop.regionInfo(),
	}
	return r.rec.Report(info), nil
}

func (r *run) targetString() string {
	switch {
	case r.scn.Target.Kind == TargetEdge:
		return "edge " + r.fixedEdge.ID + " (" + r.fixedEdge.URL + ")"
	case r.scn.Target.KeepEdge:
		return "router " + r.cl.Router + ", edge kept for a session"
	}
	return "router " + r.cl.Router
}

// reads drives the read requests until ctx ends: on the open loop's
// schedule, or from the closed loop's clients.
func (r *run) reads(ctx context.Context) {
	if r.scn.Arrivals.Mode == Closed {
		var wg sync.WaitGroup
		for i := range r.scn.Arrivals.Concurrency {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(r.seed, uint64(1000+i)))
				// The run's end stops a client between requests, never
				// during one: a request cut off would count as a timeout.
				for ctx.Err() == nil {
					q := r.nextRead(rng, r.since())
					r.rec.Record(r.doRead(context.WithoutCancel(ctx), q, rng))
				}
			})
		}
		wg.Wait()
		return
	}
	sched := NewSchedule(r.scn.Arrivals.Phases)
	rng := rand.New(rand.NewPCG(r.seed, 2))
	next, ok := sched.Next()
	extra := 0.0 // a flash crowd's fractional extra requests carried over
	for ok && ctx.Err() == nil {
		at := next
		next, ok = sched.Next()
		if !r.sleepUntil(ctx, at) {
			return
		}
		r.launch(ctx, rng, at)
		// A flash crowd multiplies the rate: its extra requests go
		// evenly between this arrival and the next.
		f := r.focus.Load()
		if f == nil || f.multiplier <= 1 || at >= f.until || !ok {
			continue
		}
		extra += f.multiplier - 1
		k := int(extra)
		extra -= float64(k)
		gap := next - at
		for j := 1; j <= k && ctx.Err() == nil; j++ {
			t := at + gap*time.Duration(j)/time.Duration(k+1)
			if !r.sleepUntil(ctx, t) {
				return
			}
			r.launch(ctx, rng, t)
		}
	}
}

// sleepUntil waits for the offset at; false if ctx ended first.
func (r *run) sleepUntil(ctx context.Context, at time.Duration) bool {
	d := time.Until(r.start.Add(at))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// launch starts the read scheduled at offset at, unless MaxInFlight
// reads are outstanding.
func (r *run) launch(ctx context.Context, rng *rand.Rand, at time.Duration) {
	q := r.nextRead(rng, at)
	if r.inFlight.Load() >= int64(r.scn.Arrivals.MaxInFlight) {
		r.rec.Record(Sample{Intended: at, Region: q.sess.place.region, Op: q.op, Key: q.obj.key, Class: ClassOverload,
			Detail: fmt.Sprintf("%d requests already in flight", r.scn.Arrivals.MaxInFlight)})
		return
	}
	r.inFlight.Add(1)
	r.wg.Add(1)
	// Each request's goroutine gets its own generator: rand.Rand is not
	// safe for concurrent use.
	sub := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	go func() {
		defer r.wg.Done()
		defer r.inFlight.Add(-1)
		r.rec.Record(r.doRead(context.WithoutCancel(ctx), q, sub))
	}()
}

// nextRead draws the next read: its client, operation and object.
func (r *run) nextRead(rng *rand.Rand, at time.Duration) readReq {
	q := readReq{intended: at, sess: r.session(rng)}
	x := rng.Float64() * r.mix[len(r.mix)-1]
	for i, c := range r.mix {
		if x < c {
			q.op = readOps[i]
			break
		}
	}
	if q.op == "" {
		q.op = OpGet
	}
	if f := r.focus.Load(); f != nil && at < f.until && rng.Float64() < f.share {
		q.obj = f.obj
	} else {
		q.obj = r.objects[r.zipf.Sample(rng)]
	}
	return q
}

// maxSessions is how many virtual clients are active at once when they
// make more than one request each.
const maxSessions = 256

// session returns the virtual client that makes the next request.
func (r *run) session(rng *rand.Rand) *session {
	n := max(r.scn.Target.SessionRequests, 1)
	if n == 1 {
		pl := r.pop.draw(rng)
		return &session{place: pl, ip: pl.clientIP(rng).String()}
	}
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	i := rng.IntN(maxSessions)
	if i >= len(r.sessions) {
		i = len(r.sessions)
		r.sessions = append(r.sessions, nil)
	}
	s := r.sessions[i]
	if s == nil || s.left <= 0 {
		pl := r.pop.draw(rng)
		s = &session{place: pl, ip: pl.clientIP(rng).String(), left: n}
		r.sessions[i] = s
	}
	s.left--
	return s
}

// preload publishes every object's first generation before the run.
func (r *run) preload(ctx context.Context) error {
	r.log.Info("loadtest: publishing objects", "count", len(r.objects), "prefix", r.scn.Objects.Prefix)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, o := range r.objects {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			c := newContent(r.seed, o.key, 0, o.size)
			p := o.begin(c, r.scn.Objects.Consistency == "strong", 0)
			err := r.publish(gctx, o, c, "all", r.scn.Objects.Consistency)
			// Published before the run: acknowledged at its start.
			o.end(p, err == nil, 1)
			if err != nil {
				return fmt.Errorf("preload %s: %w", o.key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// writes runs one stream of writes at its constant rate.
func (r *run) writes(ctx context.Context, w Write) {
	if w.Rate <= 0 {
		return
	}
	end := r.dur
	if w.For > 0 {
		end = min(end, w.At+w.For)
	}
	gap := time.Duration(float64(time.Second) / w.Rate)
	rng := rand.New(rand.NewPCG(r.seed, uint64(3+w.Line)))
	for i := 0; ; i++ {
		at := w.At + time.Duration(i)*gap
		if at >= end || !r.sleepUntil(ctx, at) {
			return
		}
		r.wg.Add(1)
		sub := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		go func() {
			defer r.wg.Done()
			r.rec.Record(r.doWrite(context.WithoutCancel(ctx), w, at, sub))
		}()
	}
}

// doWrite makes one write of the stream w.
func (r *run) doWrite(ctx context.Context, w Write, at time.Duration, rng *rand.Rand) Sample {
	switch w.Op {
	case OpPublish:
		o := r.objects[r.zipf.Sample(rng)]
		cons := w.Consistency
		if cons == "" {
			cons = r.scn.Objects.Consistency
		}
		return r.publishSample(ctx, o, at, w.W, cons)
	default:
		sel := r.purgeSelector(w.By, rng)
		return r.purgeSample(ctx, at, w.By, sel, w.Soft, w.Wait)
	}
}

// publishSample publishes the next generation of o and measures it.
func (r *run) publishSample(ctx context.Context, o *object, at time.Duration, w, cons string) Sample {
	s := Sample{Intended: at, Op: OpPublishReq, Key: o.key}
	var gen int
	o.mu.Lock()
	gen = len(o.versions)
	o.mu.Unlock()
	c := newContent(r.seed, o.key, gen, o.size)
	p := o.begin(c, cons == "strong", r.since())
	err := r.publish(ctx, o, c, w, cons)
	s.Latency = r.since() - at
	o.end(p, err == nil, r.since())
	s.Bytes = o.size
	if err != nil {
		var he *httpError
		switch {
		case errors.As(err, &he) && he.code >= 500:
			return r.failed(s, Class5xx, err.Error())
		case errors.As(err, &he):
			return r.failed(s, Class4xx, err.Error())
		}
		return r.failed(s, classOf(ctx, err), err.Error())
	}
	s.Status = http.StatusCreated
	return s
}

// purgeSelector draws what a purge by by selects.
func (r *run) purgeSelector(by PurgeBy, rng *rand.Rand) string {
	switch by {
	case PurgePrefix:
		// "<prefix>1" takes 1, 10–19, 100–199 …: about a ninth.
		return r.scn.Objects.Prefix + itoa(1+rng.IntN(9))
	case PurgeTag:
		return tagOf(r.scn, rng.IntN(16))
	}
	return r.objects[r.zipf.Sample(rng)].key
}

func (r *run) purgeSample(ctx context.Context, at time.Duration, by PurgeBy, sel string, soft, wait bool) Sample {
	s := Sample{Intended: at, Op: OpPurgeReq, Key: string(by) + " " + sel}
	err := r.purge(ctx, by, sel, soft, wait)
	s.Latency = r.since() - at
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			s.Status = he.code
			if he.code >= 500 {
				return r.failed(s, Class5xx, err.Error())
			}
			return r.failed(s, Class4xx, err.Error())
		}
		return r.failed(s, classOf(ctx, err), err.Error())
	}
	s.Status = http.StatusOK
	return s
}

// httpError is an admin API answer other than the one expected.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

// publish PUTs c as o's content through the origin's admin API.
func (r *run) publish(ctx context.Context, o *object, c *content, w, cons string) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.opts.RequestTimeout, 30*time.Second))
	defer cancel()
	u := r.cl.Origin + "/v1/objects/" + o.path + "?w=" + w
	if cons != "" {
		u += "&consistency=" + cons
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, c.reader(0, c.size))
	if err != nil {
		return err
	}
	req.ContentLength = c.size
	req.Header.Set("Authorization", "Bearer "+r.cl.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Cache-Control", r.scn.Objects.CacheControl)
	req.Header.Set("Surrogate-Key", o.tag)
	return r.admin(req, http.StatusCreated)
}

// purge POSTs a purge through the origin's admin API.
func (r *run) purge(ctx context.Context, by PurgeBy, sel string, soft, wait bool) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.opts.RequestTimeout, 30*time.Second))
	defer cancel()
	field := map[PurgeBy]string{PurgeKey: "keys", PurgePrefix: "prefixes", PurgeTag: "tags"}[by]
	body := fmt.Sprintf(`{%q: [%q]}`, field, sel)
	u := fmt.Sprintf("%s/v1/purge?wait=%t&soft=%t", r.cl.Origin, wait, soft)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.cl.Token)
	req.Header.Set("Content-Type", "application/json")
	return r.admin(req, http.StatusOK)
}

// admin sends an admin API request and wants status want.
func (r *run) admin(req *http.Request, want int) error {
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return &httpError{code: resp.StatusCode,
			msg: fmt.Sprintf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(body)))}
	}
	return nil
}

// objectFor returns the object of key: one of the run's, or one an
// event published (made on first use).
func (r *run) objectFor(key string, size int64) *object {
	for _, o := range r.objects {
		if o.key == key {
			return o
		}
	}
	r.extraMu.Lock()
	defer r.extraMu.Unlock()
	o := r.extra[key]
	if o == nil {
		o = &object{key: key, path: escapeKey(key), size: size, tag: tagOf(r.scn, 0)}
		r.extra[key] = o
	}
	return o
}

// clampRate keeps a rate usable as a divisor.
func clampRate(x float64) float64 {
	if math.IsNaN(x) || x <= 0 {
		return 1
	}
	return x
}

// Failure says why a run failed its checks, or "" if it passed: any
// corrupt or stale answer, an edge that did not converge, or an
// acknowledged publish missing at the end.
func (rep *Report) Failure() string {
	var why []string
	if rep.Corrupt > 0 {
		why = append(why, fmt.Sprintf("%d corrupt answers", rep.Corrupt))
	}
	if rep.Stale > 0 {
		why = append(why, fmt.Sprintf("%d stale answers", rep.Stale))
	}
	if c := rep.Convergence; c != nil && c.Convergence != nil {
		if len(c.Lagging) > 0 {
			why = append(why, fmt.Sprintf("%d edges did not catch up", len(c.Lagging)))
		}
		if c.MissingCount > 0 {
			why = append(why, fmt.Sprintf("%d acknowledged publishes missing", c.MissingCount))
		}
	}
	return strings.Join(why, ", ")
}
