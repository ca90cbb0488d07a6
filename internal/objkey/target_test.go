package objkey

import (
	"errors"
	"strings"
	"testing"
)

func TestFromTarget(t *testing.T) {
	for _, tc := range []struct {
		path, query, key string
	}{
		{"/", "", "/"},
		{"/", "a=1", "/?a=1"},
		{"/img/logo.png", "", "img/logo.png"},
		{"/blog/", "", "blog/"},
		{"/blog/", "page=2&x=%20y", "blog/?page=2&x=%20y"},
		{"/a%2Fb", "", "a/b"},
		{"/read%20me.txt", "v=1", "read me.txt?v=1"},
		{"/caf%C3%A9/", "", "café/"},
	} {
		got, err := FromTarget(tc.path, tc.query)
		if err != nil || got != tc.key {
			t.Errorf("FromTarget(%q, %q) = %q, %v; want %q", tc.path, tc.query, got, err, tc.key)
			continue
		}
		// The target a key gives reads back as the same key.
		p, q := Target(got)
		if again, err := FromTarget(p, q); err != nil || again != got {
			t.Errorf("Target(%q) = %q, %q, which reads back as %q, %v", got, p, q, again, err)
		}
	}
	// Published keys read the same either way.
	for _, p := range []string{"/img/logo.png", "/a%2Fb", "/docs/read%20me.txt"} {
		pub, err1 := FromPath(p, "/")
		pull, err2 := FromTarget(p, "")
		if err1 != nil || err2 != nil || pub != pull {
			t.Errorf("%s: published key %q (%v), pulled %q (%v)", p, pub, err1, pull, err2)
		}
	}
}

func TestFromTargetRefuses(t *testing.T) {
	for _, tc := range []struct{ path, query, why string }{
		{"", "", "start"},
		{"img", "", "start"},
		{"//", "", "empty key"},
		{"/a//b", "", "empty path segment"},
		{"/a/../b", "", `".."`},
		{"/a/./", "", `"."`},
		{"/a%3Fb", "", "encoded '?'"},
		{"/a", "x=1#frag", "query"},
		{"/a", "x=\x01", "query"},
		{"/a", "x= y", "query"},
		{"/" + strings.Repeat("a", MaxKeyLen-2), "q=12345", "longer than"},
		{"/a%zz", "", "percent-encoding"},
	} {
		_, err := FromTarget(tc.path, tc.query)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("FromTarget(%q, %q) = %v, want an invalid key error mentioning %q", tc.path, tc.query, err, tc.why)
		}
	}
}

func TestVariant(t *testing.T) {
	a, ok1 := Variant("hello", `accept-language="fr"`)
	b, ok2 := Variant("hello", `accept-language="en"`)
	if !ok1 || !ok2 || a == b || !strings.HasPrefix(a, VariantPrefix("hello")) || BaseKey(a) != "hello" {
		t.Fatalf("variants %q (%v) and %q (%v)", a, ok1, b, ok2)
	}
	if again, _ := Variant("hello", `accept-language="fr"`); again != a {
		t.Fatalf("the same secondary key gave %q and %q", a, again)
	}
	// No key read from a request target names a variant.
	if _, err := FromTarget("/hello%1F0123", ""); err == nil {
		t.Fatal("a target with the variant separator was read as a key")
	}
	if BaseKey("blog/?page=2") != "blog/?page=2" {
		t.Fatal("BaseKey changed a key that is no variant")
	}
	if _, ok := Variant(strings.Repeat("k", MaxKeyLen-16), "x"); ok {
		t.Fatal("a variant key longer than MaxKeyLen was allowed")
	}
}
