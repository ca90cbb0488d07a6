package httpcache

import (
	"net/http"
	"strings"
	"time"
)

// hopByHop lists the connection-specific fields of RFC 9110 §7.6.1, plus
// the non-standard Proxy-Connection, in canonical form.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
}

// RemoveHopByHop deletes from h the hop-by-hop fields (RFC 9110 §7.6.1):
// Connection, Proxy-Connection, Keep-Alive, TE, Trailer, Transfer-Encoding,
// Upgrade, Proxy-Authenticate, Proxy-Authorization and every field that
// Connection names.
func RemoveHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = trimOWS(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, f := range hopByHop {
		delete(h, f)
	}
}

// StorableHeader returns a copy of a response header without the fields a
// shared cache must not store: hop-by-hop fields (RFC 9111 §3.1) and the
// fields named by a qualified private directive (§5.2.2.7).
func StorableHeader(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	RemoveHopByHop(out)
	for _, f := range ParseCacheControl(h["Cache-Control"]).PrivateFields {
		out.Del(f)
	}
	return out
}

// EnsureDate sets h's Date field to the time t the response was received
// when it is missing or not a valid HTTP-date, as a recipient that caches
// or forwards the response must (RFC 9110 §6.6.1). Freshness and age are
// computed from Date, so call it before storing a response.
func EnsureDate(h http.Header, t time.Time) {
	if _, ok := headerDate(h, "Date"); !ok {
		h.Set("Date", t.UTC().Format(http.TimeFormat))
	}
}

// headerDate parses the first line of the HTTP-date field name in h
// (RFC 9110 §5.6.7).
func headerDate(h http.Header, name string) (time.Time, bool) {
	v := h.Values(name)
	if len(v) == 0 {
		return time.Time{}, false
	}
	t, err := http.ParseTime(trimOWS(v[0]))
	return t, err == nil
}
