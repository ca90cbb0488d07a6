package httpcache

import (
	"net/http"
	"testing"
)

func TestStorable(t *testing.T) {
	tests := []struct {
		name   string
		method string
		req    http.Header
		status int
		resp   http.Header
		reason string // "" when storable
	}{
		{"get max-age", "GET", nil, 200, hdr("Cache-Control", "max-age=60"), ""},
		{"head not stored", "HEAD", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"post", "POST", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"lowercase get", "get", nil, 200, hdr("Cache-Control", "max-age=60"), "method"},
		{"informational", "GET", nil, 103, hdr("Cache-Control", "max-age=60"), "status"},
		{"beyond 599", "GET", nil, 600, hdr("Cache-Control", "max-age=60"), "status"},
		{"partial", "GET", nil, 206, hdr("Cache-Control", "max-age=60"), "partial"},
		{"not modified", "GET", nil, 304, hdr("Cache-Control", "max-age=60"), "not-modified"},
		{"request no-store", "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "max-age=60"), "no-store"},
		{"response no-store", "GET", nil, 200, hdr("Cache-Control", "max-age=60, no-store"), "no-store"},
		{"response NO-STORE", "GET", nil, 200, hdr("Cache-Control", "NO-STORE"), "no-store"},
		{"must-understand overrides no-store", "GET", nil, 200, hdr("Cache-Control", "must-understand, no-store, max-age=60"), ""},
		{"must-understand unknown status", "GET", nil, 299, hdr("Cache-Control", "must-understand, no-store, max-age=60"), "must-understand"},
		{"must-understand 206", "GET", nil, 206, hdr("Cache-Control", "must-understand, max-age=60"), "partial"},
		{"request no-store beats must-understand", "GET", hdr("Cache-Control", "no-store"), 200, hdr("Cache-Control", "must-understand, no-store"), "no-store"},
		{"private", "GET", nil, 200, hdr("Cache-Control", "private, max-age=60"), "private"},
		{"private qualified", "GET", nil, 200, hdr("Cache-Control", `private="Set-Cookie", max-age=60`), ""},
		{"private empty list", "GET", nil, 200, hdr("Cache-Control", `private="", max-age=60`), "private"},
		{"private qualified and bare", "GET", nil, 200, hdr("Cache-Control", `private="Set-Cookie", private`), "private"},
		{"authorization max-age", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60"), "authorization"},
		{"authorization nothing", "GET", hdr("Authorization", "Bearer x"), 200, hdr(), "authorization"},
		{"authorization public", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "public"), ""},
		{"authorization s-maxage", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "s-maxage=60"), ""},
		{"authorization must-revalidate", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "must-revalidate, max-age=60"), ""},
		{"authorization must-revalidate heuristic", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "must-revalidate"), ""},
		{"heuristic 200", "GET", nil, 200, hdr(), ""},
		{"heuristic 404", "GET", nil, 404, hdr(), ""},
		{"heuristic 410", "GET", nil, 410, hdr(), ""},
		{"heuristic 501", "GET", nil, 501, hdr(), ""},
		{"heuristic 308", "GET", nil, 308, hdr(), ""},
		{"302 without freshness", "GET", nil, 302, hdr(), "not-cacheable-status"},
		{"302 max-age", "GET", nil, 302, hdr("Cache-Control", "max-age=60"), ""},
		{"307 s-maxage", "GET", nil, 307, hdr("Cache-Control", "s-maxage=60"), ""},
		{"500 without freshness", "GET", nil, 500, hdr(), "not-cacheable-status"},
		{"500 invalid expires", "GET", nil, 500, hdr("Expires", "0"), ""},
		{"201 public", "GET", nil, 201, hdr("Cache-Control", "public"), ""},
		{"201 invalid max-age", "GET", nil, 201, hdr("Cache-Control", "max-age=soon"), ""},
		{"vary star", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Vary", "*"), ""},
		{"set-cookie", "GET", nil, 200, hdr("Cache-Control", "max-age=60", "Set-Cookie", "id=1"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := Storable(tt.method, tt.req, tt.status, tt.resp)
			if ok != (tt.reason == "") || reason != tt.reason {
				t.Errorf("Storable = %v, %q; want %v, %q", ok, reason, tt.reason == "", tt.reason)
			}
		})
	}
}
