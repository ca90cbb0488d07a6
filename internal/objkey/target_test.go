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
