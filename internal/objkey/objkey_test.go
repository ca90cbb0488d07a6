package objkey

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestFromPath(t *testing.T) {
	long := strings.Repeat("a", MaxKeyLen)
	tests := []struct {
		name    string
		path    string
		prefix  string
		want    string
		wantErr string // empty: must succeed
	}{
		// Accepted.
		{name: "simple", path: "/img/logo.png", prefix: "/", want: "img/logo.png"},
		{name: "one segment", path: "/a", prefix: "/", want: "a"},
		{name: "origin prefix", path: "/v1/objects/img/logo.png", prefix: "/v1/objects/", want: "img/logo.png"},
		{name: "space", path: "/my%20file.txt", prefix: "/", want: "my file.txt"},
		{name: "plus stays plus", path: "/a+b", prefix: "/", want: "a+b"},
		{name: "encoded plus", path: "/a%2Bb", prefix: "/", want: "a+b"},
		{name: "encoded query chars", path: "/search%3Fq%3D1%26x%3D2%23frag", prefix: "/", want: "search?q=1&x=2#frag"},
		{name: "unicode encoded", path: "/caf%C3%A9/%E6%97%A5%E6%9C%AC.jpg", prefix: "/", want: "café/日本.jpg"},
		{name: "unicode raw", path: "/café/日本.jpg", prefix: "/", want: "café/日本.jpg"},
		{name: "lower hex", path: "/caf%c3%a9", prefix: "/", want: "café"},
		{name: "encoded slash separates", path: "/a%2Fb", prefix: "/", want: "a/b"},
		{name: "double encoding stays literal", path: "/a%252Fb", prefix: "/", want: "a%2Fb"},
		{name: "dots inside segment", path: "/a/..b/c..", prefix: "/", want: "a/..b/c.."},
		{name: "three dots", path: "/a/.../b", prefix: "/", want: "a/.../b"},
		{name: "hidden file", path: "/.well-known/x", prefix: "/", want: ".well-known/x"},
		{name: "sub-delims", path: "/a;b=c,d!$&'()*:@", prefix: "/", want: "a;b=c,d!$&'()*:@"},
		{name: "max length", path: "/" + long, prefix: "/", want: long},
		{name: "max length encoded", path: "/" + strings.Repeat("%61", MaxKeyLen), prefix: "/", want: long},

		// Prefix.
		{name: "missing prefix", path: "/img/a", prefix: "/v1/objects/", wantErr: "does not start with"},
		{name: "no leading slash", path: "img/a", prefix: "/", wantErr: "does not start with"},

		// Empty keys and segments.
		{name: "root", path: "/", prefix: "/", wantErr: "invalid key: empty key"},
		{name: "prefix only", path: "/v1/objects/", prefix: "/v1/objects/", wantErr: "empty key"},
		{name: "trailing slash", path: "/img/", prefix: "/", wantErr: "empty path segment at byte 4"},
		{name: "double slash", path: "/a//b", prefix: "/", wantErr: "empty path segment at byte 2"},
		{name: "leading double slash", path: "//a", prefix: "/", wantErr: "empty path segment at byte 0"},
		{name: "encoded double slash", path: "/a%2F%2Fb", prefix: "/", wantErr: "empty path segment at byte 2"},
		{name: "encoded trailing slash", path: "/a%2F", prefix: "/", wantErr: "empty path segment at byte 2"},

		// Dot segments.
		{name: "dot dot", path: "/a/../b", prefix: "/", wantErr: `".." segment at byte 2`},
		{name: "leading dot dot", path: "/../etc/passwd", prefix: "/", wantErr: `".." segment at byte 0`},
		{name: "trailing dot dot", path: "/a/..", prefix: "/", wantErr: `".." segment`},
		{name: "dot", path: "/a/./b", prefix: "/", wantErr: `"." segment at byte 2`},
		{name: "only dot", path: "/.", prefix: "/", wantErr: `"." segment`},
		{name: "encoded dot dot", path: "/a/%2E%2E/b", prefix: "/", wantErr: `".." segment`},
		{name: "encoded slash dot dot", path: "/a%2F..%2Fb", prefix: "/", wantErr: `".." segment`},

		// Control characters and UTF-8.
		{name: "nul", path: "/a%00b", prefix: "/", wantErr: "control character U+0000 at byte 1"},
		{name: "raw nul", path: "/a\x00b", prefix: "/", wantErr: "control character U+0000"},
		{name: "newline", path: "/a%0Ab", prefix: "/", wantErr: "control character U+000A"},
		{name: "tab", path: "/a%09b", prefix: "/", wantErr: "control character U+0009"},
		{name: "del", path: "/a%7F", prefix: "/", wantErr: "control character U+007F"},
		{name: "c1 control", path: "/a%C2%85", prefix: "/", wantErr: "control character U+0085 at byte 1"},
		{name: "invalid utf8", path: "/a%FFb", prefix: "/", wantErr: "invalid UTF-8 at byte 1"},
		{name: "truncated utf8", path: "/a%C3", prefix: "/", wantErr: "invalid UTF-8"},
		{name: "overlong utf8 slash", path: "/a%C0%AFb", prefix: "/", wantErr: "invalid UTF-8"},
		{name: "surrogate", path: "/%ED%A0%80", prefix: "/", wantErr: "invalid UTF-8"},

		// Length.
		{name: "too long", path: "/" + long + "a", prefix: "/", wantErr: "1025 bytes, longer than 1024"},
		{name: "too long encoded", path: "/" + strings.Repeat("%61", MaxKeyLen+1), prefix: "/", wantErr: "longer than"},

		// Percent-encoding.
		{name: "bad hex", path: "/a%zzb", prefix: "/", wantErr: `bad percent-encoding "%zz" at byte 2`},
		{name: "short escape", path: "/a%4", prefix: "/", wantErr: `bad percent-encoding "%4"`},
		{name: "lone percent", path: "/a%", prefix: "/", wantErr: `bad percent-encoding "%"`},
		{name: "only percent", path: "/%", prefix: "/", wantErr: `bad percent-encoding "%" at byte 1`},
		{name: "half hex", path: "/%4g", prefix: "/", wantErr: "bad percent-encoding"},

		// Query and fragment.
		{name: "raw query", path: "/a?b=1", prefix: "/", wantErr: `unescaped '?' at byte 2`},
		{name: "raw fragment", path: "/a#b", prefix: "/", wantErr: `unescaped '#'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromPath(tt.path, tt.prefix)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("FromPath(%q, %q) = %q, want error containing %q", tt.path, tt.prefix, got, tt.wantErr)
				}
				if !errors.Is(err, ErrInvalidKey) {
					t.Errorf("error %q does not wrap ErrInvalidKey", err)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromPath(%q, %q) = %q, %v; want %q", tt.path, tt.prefix, got, err, tt.want)
			}
		})
	}
}

// TestFromPathURL checks FromPath against what net/url makes of real
// request targets, the way the edge and origin call it.
func TestFromPathURL(t *testing.T) {
	tests := []struct {
		target string
		want   string
	}{
		{"/img/logo.png?v=3", "img/logo.png"},
		{"/a%2Fb?x", "a/b"},
		{"/my%20file.txt", "my file.txt"},
		{"/a%3Fb?c=d", "a?b"},
		{"/caf%C3%A9", "café"},
	}
	for _, tt := range tests {
		u, err := url.ParseRequestURI(tt.target)
		if err != nil {
			t.Fatalf("ParseRequestURI(%q): %v", tt.target, err)
		}
		got, err := FromPath(u.EscapedPath(), "/")
		if err != nil || got != tt.want {
			t.Errorf("FromPath(EscapedPath of %q) = %q, %v; want %q", tt.target, got, err, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, key := range []string{"a", "img/logo.png", "café/日本.jpg", "a b+c?d=e", "a%2Fb", ".x/..y/z."} {
		if err := Validate(key); err != nil {
			t.Errorf("Validate(%q) = %v, want nil", key, err)
		}
	}
	// Validate takes stored keys, which have no leading slash.
	for _, key := range []string{"", "/a", "a/", "a//b", "..", "a/./b", "a\x00", "a\u0085", "a\x7f", "\xff", strings.Repeat("x", MaxKeyLen+1)} {
		if err := Validate(key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Validate(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

func TestValidNamespace(t *testing.T) {
	for _, ns := range []string{DefaultNamespace, "a", "0", "cdn.example.com", "shop-eu", strings.Repeat("a", 63)} {
		if err := ValidNamespace(ns); err != nil {
			t.Errorf("ValidNamespace(%q) = %v, want nil", ns, err)
		}
	}
	for _, ns := range []string{"", "-a", ".a", "A", "a_b", "a b", "a/b", "é", strings.Repeat("a", 64)} {
		if err := ValidNamespace(ns); !errors.Is(err, ErrInvalidNamespace) {
			t.Errorf("ValidNamespace(%q) = %v, want ErrInvalidNamespace", ns, err)
		}
	}
}

func TestFromPathNoAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := FromPath("/img/sprites/logo-2x.png", "/"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("FromPath without escapes: %v allocations, want 0", allocs)
	}
}

func BenchmarkFromPath(b *testing.B) {
	for _, bm := range []struct{ name, path string }{
		{"plain", "/img/sprites/logo-2x.png"},
		{"escaped", "/img/sprites/logo%202x.png"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FromPath(bm.path, "/"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
