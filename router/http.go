package router

import (
	"encoding/json"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/geocdn/geocdn/internal/objkey"
)

// Paths the router answers itself; an object with one of these keys cannot
// be reached through the router (it still can at an edge).
const (
	pathHealth  = "/healthz"
	pathMetrics = "/metrics"
	pathRoute   = "/v1/route"
)

// Header values shared by every response rather than allocated per
// request.
var (
	noStore     = []string{"no-store"}
	retryAfter1 = []string{"1"}
)

// Handler is the router's HTTP front end. It validates the path itself,
// before anything could clean it, so bad keys answer 400 rather than a
// mux's 307.
func (r *Router) Handler() http.Handler {
	metricsH := promhttp.HandlerFor(r.cfg.Registry, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		path := req.URL.EscapedPath()
		switch path {
		case pathHealth:
			if r.allowMethod(w, req) {
				r.serveHealth(w)
			}
			return
		case pathMetrics:
			if r.allowMethod(w, req) {
				metricsH.ServeHTTP(w, req)
			}
			return
		case pathRoute:
			if r.allowMethod(w, req) {
				r.serveRoute(w, req)
			}
			return
		}
		key, err := objkey.FromPath(path, "/")
		if err != nil {
			r.error(w, http.StatusBadRequest, err.Error())
			return
		}
		if !r.allowMethod(w, req) {
			return
		}
		d, err := r.Decide(r.clientIP(req), r.nsFor(req.Host), key)
		if err != nil {
			r.unavailable(w, err)
			return
		}
		loc := d.URL + path
		if req.URL.RawQuery != "" {
			loc += "?" + req.URL.RawQuery
		}
		h := w.Header()
		h["Location"] = []string{loc}
		// Where a client goes depends on where it is and on the edges'
		// health now: no cache may keep the answer.
		h["Cache-Control"] = noStore
		h["Geocdn-Edge"] = []string{d.Edge}
		w.WriteHeader(http.StatusFound)
		r.metrics.responded(http.StatusFound)
	})
}

func (r *Router) allowMethod(w http.ResponseWriter, req *http.Request) bool {
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	r.error(w, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

func (r *Router) error(w http.ResponseWriter, code int, msg string) {
	w.Header()["Cache-Control"] = noStore
	http.Error(w, msg, code)
	r.metrics.responded(code)
}

func (r *Router) unavailable(w http.ResponseWriter, err error) {
	w.Header()["Retry-After"] = retryAfter1
	r.error(w, http.StatusServiceUnavailable, err.Error())
}

// serveHealth answers 200 while some edge is routable: a router with none
// can only answer 503, and a load balancer should try another.
func (r *Router) serveHealth(w http.ResponseWriter) {
	if n := r.table.Load().Len(); n == 0 {
		r.unavailable(w, ErrNoEdge)
		return
	}
	w.Header()["Cache-Control"] = noStore
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.db != nil {
		w.Write([]byte("ok\n" + r.db.String() + "\n"))
	} else {
		w.Write([]byte("ok\n"))
	}
	r.metrics.responded(http.StatusOK)
}

// routeJSON is GET /v1/route's answer; the field names are the contract
// DESIGN.md lists, plus where the client was placed.
type routeJSON struct {
	Edge       string  `json:"edge"`
	URL        string  `json:"url"`
	Region     string  `json:"region"`
	DistanceKm float64 `json:"distance_km"`
	EstRTTms   float64 `json:"est_rtt_ms"`
	// RTTSource is what ranked the edge: "measured" (MeasuredRTTms, the
	// edge's own measurement of the client's network) or "model".
	RTTSource     string      `json:"rtt_source,omitempty"`
	MeasuredRTTms float64     `json:"measured_rtt_ms,omitempty"`
	Reason        string      `json:"reason"`
	Candidates    []Candidate `json:"candidates"`
	Client        clientJSON  `json:"client"`
}

type clientJSON struct {
	IP         string  `json:"ip"`
	Source     string  `json:"source"`
	Lat        float64 `json:"lat"`
	Lon        float64 `json:"lon"`
	City       string  `json:"city,omitempty"`
	Country    string  `json:"country,omitempty"`
	Continent  string  `json:"continent,omitempty"`
	AccuracyKm int     `json:"accuracy_km,omitempty"`
	Network    string  `json:"network,omitempty"`
}

// serveRoute answers GET /v1/route?ip=&key=: the decision for the client
// at ip (default: this request's client) asking for key (default none).
func (r *Router) serveRoute(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	client := r.clientIP(req)
	if s := q.Get("ip"); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			r.jsonError(w, http.StatusBadRequest, "ip: "+err.Error())
			return
		}
		client = a.Unmap().WithZone("")
	}
	key := strings.TrimPrefix(q.Get("key"), "/")
	if key != "" {
		if err := objkey.Validate(key); err != nil {
			r.jsonError(w, http.StatusBadRequest, "key: "+err.Error())
			return
		}
	}
	d, err := r.Explain(client, r.nsFor(req.Host), key)
	if err != nil {
		w.Header()["Retry-After"] = retryAfter1
		r.jsonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := routeJSON{
		Edge: d.Edge, URL: d.URL + "/" + escapeKey(key), Region: d.Region,
		DistanceKm: round(d.DistanceKm, 1), EstRTTms: round(d.EstRTTms, 2),
		RTTSource: d.RTTSource, MeasuredRTTms: round(d.MeasuredRTTms, 2),
		Reason: d.Reason, Candidates: d.Candidates,
	}
	if key == "" {
		out.URL = d.URL + "/"
	}
	for i := range out.Candidates {
		c := &out.Candidates[i]
		c.DistanceKm, c.EstRTTms, c.MeasuredRTTms = round(c.DistanceKm, 1), round(c.EstRTTms, 2), round(c.MeasuredRTTms, 2)
	}
	if out.Candidates == nil {
		out.Candidates = []Candidate{}
	}
	l := d.Location
	out.Client = clientJSON{
		IP: client.String(), Source: l.Source.String(), Lat: l.Point.Lat, Lon: l.Point.Lon,
		City: l.Record.City, Country: l.Record.Country, Continent: l.Record.Continent,
		AccuracyKm: l.Record.AccuracyKm,
	}
	if !client.IsValid() {
		out.Client.IP = ""
	}
	if l.Record.Found {
		out.Client.Network = l.Record.Network.String()
	}
	r.writeJSON(w, http.StatusOK, out)
}

func (r *Router) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		r.error(w, http.StatusInternalServerError, err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h["Cache-Control"] = noStore
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
	r.metrics.responded(code)
}

func (r *Router) jsonError(w http.ResponseWriter, code int, msg string) {
	r.writeJSON(w, code, map[string]string{"error": msg})
}

// escapeKey escapes each segment of a key for a URL path.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func round(f float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(f*p) / p
}
