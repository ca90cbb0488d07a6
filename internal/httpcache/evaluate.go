package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stored is a response held by the cache (RFC 9111 §3).
type Stored struct {
	Status  int         // status code
	Header  http.Header // response header as stored, with a Date field
	Request http.Header // header of the request that produced it; only the fields Vary names are consulted
	Times   Times       // when that request was sent and the response received
}

// Decision is what a cache does with a stored response for a request
// (RFC 9111 §4).
type Decision int

const (
	// Forward means the stored response must not be used for this
	// request: forward the request as if nothing were stored.
	Forward Decision = iota
	// Fresh means serve the stored response as is (§4.2).
	Fresh
	// StaleWhileRevalidate means serve the stale stored response now and
	// revalidate it in the background (RFC 5861 §3, or an honored
	// max-stale, §5.2.1.2).
	StaleWhileRevalidate
	// Revalidate means send a conditional request (§4.3.1) and wait for
	// its answer before serving.
	Revalidate
	// GatewayTimeout means the request has only-if-cached and the stored
	// response cannot be used without contacting the origin: answer 504
	// (§5.2.1.7).
	GatewayTimeout
)

var decisionNames = [...]string{"forward", "fresh", "stale-while-revalidate", "revalidate", "gateway-timeout"}

// String returns the lower-case name of d.
func (d Decision) String() string {
	if d < 0 || int(d) >= len(decisionNames) {
		return "decision(" + strconv.Itoa(int(d)) + ")"
	}
	return decisionNames[d]
}

// Info explains a Decision and carries what a cache needs for the Age and
// Cache-Status fields of its response.
type Info struct {
	Age       time.Duration // current age (RFC 9111 §4.2.3)
	Lifetime  time.Duration // freshness lifetime (§4.2.1)
	Heuristic bool          // Lifetime is heuristic (§4.2.2)
	TTL       time.Duration // Lifetime - Age: remaining freshness, negative when stale
	Fwd       string        // Cache-Status fwd value (RFC 9211 §2.2) for Forward and Revalidate
	Reason    string        // short lower-case explanation
}

// Options adjusts Evaluate and StaleIfErrorAllowed.
type Options struct {
	// HonorClientNoCache makes the request directives no-cache, max-age,
	// min-fresh and max-stale, and Pragma: no-cache in a request without
	// Cache-Control (RFC 9111 §5.2.1, §5.4), take effect. By default a CDN
	// ignores them, so clients cannot force revalidation.
	HonorClientNoCache bool
	// SMaxAgeAllowsStale drops the proxy-revalidate semantics of s-maxage
	// (RFC 9111 §5.2.2.10), so that a response with s-maxage and
	// stale-while-revalidate or stale-if-error may be served stale.
	// must-revalidate and proxy-revalidate still forbid it.
	SMaxAgeAllowsStale bool
}

// Evaluate decides how a shared cache uses the stored response s for the
// request req at time now (RFC 9111 §4). The caller has matched the
// request URI. In order:
//
//   - a method other than GET or HEAD: Forward ("method");
//   - Authorization in the request while s has none of public, s-maxage
//     and must-revalidate: Forward ("authorization", §3.5);
//   - request fields that do not match s's Vary, or Vary: *: Forward
//     ("vary", §4.1);
//   - no-cache in s, qualified or not: Revalidate ("no-cache", §5.2.2.4);
//   - with HonorClientNoCache, request no-cache or Pragma: no-cache
//     ("client-no-cache"), an age above the request max-age
//     ("client-max-age") or a TTL not above min-fresh ("client-min-fresh"):
//     Revalidate;
//   - TTL > 0: Fresh;
//   - stale with must-revalidate, proxy-revalidate or s-maxage: Revalidate
//     (§4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10);
//   - stale by at most the request max-stale (with HonorClientNoCache) or
//     the response stale-while-revalidate: StaleWhileRevalidate;
//   - otherwise Revalidate ("stale").
//
// A request with only-if-cached turns Forward and Revalidate into
// GatewayTimeout (§5.2.1.7).
func Evaluate(req *http.Request, s Stored, now time.Time, opts Options) (Decision, Info) {
	sd := ParseCacheControl(s.Header["Cache-Control"])
	rd := ParseCacheControl(req.Header["Cache-Control"])
	var info Info
	info.Lifetime, info.Heuristic = FreshnessLifetime(s.Status, s.Header, sd)
	info.Age = CurrentAge(s.Header, s.Times, now)
	info.TTL = info.Lifetime - info.Age
	var d Decision
	d, info.Fwd, info.Reason = evaluate(req, s, sd, rd, info, opts)
	if rd.OnlyIfCached && (d == Forward || d == Revalidate) {
		d, info.Fwd, info.Reason = GatewayTimeout, "", "only-if-cached"
	}
	return d, info
}

