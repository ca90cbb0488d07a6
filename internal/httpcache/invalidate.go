package httpcache

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// InvalidatedURLs returns the targets whose stored responses a cache must
// invalidate after the response with the given status and header to an
// unsafe request for reqURL (RFC 9111 §4.4). Every method except GET, HEAD,
// OPTIONS and TRACE is unsafe; only 2xx and 3xx responses invalidate. The
// targets are reqURL and the Location and Content-Location values resolved
// against it that have the same scheme and host (port included, default
// ports implied), each as a path with its query (url.URL.RequestURI),
// without duplicates. Pass an absolute reqURL for absolute Location values
// to be considered; relative ones always are.
func InvalidatedURLs(method string, status int, reqURL *url.URL, respHeader http.Header) []string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return nil
	}
	if status < 200 || status > 399 {
		return nil
	}
	out := []string{reqURL.RequestURI()}
	for _, name := range []string{"Location", "Content-Location"} {
		v := trimOWS(respHeader.Get(name))
		if v == "" {
			continue
		}
		ref, err := url.Parse(v)
		if err != nil {
			continue
		}
		u := reqURL.ResolveReference(ref)
		if !sameOrigin(u, reqURL) {
			continue
		}
		if p := u.RequestURI(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && hostPort(a) == hostPort(b)
}

func hostPort(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}
