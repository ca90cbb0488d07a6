package httpcache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// varyNames returns the sorted, lower-case, distinct field names of the
// Vary field lines, and whether they include "*".
func varyNames(vary []string) (names []string, star bool) {
	for _, v := range vary {
		for f := range strings.SplitSeq(v, ",") {
			switch f = trimOWS(f); f {
			case "":
			case "*":
				return nil, true
			default:
				names = append(names, strings.ToLower(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}

// VaryKey returns a secondary cache key for a request: a canonical
// rendering of the values of the request fields that a stored response's
// Vary field lines name (RFC 9111 §4.1). Field names are case-insensitive
// and their order does not matter. Values are normalized: outside
// quoted-strings, runs of whitespace collapse to one space and a comma is
// followed by exactly one space; several field lines are joined with ", ".
// An absent field and an empty one give different keys. ok is false when
// Vary contains "*": such a response matches no request.
func VaryKey(storedVary []string, reqHeader http.Header) (key string, ok bool) {
	names, star := varyNames(storedVary)
	if star {
		return "", false
	}
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(n)
		if v := reqHeader.Values(n); v != nil {
			b.WriteByte('=')
			b.WriteString(strconv.Quote(normalizeValues(v)))
		}
	}
	return b.String(), true
}

// VaryMatches reports whether a request selects a stored response that was
// stored for a request with header storedReq (RFC 9111 §4.1): the fields
// named by the stored Vary lines have equivalent values in both.
func VaryMatches(storedVary []string, storedReq, req http.Header) bool {
	k1, ok := VaryKey(storedVary, storedReq)
	k2, _ := VaryKey(storedVary, req)
	return ok && k1 == k2
}

// normalizeValues joins the normalized non-empty lines of a field with
// ", ", the equivalent of a single line (RFC 9110 §5.3).
func normalizeValues(lines []string) string {
	var parts []string
	for _, l := range lines {
		if l = normalizeLine(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, ", ")
}

// normalizeLine trims a field line, collapses whitespace outside
// quoted-strings to one space and writes a comma as ", ".
func normalizeLine(s string) string {
	var b strings.Builder
	space, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			} else if c == '"' {
				quoted = false
			}
			continue
		case c == ' ' || c == '\t':
			space = true
			continue
		case c == ',':
			b.WriteString(", ")
			space = false
			continue
		}
		if space && b.Len() > 0 && !strings.HasSuffix(b.String(), " ") {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
		quoted = c == '"'
	}
	return strings.TrimSuffix(b.String(), " ")
}
