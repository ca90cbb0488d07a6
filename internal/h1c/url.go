package h1c

import (
	"fmt"
	"strings"
)

// SplitURL splits an absolute http URL, such as a redirect's Location,
// into the host:port to dial (":80" added when it names no port) and
// the request-target ("/" when it has no path; the fragment dropped).
// It allocates only to add a port or a leading "/".
func SplitURL(u string) (host, target string, err error) {
	const scheme = "http://"
	if len(u) < len(scheme) || !equalFold([]byte(u[:len(scheme)]), scheme) {
		return "", "", fmt.Errorf("%w: %q is not an http URL", errRequest, u)
	}
	rest := u[len(scheme):]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host, target = rest[:end], rest[end:]
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	if host == "" || !isClass(host, hostByte) {
		return "", "", fmt.Errorf("%w: bad host in %q", errRequest, u)
	}
	if !isClass(target, targetByte) {
		return "", "", fmt.Errorf("%w: bad path in %q", errRequest, u)
	}
	if i := strings.LastIndexByte(host, ':'); i < 0 || strings.HasSuffix(host, "]") {
		host += ":80"
	}
	if target == "" || target[0] == '?' {
		target = "/" + target
	}
	return host, target, nil
}
