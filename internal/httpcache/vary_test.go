package httpcache

import (
	"net/http"
	"testing"
)

func TestVaryKey(t *testing.T) {
	tests := []struct {
		name string
		vary []string
		req  http.Header
		want string
		ok   bool
	}{
		{"no vary", nil, hdr("Accept", "x"), "", true},
		{"one field", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), `accept-encoding="gzip"`, true},
		{"absent field", []string{"Accept-Encoding"}, hdr(), "accept-encoding", true},
		{"empty field", []string{"Accept-Encoding"}, hdr("Accept-Encoding", ""), `accept-encoding=""`, true},
		{"star", []string{"*"}, hdr(), "", false},
		{"star in list", []string{"Accept-Encoding, *"}, hdr(), "", false},
		{"star on second line", []string{"Accept", " * "}, hdr(), "", false},
		{"sorted across lines", []string{"Accept-Language", "Accept-Encoding"}, hdr("Accept-Encoding", "br", "Accept-Language", "en"), `accept-encoding="br";accept-language="en"`, true},
		{"names case-insensitive", []string{"ACCEPT-ENCODING, accept-encoding"}, hdr("Accept-Encoding", "gzip"), `accept-encoding="gzip"`, true},
		{"empty list elements", []string{", Accept ,,"}, hdr("Accept", "a/b"), `accept="a/b"`, true},
		{"whitespace collapsed", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "  gzip ,\tdeflate  br "), `accept-encoding="gzip, deflate br"`, true},
		{"lines joined", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip", "Accept-Encoding", "br"), `accept-encoding="gzip, br"`, true},
		{"quoted whitespace kept", []string{"X-Pref"}, hdr("X-Pref", `a;q="x  ,y"  ,b`), `x-pref="a;q=\"x  ,y\", b"`, true},
		{"value quoted safely", []string{"X-A"}, hdr("X-A", `"`), `x-a="\""`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := VaryKey(tt.vary, tt.req)
			if got != tt.want || ok != tt.ok {
				t.Errorf("VaryKey = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestVaryMatches(t *testing.T) {
	tests := []struct {
		name      string
		vary      []string
		storedReq http.Header
		req       http.Header
		want      bool
	}{
		{"same value", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "gzip"), true},
		{"lower-case vary", []string{"accept-encoding"}, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "gzip"), true},
		{"different value", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br"), false},
		{"value case matters", []string{"Accept-Language"}, hdr("Accept-Language", "en"), hdr("Accept-Language", "EN"), false},
		{"missing in both", []string{"Accept-Encoding"}, hdr(), hdr(), true},
		{"missing versus empty", []string{"Accept-Encoding"}, hdr(), hdr("Accept-Encoding", ""), false},
		{"missing versus present", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip"), hdr(), false},
		{"whitespace differences", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip,deflate"), hdr("Accept-Encoding", "gzip ,  deflate"), true},
		{"lines versus one line", []string{"Accept-Encoding"}, hdr("Accept-Encoding", "gzip", "Accept-Encoding", "br"), hdr("Accept-Encoding", "gzip, br"), true},
		{"quoted whitespace differs", []string{"X-Pref"}, hdr("X-Pref", `"a b"`), hdr("X-Pref", `"a  b"`), false},
		{"star never matches", []string{"*"}, hdr(), hdr(), false},
		{"unnamed field ignored", []string{"Accept"}, hdr("Accept", "a", "Cookie", "x=1"), hdr("Accept", "a", "Cookie", "x=2"), true},
		{"no vary", nil, hdr("Accept", "a"), hdr("Accept", "b"), true},
		{"nil stored request", []string{"Accept"}, nil, hdr(), true},
		{"two fields one differs", []string{"Accept, Accept-Language"}, hdr("Accept", "a", "Accept-Language", "en"), hdr("Accept", "a", "Accept-Language", "de"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VaryMatches(tt.vary, tt.storedReq, tt.req); got != tt.want {
				t.Errorf("VaryMatches = %v, want %v", got, tt.want)
			}
		})
	}
}
