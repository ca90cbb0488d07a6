package h1

import (
	"bytes"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// head is what scanHead learnt of a request head held in the read buffer.
type head struct {
	// n is the head's length, up to and including its blank line.
	n int
	// fast reports a GET or HEAD that the fast handler may be offered: a
	// well-formed HTTP/1.0 or 1.1 head, CRLF line endings, an origin-form
	// target of plain characters, no body and none of the slow headers.
	fast   bool
	isHead bool
	http10 bool
	path   []byte
	query  []byte
	host   []byte
	// hosts counts Host header lines; badHost reports one that net/http's
	// server would refuse (httpguts.ValidHostHeader, or folded onto a
	// continuation line, which joins it with a space).
	hosts   int
	badHost bool
	// te reports a Transfer-Encoding line, whatever its value.
	te bool
	// close: Connection: close (1.1), or no Connection: keep-alive (1.0).
	close bool
}

// scanHead scans a request head at the start of buf. complete is false
// when buf does not yet hold the head's blank line. It never fails: a head
// the fast path cannot vouch for comes back with fast false, and net/http's
// parser then reads it and answers whatever is wrong with it.
func scanHead(buf []byte, slow *slowSet) (h head, complete bool) {
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		return h, false
	}
	h.fast = nl > 0 && buf[nl-1] == '\r' && h.requestLine(buf[:nl-1])
	keepAlive, lastHost := false, false
	for pos := nl + 1; ; {
		nl = bytes.IndexByte(buf[pos:], '\n')
		if nl < 0 {
			return h, false
		}
		line := buf[pos : pos+nl]
		pos += nl + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		} else {
			h.fast = false // a bare LF: net/http decides
		}
		if len(line) == 0 {
			h.n = pos
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// An obsolete line folding: net/http joins it to the line
			// before, so a Host value goes on with a space.
			h.fast = false
			if lastHost {
				h.badHost = true
			}
			continue
		}
		lastHost = false
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			h.fast = false
			continue
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !validName(name) || !validValue(value) {
			h.fast = false
			continue
		}
		switch {
		case equalFold(name, "host"):
			h.hosts++
			h.host = value
			lastHost = true
			if !validHost(value) {
				// Stricter than net/http's check, which is left to the
				// unusual host (it costs the string).
				h.fast = false
				if !httpguts.ValidHostHeader(string(value)) {
					h.badHost = true
				}
			}
		case equalFold(name, "transfer-encoding"):
			h.te = true
			h.fast = false
		case equalFold(name, "connection"):
			if hasToken(value, "close") {
				h.close = true
			}
			if hasToken(value, "keep-alive") {
				keepAlive = true
			}
		case equalFold(name, "content-length"):
			if string(value) != "0" {
				h.fast = false
			}
		case slow.has(name):
			h.fast = false
		}
	}
	if h.http10 && !keepAlive {
		h.close = true
	}
	if h.hosts != 1 && !h.http10 || h.hosts > 1 {
		h.fast = false
	}
	return h, true
}

// requestLine parses "GET /path?query HTTP/1.1" and reports whether the
// fast path may take it.
func (h *head) requestLine(line []byte) bool {
	var target []byte
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		target = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		target, h.isHead = line[5:], true
	default:
		return false
	}
	sp := bytes.IndexByte(target, ' ')
	if sp < 0 {
		return false
	}
	switch string(target[sp+1:]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return false
	}
	target = target[:sp]
	if len(target) == 0 || target[0] != '/' {
		return false // asterisk or absolute form: net/http decides
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		if !validQuery(target[q+1:]) {
			return false
		}
		target, h.query = target[:q], target[q+1:]
	}
	if !validPath(target) {
		return false
	}
	h.path = target
	return true
}

// pathChars are the bytes a path may carry unescaped for the fast path:
// RFC 3986 pchar without the escapes, plus '/'. net/url keeps such a path
// as it is, so its EscapedPath is the raw path (see FuzzScanHead).
var pathChars = charSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/")

// queryChars may appear in a query; it is not interpreted here.
var queryChars = charSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")

// hostChars covers reg-name, IPv4, bracketed IPv6 and a port.
var hostChars = charSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:[]")

// tokenChars are RFC 9110 tchar, the bytes of a header name.
var tokenChars = charSet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~")

func charSet(s string) (t [256]bool) {
	for i := 0; i < len(s); i++ {
		t[s[i]] = true
	}
	return t
}

func validPath(p []byte) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if !pathChars[c] {
			return false
		}
	}
	return true
}

func validQuery(q []byte) bool {
	for _, c := range q {
		if !queryChars[c] {
			return false
		}
	}
	return true
}

func validHost(v []byte) bool {
	for _, c := range v {
		if !hostChars[c] {
			return false
		}
	}
	return true
}

func validName(n []byte) bool {
	for _, c := range n {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validValue refuses control bytes other than HTAB, as net/http does.
func validValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// equalFold compares an ASCII header name with a lower-case string.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated list holds token, ignoring
// case.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		item := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		if equalFold(trimOWS(item), token) {
			return true
		}
	}
	return false
}

// slowSet is a set of lower-case header names, grouped by length so that
// a lookup compares few names.
type slowSet struct {
	byLen [32][]string
	long  []string
}

// alwaysSlow are the headers that give a request a body or ask for more
// than a plain answer.
var alwaysSlow = []string{"transfer-encoding", "expect", "upgrade"}

func newSlowSet(names []string) slowSet {
	var s slowSet
	for _, n := range append(append([]string(nil), alwaysSlow...), names...) {
		n = strings.ToLower(n)
		if len(n) < len(s.byLen) {
			s.byLen[len(n)] = append(s.byLen[len(n)], n)
		} else {
			s.long = append(s.long, n)
		}
	}
	return s
}

func (s *slowSet) has(name []byte) bool {
	names := s.long
	if len(name) < len(s.byLen) {
		names = s.byLen[len(name)]
	}
	for _, n := range names {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}
