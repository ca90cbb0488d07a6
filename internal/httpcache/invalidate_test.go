package httpcache

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

func TestInvalidatedURLs(t *testing.T) {
	tests := []struct {
		name   string
		method string
		status int
		url    string
		resp   http.Header
		want   []string
	}{
		{"get", "GET", 200, "https://example.com/a/b?x=1", hdr(), nil},
		{"head", "HEAD", 200, "https://example.com/a/b", hdr(), nil},
		{"options", "OPTIONS", 200, "https://example.com/a/b", hdr(), nil},
		{"trace", "TRACE", 200, "https://example.com/a/b", hdr(), nil},
		{"post", "POST", 200, "https://example.com/a/b?x=1", hdr(), []string{"/a/b?x=1"}},
		{"delete no content", "DELETE", 204, "https://example.com/a", hdr(), []string{"/a"}},
		{"unknown method", "PURGEX", 200, "https://example.com/a", hdr(), []string{"/a"}},
		{"lower-case get is unsafe", "get", 200, "https://example.com/a", hdr(), []string{"/a"}},
		{"see other", "POST", 303, "https://example.com/a", hdr("Location", "/done"), []string{"/a", "/done"}},
		{"client error", "POST", 404, "https://example.com/a", hdr("Location", "/b"), nil},
		{"server error", "PUT", 500, "https://example.com/a", hdr(), nil},
		{"informational", "POST", 100, "https://example.com/a", hdr(), nil},
		{"relative location", "PUT", 201, "https://example.com/a/b?x=1", hdr("Location", "c"), []string{"/a/b?x=1", "/a/c"}},
		{"absolute same origin", "PUT", 201, "https://example.com/a", hdr("Location", "https://EXAMPLE.com:443/d?y=2#frag"), []string{"/a", "/d?y=2"}},
		{"cross origin", "PUT", 201, "https://example.com/a", hdr("Location", "https://other.example/d"), []string{"/a"}},
		{"scheme-relative cross origin", "PUT", 201, "https://example.com/a", hdr("Location", "//other.example/d"), []string{"/a"}},
		{"other scheme", "PUT", 201, "https://example.com/a", hdr("Location", "http://example.com/d"), []string{"/a"}},
		{"other port", "PUT", 201, "https://example.com/a", hdr("Location", "https://example.com:8443/d"), []string{"/a"}},
		{"location and content-location", "POST", 201, "https://example.com/a", hdr("Location", "/f", "Content-Location", "/e"), []string{"/a", "/f", "/e"}},
		{"duplicates removed", "POST", 200, "https://example.com/a?q", hdr("Location", "/a?q", "Content-Location", "https://example.com/a?q"), []string{"/a?q"}},
		{"unparsable location", "POST", 200, "https://example.com/a", hdr("Location", "http://[::1"), []string{"/a"}},
		{"relative request url", "POST", 200, "/a/b", hdr("Location", "/z", "Content-Location", "https://example.com/y"), []string{"/a/b", "/z"}},
		{"escaped path", "POST", 200, "https://example.com/a", hdr("Location", "/caf%C3%A9?x=%20"), []string{"/a", "/caf%C3%A9?x=%20"}},
		{"empty path", "POST", 200, "https://example.com", hdr(), []string{"/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if got := InvalidatedURLs(tt.method, tt.status, u, tt.resp); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("InvalidatedURLs = %q, want %q", got, tt.want)
			}
		})
	}
}