func evaluate(req *http.Request, s Stored, sd, rd Directives, info Info, opts Options) (Decision, string, string) {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead:
	default:
		return Forward, FwdMethod, "method"
	}
	if len(req.Header.Values("Authorization")) > 0 && !sharedAuth(sd) {
		return Forward, FwdRequest, "authorization"
	}
	if !VaryMatches(s.Header.Values("Vary"), s.Request, req.Header) {
		return Forward, FwdVaryMiss, "vary"
	}
	if sd.NoCache {
		return Revalidate, FwdStale, "no-cache"
	}
	if opts.HonorClientNoCache {
		switch {
		case rd.NoCache || len(req.Header.Values("Cache-Control")) == 0 && pragmaNoCache(req.Header):
			return Revalidate, FwdRequest, "client-no-cache"
		case rd.MaxAge.Present && info.Age > rd.MaxAge.Value:
			return Revalidate, FwdRequest, "client-max-age"
		case rd.MinFresh.Present && info.TTL <= rd.MinFresh.Value:
			return Revalidate, FwdRequest, "client-min-fresh"
		}
	}
	if info.TTL > 0 {
		return Fresh, "", "fresh"
	}
	if r := staleForbidden(sd, opts); r != "" {
		return Revalidate, FwdStale, r
	}
	staleness := -info.TTL
	if opts.HonorClientNoCache && rd.MaxStale.Present && staleness <= rd.MaxStale.Value {
		return StaleWhileRevalidate, "", "max-stale"
	}
	if sd.StaleWhileRevalidate.Present && staleness <= sd.StaleWhileRevalidate.Value {
		return StaleWhileRevalidate, "", "stale-while-revalidate"
	}
	return Revalidate, FwdStale, "stale"
}

// staleForbidden returns the response directive that forbids serving the
// response stale (RFC 9111 §4.2.4), or "".
func staleForbidden(d Directives, opts Options) string {
	switch {
	case d.MustRevalidate:
		return "must-revalidate"
	case d.ProxyRevalidate:
		return "proxy-revalidate"
	case d.SMaxAge.Present && !opts.SMaxAgeAllowsStale:
		return "s-maxage"
	}
	return ""
}

// pragmaNoCache reports whether h has Pragma: no-cache (RFC 9111 §5.4).
func pragmaNoCache(h http.Header) bool {
	for _, v := range h.Values("Pragma") {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(trimOWS(f), "no-cache") {
				return true
			}
		}
	}
	return false
}

// StaleIfErrorAllowed reports whether the stored response s may be served
// at time now for req when revalidating it failed with a 5xx status or no
// answer (RFC 5861 §4, RFC 9111 §4.2.4). A response with no-cache may
// not; any other fresh response may. A stale one may if it is stale by at
// most the stale-if-error of the response or of the request (honored
// whatever the Options), unless the response has must-revalidate,
// proxy-revalidate or, without opts.SMaxAgeAllowsStale, s-maxage. req may
// be nil.
func StaleIfErrorAllowed(s Stored, req *http.Request, now time.Time, opts Options) bool {
	sd := ParseCacheControl(s.Header["Cache-Control"])
	if sd.NoCache {
		return false
	}
	lifetime, _ := FreshnessLifetime(s.Status, s.Header, sd)
	ttl := lifetime - CurrentAge(s.Header, s.Times, now)
	if ttl > 0 {
		return true
	}
	if staleForbidden(sd, opts) != "" {
		return false
	}
	if sd.StaleIfError.Present && -ttl <= sd.StaleIfError.Value {
		return true
	}
	if req == nil {
		return false
	}
	rd := ParseCacheControl(req.Header["Cache-Control"])
	return rd.StaleIfError.Present && -ttl <= rd.StaleIfError.Value
}
