package httpcache

import (
	"net/http"
	"reflect"
	"testing"
)

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"nothing to remove", hdr("Content-Type", "text/plain"), hdr("Content-Type", "text/plain")},
		{"standard fields", hdr("Connection", "keep-alive", "Keep-Alive", "timeout=5", "Te", "trailers", "Trailer", "X-Sum",
			"Transfer-Encoding", "chunked", "Upgrade", "h2c", "Proxy-Authenticate", "Basic", "Proxy-Authorization", "Basic x",
			"Proxy-Connection", "close", "Etag", `"a"`), hdr("Etag", `"a"`)},
		{"named by connection", hdr("Connection", "X-Trace, x-debug", "X-Trace", "1", "X-Debug", "2", "X-Keep", "3"), hdr("X-Keep", "3")},
		{"connection on several lines", hdr("Connection", "X-A", "Connection", " X-B ,,", "X-A", "1", "X-B", "2", "Date", "d"), hdr("Date", "d")},
		{"connection close", hdr("Connection", "close", "Cache-Control", "max-age=1"), hdr("Cache-Control", "max-age=1")},
		{"end-to-end kept", hdr("Cache-Control", "public", "Vary", "Accept", "Set-Cookie", "a=b"), hdr("Cache-Control", "public", "Vary", "Accept", "Set-Cookie", "a=b")},
		{"empty", http.Header{}, http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			RemoveHopByHop(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Errorf("got %v, want %v", tt.in, tt.want)
			}
		})
	}
}

func TestStorableHeader(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"nil", nil, http.Header{}},
		{"hop-by-hop dropped", hdr("Connection", "X-A", "X-A", "1", "Keep-Alive", "t", "Etag", `"e"`), hdr("Etag", `"e"`)},
		{"qualified private dropped", hdr("Cache-Control", `private="Set-Cookie, X-User"`, "Set-Cookie", "s=1", "X-User", "u", "X-Other", "o"),
			hdr("Cache-Control", `private="Set-Cookie, X-User"`, "X-Other", "o")},
		{"qualified no-cache kept", hdr("Cache-Control", `no-cache="Set-Cookie"`, "Set-Cookie", "s=1"), hdr("Cache-Control", `no-cache="Set-Cookie"`, "Set-Cookie", "s=1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.in.Clone()
			got := StorableHeader(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.in, before) {
				t.Errorf("input modified: %v", tt.in)
			}
		})
	}
}

func TestEnsureDate(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want string
	}{
		{"missing", hdr(), httpDate(t0)},
		{"invalid", hdr("Date", "yesterday"), httpDate(t0)},
		{"valid kept", hdr("Date", httpDate(t0.Add(-sec))), httpDate(t0.Add(-sec))},
		{"obsolete format kept", hdr("Date", "Sunday, 06-Nov-94 08:49:37 GMT"), "Sunday, 06-Nov-94 08:49:37 GMT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			EnsureDate(tt.in, t0.Local())
			if got := tt.in.Get("Date"); got != tt.want {
				t.Errorf("Date = %q, want %q", got, tt.want)
			}
		})
	}
}
