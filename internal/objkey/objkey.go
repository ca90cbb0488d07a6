// Package objkey turns request paths into object keys and validates keys
// and namespaces.
//
// An object lives in a namespace under a key: the URL path below a route
// prefix, percent-decoded exactly once, without the query string and
// without a leading slash ("img/logo.png"). Invariant: a key accepted here
// is 1 to MaxKeyLen bytes of valid UTF-8 with no control characters, and
// splits on "/" into non-empty segments none of which is "." or "..", so it
// means the same thing to the origin, every edge, the on-disk stores and
// any HTTP mux that later cleans it.
package objkey

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLen bounds a key, in bytes after percent-decoding.
const MaxKeyLen = 1024

// DefaultNamespace holds objects of requests whose Host no namespace claims.
const DefaultNamespace = "default"

// maxNamespaceLen bounds a namespace so it fits a DNS label.
const maxNamespaceLen = 63

var (
	// ErrInvalidKey is wrapped by every key validation error; HTTP
	// handlers map it to 400.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidNamespace is wrapped by every namespace validation error.
	ErrInvalidNamespace = errors.New("invalid namespace")
)

func keyErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidKey}, args...)...)
}

// FromPath returns the key named by escapedPath, an escaped URL path such
// as r.URL.EscapedPath(), below prefix (for example "/" on an edge or
// "/v1/objects/" on the origin), which must be present.
//
// The path is percent-decoded exactly once and only then split into
// segments, so an encoded slash ("%2F") is a separator like "/" itself:
// "/a%2Fb" and "/a/b" name the same object, and "%2E%2E" is refused like
// "..". Keys are names, not file-system paths, and one spelling per object
// keeps the origin, edges and caches in agreement. A double encoding
// ("%252F") decodes to the literal text "%2F" and stays so.
//
// A raw '?' or '#' is refused: an escaped path never holds one, so its
// presence means the caller passed a request URI with its query, which is
// not part of the key.
//
// When escapedPath needs no decoding, the key is a substring of it and
// FromPath does not allocate; it runs on the edge's hit path.
func FromPath(escapedPath, prefix string) (string, error) {
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok {
		return "", keyErr("path %q does not start with %q", truncate(escapedPath), prefix)
	}
	// Every escape is three bytes for one, so a longer input cannot decode
	// to MaxKeyLen or fewer bytes; refuse it before allocating.
	if len(rest) > 3*MaxKeyLen {
		return "", keyErr("%d bytes encoded, longer than the %d-byte limit however it decodes", len(rest), MaxKeyLen)
	}
	escapes := 0
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '%':
			escapes++
		case '?', '#':
			return "", keyErr("unescaped %q at byte %d of the path (the query is not part of the key)", rest[i], len(prefix)+i)
		}
	}
	key := rest
	if escapes > 0 {
		var err error
		if key, err = unescape(rest, len(prefix), escapes); err != nil {
			return "", err
		}
	}
	if err := Validate(key); err != nil {
		return "", err
	}
	return key, nil
}

// unescape percent-decodes s, which has n escapes and starts at byte off of
// the path (for error messages). Unlike url.PathUnescape it reports where
// the bad escape is.
func unescape(s string, off, n int) (string, error) {
	// Exact when every escape is well formed; max guards "%" alone.
	b := make([]byte, 0, max(len(s)-2*n, 0))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			end := min(i+3, len(s))
			return "", keyErr("bad percent-encoding %q at byte %d of the path", s[i:end], off+i)
		}
		b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
		i += 2
	}
	return string(b), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// Validate reports whether key, already decoded and without a leading
// slash, is acceptable; every error wraps ErrInvalidKey and says which rule
// failed and where.
func Validate(key string) error {
	if key == "" {
		return keyErr("empty key")
	}
	if len(key) > MaxKeyLen {
		return keyErr("%d bytes, longer than %d", len(key), MaxKeyLen)
	}
	segStart := 0
	for i := 0; i < len(key); {
		c := key[i]
		if c == '/' {
			if err := checkSegment(key[segStart:i], segStart); err != nil {
				return err
			}
			segStart = i + 1
			i++
			continue
		}
		if c < utf8.RuneSelf {
			// ASCII controls: C0 and DEL.
			if c < 0x20 || c == 0x7f {
				return keyErr("control character %U at byte %d", c, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && size == 1 {
			return keyErr("invalid UTF-8 at byte %d", i)
		}
		// C1 controls (U+0080–U+009F); a log line or terminal would
		// interpret them.
		if unicode.IsControl(r) {
			return keyErr("control character %U at byte %d", r, i)
		}
		i += size
	}
	return checkSegment(key[segStart:], segStart)
}

// checkSegment refuses the segments that path cleaning would remove or
// rewrite, so no layer can resolve a key to a different object.
func checkSegment(seg string, at int) error {
	switch seg {
	case "":
		return keyErr("empty path segment at byte %d", at)
	case ".", "..":
		return keyErr("%q segment at byte %d", seg, at)
	}
	return nil
}

// truncate shortens s for an error message; keys can be a kilobyte long.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ValidNamespace reports whether ns can name a namespace: 1 to 63 bytes of
// [a-z0-9.-], starting with a letter or digit, so that it can also be a DNS
// label and a directory name.
func ValidNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("%w: empty", ErrInvalidNamespace)
	}
	if len(ns) > maxNamespaceLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidNamespace, len(ns), maxNamespaceLen)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: %q has %q at byte %d (allowed: a-z 0-9, then also . and -)", ErrInvalidNamespace, ns, c, i)
		}
	}
	return nil
}
