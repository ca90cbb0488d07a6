package router

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientIP is the address to locate for req: the connection's peer, or,
// when the peer is a trusted proxy, the right-most address of the
// configured header that is not itself a trusted proxy. Everything left of
// that address was written by the client and proves nothing. A header that
// cannot be walked that far (malformed, "unknown", obfuscated) is ignored
// and the peer is used.
func (r *Router) clientIP(req *http.Request) netip.Addr {
	peer := parseHostPort(req.RemoteAddr)
	if !peer.IsValid() || !r.isTrusted(peer) {
		return peer
	}
	var (
		a  netip.Addr
		ok bool
	)
	switch r.cfg.ClientIPHeader {
	case HeaderForwarded:
		a, ok = fromForwarded(req.Header.Values("Forwarded"), r.isTrusted)
	default:
		a, ok = fromXForwardedFor(req.Header.Values("X-Forwarded-For"), r.isTrusted)
	}
	if !ok {
		return peer
	}
	return a
}

func (r *Router) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostPort parses "host:port", "[v6]:port" or a bare address into an
// unmapped, zoneless address; the zero Addr when it is none of those.
func parseHostPort(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// fromXForwardedFor walks X-Forwarded-For (every field line, in order,
// forms one comma-separated list) from the right.
func fromXForwardedFor(lines []string, trusted func(netip.Addr) bool) (netip.Addr, bool) {
	var last netip.Addr
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		if strings.TrimSpace(rest) == "" {
			continue // an empty field line adds no element
		}
		for {
			j := strings.LastIndexByte(rest, ',')
			a := parseHostPort(strings.TrimSpace(rest[j+1:]))
			if !a.IsValid() {
				return netip.Addr{}, false
			}
			if !trusted(a) {
				return a, true
			}
			last = a
			if j < 0 {
				break
			}
			rest = rest[:j]
		}
	}
	// Every hop was a trusted proxy: the client is the first of them.
	return last, last.IsValid()
}

// fromForwarded walks the for= parameters of Forwarded (RFC 7239) from the
// right. The whole header is parsed first, since quoted strings may hold
// commas.
func fromForwarded(lines []string, trusted func(netip.Addr) bool) (netip.Addr, bool) {
	var fors []string
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		f, ok := forwardedFors(l)
		if !ok {
			return netip.Addr{}, false
		}
		fors = append(fors, f...)
	}
	var last netip.Addr
	for i := len(fors) - 1; i >= 0; i-- {
		a := parseForwardedNode(fors[i])
		if !a.IsValid() {
			return netip.Addr{}, false
		}
		if !trusted(a) {
			return a, true
		}
		last = a
	}
	return last, last.IsValid()
}

// forwardedFors returns the for= value of each element of one Forwarded
// field line ("" for an element without one), or false when the line does
// not follow the grammar:
//
//	forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//	forwarded-pair    = token "=" ( token / quoted-string )
func forwardedFors(s string) ([]string, bool) {
	var out []string
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		var forVal string
		hasFor := false
		for {
			skipSpace()
			if i < len(s) && (s[i] == ';' || s[i] == ',') || i == len(s) {
				// An empty pair.
			} else {
				start := i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				name := s[start:i]
				if name == "" || i == len(s) || s[i] != '=' {
					return nil, false
				}
				i++
				var val string
				if i < len(s) && s[i] == '"' {
					var b strings.Builder
					i++
					for {
						if i == len(s) {
							return nil, false // unterminated
						}
						c := s[i]
						if c == '"' {
							i++
							break
						}
						if c == '\\' {
							i++
							if i == len(s) {
								return nil, false
							}
							c = s[i]
						}
						if c < 0x20 && c != '\t' || c == 0x7f {
							return nil, false
						}
						b.WriteByte(c)
						i++
					}
					val = b.String()
				} else {
					start := i
					for i < len(s) && isTchar(s[i]) {
						i++
					}
					val = s[start:i]
					if val == "" {
						return nil, false
					}
				}
				if strings.EqualFold(name, "for") {
					if hasFor {
						return nil, false // each parameter at most once
					}
					hasFor, forVal = true, val
				}
				skipSpace()
			}
			if i == len(s) || s[i] == ',' {
				break
			}
			if s[i] != ';' {
				return nil, false
			}
			i++
		}
		out = append(out, forVal)
		if i == len(s) {
			return out, true
		}
		i++ // the comma
	}
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseForwardedNode parses a for= node: an IPv4 address or a bracketed
// IPv6 one, either with an optional port. "unknown", obfuscated
// identifiers ("_hidden") and anything else give the zero Addr.
func parseForwardedNode(v string) netip.Addr {
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v[1:end])
		if err != nil || !a.Is6() || !validNodePort(v[end+1:]) {
			return netip.Addr{}
		}
		return a.Unmap().WithZone("")
	}
	host, port, _ := strings.Cut(v, ":")
	if port != "" && !validNodePort(":"+port) {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

// validNodePort accepts "" or ":" followed by a port number or an
// obfuscated port ("_abc").
func validNodePort(s string) bool {
	if s == "" {
		return true
	}
	if len(s) < 2 || s[0] != ':' {
		return false
	}
	p := s[1:]
	if p[0] == '_' {
		return true
	}
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
