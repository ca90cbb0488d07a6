package httpcache

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestConditionalHeaders(t *testing.T) {
	lm := httpDate(t0.Add(-time.Hour))
	tests := []struct {
		name   string
		stored http.Header
		want   http.Header
	}{
		{"etag and last-modified", hdr("Etag", `"v1"`, "Last-Modified", lm), hdr("If-None-Match", `"v1"`, "If-Modified-Since", lm)},
		{"etag only", hdr("Etag", ` "v1" `), hdr("If-None-Match", `"v1"`)},
		{"weak etag", hdr("Etag", `W/"v1"`), hdr("If-None-Match", `W/"v1"`)},
		{"unquoted etag", hdr("Etag", "v1"), hdr()},
		{"etag with inner quote", hdr("Etag", `"a"b"`), hdr()},
		{"last-modified only", hdr("Last-Modified", lm), hdr("If-Modified-Since", lm)},
		{"obsolete date format", hdr("Last-Modified", "Sunday, 06-Nov-94 08:49:37 GMT"), hdr("If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT")},
		{"invalid last-modified", hdr("Last-Modified", "yesterday"), hdr()},
		{"no validators", hdr("Content-Type", "text/html"), hdr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConditionalHeaders(tt.stored); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidatorsMatch(t *testing.T) {
	lm1, lm2 := httpDate(t0.Add(-time.Hour)), httpDate(t0.Add(-time.Minute))
	tests := []struct {
		name        string
		stored, got http.Header
		want        bool
	}{
		{"same strong etag", hdr("Etag", `"v1"`), hdr("Etag", `"v1"`), true},
		{"different strong etag", hdr("Etag", `"v1"`), hdr("Etag", `"v2"`), false},
		{"strong 304 weak stored", hdr("Etag", `W/"v1"`), hdr("Etag", `"v1"`), false},
		{"weak 304 strong stored", hdr("Etag", `"v1"`), hdr("Etag", `W/"v1"`), true},
		{"same weak etag", hdr("Etag", `W/"v1"`), hdr("Etag", `W/"v1"`), true},
		{"different weak etag", hdr("Etag", `W/"v1"`), hdr("Etag", `W/"v2"`), false},
		{"etag case matters", hdr("Etag", `"abc"`), hdr("Etag", `"ABC"`), false},
		{"304 etag stored none", hdr("Last-Modified", lm1), hdr("Etag", `"v1"`), false},
		{"invalid 304 etag", hdr("Etag", `"v1"`), hdr("Etag", "v1"), false},
		{"etag beats last-modified", hdr("Etag", `"v1"`, "Last-Modified", lm1), hdr("Etag", `"v1"`, "Last-Modified", lm2), true},
		{"same last-modified", hdr("Last-Modified", lm1), hdr("Last-Modified", lm1), true},
		{"different last-modified", hdr("Last-Modified", lm1), hdr("Last-Modified", lm2), false},
		{"304 last-modified stored none", hdr(), hdr("Last-Modified", lm1), false},
		{"304 without validators", hdr("Etag", `"v1"`, "Last-Modified", lm1), hdr("Date", httpDate(t0)), true},
		{"neither has validators", hdr(), hdr(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidatorsMatch(tt.stored, tt.got); got != tt.want {
				t.Errorf("ValidatorsMatch = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFreshen(t *testing.T) {
	d0, d1 := httpDate(t0), httpDate(t0.Add(time.Hour))
	tests := []struct {
		name       string
		stored, nm http.Header
		want       http.Header
	}{
		{"fields replaced and added",
			hdr("Date", d0, "Cache-Control", "max-age=60", "Etag", `"v1"`, "Content-Type", "text/html", "Content-Length", "42"),
			hdr("Date", d1, "Cache-Control", "max-age=120", "Etag", `"v1"`, "X-Served-By", "origin-2"),
			hdr("Date", d1, "Cache-Control", "max-age=120", "Etag", `"v1"`, "Content-Type", "text/html", "Content-Length", "42", "X-Served-By", "origin-2")},
		{"content-length kept",
			hdr("Date", d0, "Content-Length", "42"),
			hdr("Date", d1, "Content-Length", "0"),
			hdr("Date", d1, "Content-Length", "42")},
		{"hop-by-hop dropped",
			hdr("Date", d0, "Content-Length", "42"),
			hdr("Date", d1, "Connection", "X-Trace", "X-Trace", "abc", "Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked", "Proxy-Authenticate", "Basic"),
			hdr("Date", d1, "Content-Length", "42")},
		{"multi-line field replaced whole",
			hdr("Link", "</a>; rel=preload", "Link", "</b>; rel=preload"),
			hdr("Link", "</c>; rel=preload"),
			hdr("Link", "</c>; rel=preload")},
		{"new qualified private",
			hdr("Date", d0, "Set-Cookie", "old=1"),
			hdr("Date", d1, "Cache-Control", `private="Set-Cookie"`, "Set-Cookie", "new=2"),
			hdr("Date", d1, "Cache-Control", `private="Set-Cookie"`)},
		{"age replaced",
			hdr("Date", d0, "Age", "100"),
			hdr("Date", d1, "Age", "3"),
			hdr("Date", d1, "Age", "3")},
		{"nil stored", nil, hdr("Date", d1), hdr("Date", d1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.stored.Clone()
			got := Freshen(tt.stored, tt.nm)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.stored, before) {
				t.Errorf("stored header modified: %v", tt.stored)
			}
		})
	}
}
