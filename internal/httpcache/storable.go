package httpcache

import "net/http"

// heuristicStatus reports whether a status code is heuristically cacheable
// (RFC 9110 §15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus reports whether the cache implements the caching
// requirements of a final status code, which must-understand requires
// (RFC 9111 §5.2.2.3): the codes RFC 9110 §15 defines, except 206 and 304,
// which this package never stores.
func understoodStatus(code int) bool {
	switch {
	case code >= 200 && code <= 205, code >= 300 && code <= 303,
		code == 307, code == 308, code >= 400 && code <= 417,
		code == 421, code == 422, code == 426, code >= 500 && code <= 505:
		return true
	}
	return false
}

// Storable reports whether a shared cache may store the response to a
// request (RFC 9111 §3) and, when it may not, why. Only GET responses are
// stored; HEAD responses are not. The reasons are "method", "status" (not
// a final status code), "partial" (206), "not-modified" (304), "no-store"
// (in the request or the response, §5.2.1.5, §5.2.2.5), "must-understand"
// (status code not understood, §5.2.2.3), "private" (§5.2.2.7),
// "authorization" (§3.5) and "not-cacheable-status" (no explicit freshness
// and a status code that is not heuristically cacheable, §4.2.2).
//
// must-understand with an understood status code overrides the response's
// no-store (§5.2.2.3). A qualified private keeps the response storable, but
// only StorableHeader of its header may be stored. A response with
// Vary: * is storable, though it never matches a request (§4.1).
func Storable(method string, reqHeader http.Header, status int, respHeader http.Header) (ok bool, reason string) {
	switch {
	case method != http.MethodGet:
		return false, "method"
	case status < 200 || status > 599:
		return false, "status"
	case status == http.StatusPartialContent:
		return false, "partial"
	case status == http.StatusNotModified:
		return false, "not-modified"
	}
	rd := ParseCacheControl(reqHeader["Cache-Control"])
	sd := ParseCacheControl(respHeader["Cache-Control"])
	switch {
	case rd.NoStore:
		return false, "no-store"
	case sd.MustUnderstand && !understoodStatus(status):
		return false, "must-understand"
	case sd.NoStore && !sd.MustUnderstand:
		return false, "no-store"
	case sd.Private && sd.PrivateFields == nil:
		return false, "private"
	case len(reqHeader.Values("Authorization")) > 0 && !sharedAuth(sd):
		return false, "authorization"
	}
	if sd.Public || sd.SMaxAge.Present || sd.MaxAge.Present ||
		len(respHeader.Values("Expires")) > 0 || heuristicStatus(status) {
		return true, ""
	}
	return false, "not-cacheable-status"
}

// sharedAuth reports whether a response directive lets a shared cache
// reuse a response to a request with Authorization (RFC 9111 §3.5).
func sharedAuth(d Directives) bool {
	return d.Public || d.SMaxAge.Present || d.MustRevalidate
}
