package pki

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		name    string
		uri     string
		want    Identity
		wantErr string // empty: must succeed
	}{
		{name: "edge", uri: "geocdn://edge/fra-1", want: Identity{RoleEdge, "fra-1"}},
		{name: "origin", uri: "geocdn://origin/o1", want: Identity{RoleOrigin, "o1"}},
		{name: "all id chars", uri: "geocdn://edge/A-z_0.9", want: Identity{RoleEdge, "A-z_0.9"}},
		{name: "max length id", uri: "geocdn://edge/" + strings.Repeat("a", 64), want: Identity{RoleEdge, strings.Repeat("a", 64)}},
		{name: "bad scheme", uri: "https://edge/fra-1", wantErr: "scheme"},
		{name: "bad role", uri: "geocdn://router/fra-1", wantErr: "role"},
		{name: "role case", uri: "geocdn://EDGE/fra-1", wantErr: "role"},
		{name: "empty role", uri: "geocdn:///fra-1", wantErr: "role"},
		{name: "empty id", uri: "geocdn://edge/", wantErr: "empty node id"},
		{name: "no path", uri: "geocdn://edge", wantErr: "one segment"},
		{name: "id with slash", uri: "geocdn://edge/fra/1", wantErr: "one segment"},
		{name: "trailing slash", uri: "geocdn://edge/fra-1/", wantErr: "one segment"},
		{name: "too long", uri: "geocdn://edge/" + strings.Repeat("a", 65), wantErr: "longer than 64"},
		{name: "dot dot id", uri: "geocdn://edge/..", wantErr: "dot segment"},
		{name: "dot id", uri: "geocdn://edge/.", wantErr: "dot segment"},
		{name: "space in id", uri: "geocdn://edge/fra%201", wantErr: "at byte 3"},
		{name: "escaped id", uri: "geocdn://edge/%66ra-1", wantErr: "only geocdn://"},
		{name: "port", uri: "geocdn://edge:443/fra-1", wantErr: "role"},
		{name: "user", uri: "geocdn://u@edge/fra-1", wantErr: "only geocdn://"},
		{name: "query", uri: "geocdn://edge/fra-1?x=1", wantErr: "only geocdn://"},
		{name: "empty query", uri: "geocdn://edge/fra-1?", wantErr: "only geocdn://"},
		{name: "fragment", uri: "geocdn://edge/fra-1#x", wantErr: "only geocdn://"},
		{name: "opaque", uri: "geocdn:edge/fra-1", wantErr: "only geocdn://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.uri)
			if err != nil {
				t.Fatalf("url.Parse(%q): %v", tt.uri, err)
			}
			got, err := ParseIdentity(u)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseIdentity(%q) = %v, %v; want error containing %q", tt.uri, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseIdentity(%q) = %v, %v; want %v", tt.uri, got, err, tt.want)
			}
			if s := got.String(); s != tt.uri {
				t.Errorf("String() = %q, want %q", s, tt.uri)
			}
		})
	}
	if _, err := ParseIdentity(nil); err == nil {
		t.Error("ParseIdentity(nil) = nil error, want error")
	}
}

func TestIdentityURIRoundTrip(t *testing.T) {
	for _, id := range []Identity{{RoleEdge, "e"}, {RoleOrigin, "origin-1.eu_west"}} {
		u, err := url.Parse(id.URI().String())
		if err != nil {
			t.Fatalf("url.Parse(%v): %v", id, err)
		}
		got, err := ParseIdentity(u)
		if err != nil || got != id {
			t.Errorf("ParseIdentity(%v.URI()) = %v, %v; want %v", id, got, err, id)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "fra-1", "A.b_c-9", strings.Repeat("x", 64)} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "a b", "é", "a\x00", strings.Repeat("x", 65), "a:b", "a%2F"} {
		if err := ValidID(id); err == nil {
			t.Errorf("ValidID(%q) = nil, want error", id)
		}
	}
}
