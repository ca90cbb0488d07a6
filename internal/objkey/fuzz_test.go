package objkey

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func FuzzFromPath(f *testing.F) {
	for _, s := range []string{
		"/img/logo.png", "/", "//", "/a/../b", "/a/./b", "/a%2F..%2Fb", "/%2E%2E",
		"/a%252Fb", "/caf%C3%A9", "/a%00", "/a%C2%85", "/a%zz", "/a%4", "/a?b",
		"/a+b%20c", "/a/", "/" + strings.Repeat("%61", MaxKeyLen),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		key, err := FromPath(path, "/")
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("FromPath(%q) error %q does not wrap ErrInvalidKey", path, err)
			}
			return
		}
		if err := Validate(key); err != nil {
			t.Fatalf("FromPath(%q) = %q, which Validate refuses: %v", path, key, err)
		}
		if len(key) == 0 || len(key) > MaxKeyLen || !utf8.ValidString(key) {
			t.Fatalf("FromPath(%q) = %q: bad length or UTF-8", path, key)
		}
		for _, r := range key {
			if unicode.IsControl(r) {
				t.Fatalf("FromPath(%q) = %q: control character %U", path, key, r)
			}
		}
		slashed := "/" + key + "/"
		for _, bad := range []string{"//", "/./", "/../"} {
			if strings.Contains(slashed, bad) {
				t.Fatalf("FromPath(%q) = %q: contains %q", path, key, bad)
			}
		}
		// Escaping each segment and decoding again names the same key, so
		// one object has one key however its path is spelt.
		segs := strings.Split(key, "/")
		for i, s := range segs {
			segs[i] = url.PathEscape(s)
		}
		again, err := FromPath("/"+strings.Join(segs, "/"), "/")
		if err != nil || again != key {
			t.Fatalf("re-escaped %q: FromPath = %q, %v; want %q", key, again, err, key)
		}
	})
}
