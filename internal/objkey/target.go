package objkey

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
)

// Pulled objects (a namespace with an upstream web server) are keyed by the
// whole request target, since a website answers "/", "/blog/" and
// "/search?q=cdn" with different content. Their keys extend published
// ones, and a target that names a published key maps to that key, so a
// publish replaces what was pulled under its name:
//
//   - the path is read as FromPath reads it (decoded once, "%2F" is "/",
//     no "." or ".." segments, no empty segment in the middle);
//   - the root is the key "/", and a trailing slash is kept ("blog/"):
//     published keys never start or end with "/", so neither collides
//     with one;
//   - a query, when the target has one, follows a '?' as sent (neither
//     decoded nor reordered), so a decoded path holding '?' (from "%3F")
//     is refused to keep the split unambiguous.
//
// FromTarget reads a key; Target gives back the target to ask the upstream
// for, which reads back as the same key.

// RootKey is the key of the root target "/".
const RootKey = "/"

// FromTarget returns the pulled key of a request target: escapedPath as
// r.URL.EscapedPath() gives it, and rawQuery as r.URL.RawQuery does.
func FromTarget(escapedPath, rawQuery string) (string, error) {
	if !strings.HasPrefix(escapedPath, "/") {
		return "", keyErr("path %q does not start with \"/\"", truncate(escapedPath))
	}
	var key string
	switch {
	case escapedPath == "/":
		key = RootKey
	case strings.HasSuffix(escapedPath, "/"):
		k, err := FromPath(escapedPath[:len(escapedPath)-1], "/")
		if err != nil {
			return "", err
		}
		key = k + "/"
	default:
		k, err := FromPath(escapedPath, "/")
		if err != nil {
			return "", err
		}
		key = k
	}
	if strings.IndexByte(key, '?') >= 0 {
		return "", keyErr("an encoded '?' in the path of a pulled object (it would read as the query)")
	}
	if rawQuery != "" {
		if err := validQuery(rawQuery); err != nil {
			return "", err
		}
		key += "?" + rawQuery
	}
	if len(key) > MaxKeyLen {
		return "", keyErr("%d bytes with the query, longer than %d", len(key), MaxKeyLen)
	}
	return key, nil
}

// validQuery accepts a raw query as a request line may carry it: visible
// ASCII other than '#'.
func validQuery(q string) error {
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return keyErr("byte %#x at byte %d of the query", c, i)
		}
	}
	return nil
}

// Target returns the escaped path and raw query that a pulled key names.
func Target(key string) (escapedPath, rawQuery string) {
	path, query, _ := strings.Cut(key, "?")
	if path == RootKey {
		return "/", query
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(segs, "/"), query
}

// A pulled response with Vary is stored once per set of values of the
// request fields it names (RFC 9111 §4.1's secondary key): the first
// under the target's key, every other under a variant key, the target's
// key, a unit separator (0x1F, a control character no key read from a
// request holds, so no request names a variant directly) and a hash of
// the secondary key. A prefix purge of the target's key followed by the
// separator (VariantPrefix) removes every variant.

// VariantSep separates a key from its variant's hash.
const VariantSep = "\x1f"

// Variant returns the key of key's variant for the secondary key
// secondary, and false when it would be longer than MaxKeyLen.
func Variant(key, secondary string) (string, bool) {
	sum := sha256.Sum256([]byte(secondary))
	v := key + VariantSep + hex.EncodeToString(sum[:8])
	return v, len(v) <= MaxKeyLen
}

// VariantPrefix is the prefix every variant key of key starts with.
func VariantPrefix(key string) string { return key + VariantSep }

// BaseKey returns the key a variant key is a variant of, and key itself
// for any other key.
func BaseKey(key string) string {
	base, _, _ := strings.Cut(key, VariantSep)
	return base
}
