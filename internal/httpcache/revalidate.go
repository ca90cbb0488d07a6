package httpcache

import (
	"net/http"
	"strings"
)

// parseETag parses an entity-tag (RFC 9110 §8.8.3): an optional "W/"
// weakness indicator and an opaque quoted string without inner quotes.
func parseETag(s string) (weak bool, opaque string, ok bool) {
	s = trimOWS(s)
	if rest, found := strings.CutPrefix(s, "W/"); found {
		weak, s = true, rest
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' || strings.Contains(s[1:len(s)-1], `"`) {
		return false, "", false
	}
	return weak, s, true
}

// ConditionalHeaders returns the fields that turn a request for the stored
// response with header stored into a conditional one (RFC 9111 §4.3.1):
// If-None-Match with its ETag and If-Modified-Since with its Last-Modified,
// each only when valid. The result is empty when stored has no validator.
func ConditionalHeaders(stored http.Header) http.Header {
	h := http.Header{}
	if etag := stored.Get("ETag"); etag != "" {
		if _, _, ok := parseETag(etag); ok {
			h.Set("If-None-Match", trimOWS(etag))
		}
	}
	if _, ok := headerDate(stored, "Last-Modified"); ok {
		h.Set("If-Modified-Since", trimOWS(stored.Get("Last-Modified")))
	}
	return h
}

// ValidatorsMatch reports whether a 304 answer with header notModified to
// a conditional request built by ConditionalHeaders applies to the stored
// response with header stored (RFC 9111 §4.3.4). If the 304 has an ETag,
// stored must have one that matches it: by strong comparison when the 304's
// is strong, by weak comparison when it is weak (RFC 9110 §8.8.3.2).
// Otherwise, if both have a valid Last-Modified, they must be equal. A 304
// without validators applies.
func ValidatorsMatch(stored, notModified http.Header) bool {
	if v := notModified.Get("ETag"); v != "" {
		nweak, nop, ok := parseETag(v)
		if !ok {
			return false
		}
		sweak, sop, ok := parseETag(stored.Get("ETag"))
		return ok && sop == nop && (nweak || !sweak)
	}
	nlm, ok1 := headerDate(notModified, "Last-Modified")
	slm, ok2 := headerDate(stored, "Last-Modified")
	return !ok1 || ok2 && nlm.Equal(slm)
}

// Freshen returns the stored header updated with the header of a 304 answer
// to a revalidation (RFC 9111 §3.2, §4.3.4): each field of notModified
// replaces the stored field of that name, except hop-by-hop fields, fields
// named by a qualified private, and Content-Length, which are kept as
// stored. Before calling it, check ValidatorsMatch and add a missing Date
// to notModified with EnsureDate; after it, store the Times of the
// revalidation exchange.
func Freshen(stored, notModified http.Header) http.Header {
	out := stored.Clone()
	if out == nil {
		out = http.Header{}
	}
	update := StorableHeader(notModified)
	update.Del("Content-Length")
	for k, v := range update {
		out[k] = v
	}
	return StorableHeader(out)
}
