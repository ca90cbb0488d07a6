package httpcache

import (
	"strconv"
	"strings"
	"time"
)

// Values of the Cache-Status fwd parameter (RFC 9211 §2.2).
const (
	FwdBypass   = "bypass"    // the cache was configured not to handle the request
	FwdMethod   = "method"    // the request method's semantics require forwarding
	FwdURIMiss  = "uri-miss"  // no stored response for the URI
	FwdVaryMiss = "vary-miss" // stored responses for the URI, none selected by Vary
	FwdMiss     = "miss"      // no stored response, reason unknown
	FwdRequest  = "request"   // a response was selected but the request forbade using it
	FwdStale    = "stale"     // the selected response was stale (or needed revalidation)
	FwdPartial  = "partial"   // only part of the response was stored
)

// CacheStatus is one member of a Cache-Status field (RFC 9211): how one
// cache handled a request. Add it with h.Add("Cache-Status", c.String()) so
// that it comes after the members of caches closer to the origin.
type CacheStatus struct {
	Cache     string        // cache identifier, rendered as a token if it is one, else as a string
	Hit       bool          // hit: served from cache without forwarding (§2.1)
	Fwd       string        // fwd: why the request was forwarded, a Fwd* value (§2.2)
	FwdStatus int           // fwd-status: status of the forwarded response, if not 0 (§2.3)
	Stored    bool          // stored: the forwarded response was stored (§2.5)
	StoredSet bool          // render stored even when false (stored=?0)
	TTL       time.Duration // ttl: remaining freshness, whole seconds rounded down, may be negative (§2.4)
	TTLSet    bool          // render ttl
	Collapsed bool          // collapsed: the request was collapsed with another (§2.6)
	Key       string        // key: the cache key, if not empty (§2.7)
	Detail    string        // detail: free-form, a token if it is one, else a string (§2.8)
}

// String renders c as a Structured Field list member (RFC 8941 §3.1), such
// as `geocdn; hit; ttl=42` or `geocdn; fwd=uri-miss; fwd-status=200; stored`.
func (c CacheStatus) String() string { return string(c.Append(nil)) }

// Append appends c as String renders it to b: a hit path can build the
// field in a reused buffer.
func (c CacheStatus) Append(b []byte) []byte {
	b = append(b, sfItem(c.Cache)...)
	if c.Hit {
		b = append(b, "; hit"...)
	}
	if c.Fwd != "" {
		b = append(b, "; fwd="...)
		b = append(b, sfItem(c.Fwd)...)
	}
	if c.FwdStatus != 0 {
		b = append(b, "; fwd-status="...)
		b = strconv.AppendInt(b, int64(c.FwdStatus), 10)
	}
	if c.TTLSet {
		s := int64(c.TTL / time.Second)
		if c.TTL%time.Second < 0 {
			s--
		}
		b = append(b, "; ttl="...)
		b = strconv.AppendInt(b, s, 10)
	}
	switch {
	case c.Stored:
		b = append(b, "; stored"...)
	case c.StoredSet:
		b = append(b, "; stored=?0"...)
	}
	if c.Collapsed {
		b = append(b, "; collapsed"...)
	}
	if c.Key != "" {
		b = append(b, "; key="...)
		b = append(b, sfString(c.Key)...)
	}
	if c.Detail != "" {
		b = append(b, "; detail="...)
		b = append(b, sfItem(c.Detail)...)
	}
	return b
}

// sfItem renders s as an sf-token (RFC 8941 §3.3.4) if it is one, else as
// an sf-string.
func sfItem(s string) string {
	if isSFToken(s) {
		return s
	}
	return sfString(s)
}

func isSFToken(s string) bool {
	if s == "" || !(s[0] == '*' || 'a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isTchar(c) && c != ':' && c != '/' {
			return false
		}
	}
	return true
}

// isTchar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// sfString renders s as an sf-string (RFC 8941 §3.3.3). Bytes outside
// printable ASCII, which it cannot hold, become '?'.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
