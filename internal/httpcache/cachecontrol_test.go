package httpcache

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// delta is a valid delta-seconds directive of s seconds.
func delta(s int64) Delta { return Delta{Present: true, Value: time.Duration(s) * sec} }

var invalid = Delta{Present: true, Invalid: true}

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want Directives
	}{
		{"empty", nil, Directives{}},
		{"empty line", []string{""}, Directives{}},
		{"max-age", []string{"max-age=60"}, Directives{MaxAge: delta(60)}},
		{"uppercase", []string{"MAX-AGE=60, PUBLIC"}, Directives{MaxAge: delta(60), Public: true}},
		{"mixed case", []string{"No-Cache, S-MaxAge=5"}, Directives{NoCache: true, SMaxAge: delta(5)}},
		{"quoted delta", []string{`max-age="60"`}, Directives{MaxAge: delta(60)}},
		{"duplicate same value", []string{"max-age=60, max-age=60"}, Directives{MaxAge: invalid}},
		{"duplicate across lines", []string{"max-age=60", "max-age=120"}, Directives{MaxAge: invalid}},
		{"duplicate s-maxage", []string{"s-maxage=1,s-maxage=2"}, Directives{SMaxAge: invalid}},
		{"non-numeric", []string{"max-age=abc"}, Directives{MaxAge: invalid}},
		{"negative", []string{"max-age=-1"}, Directives{MaxAge: invalid}},
		{"plus sign", []string{"max-age=+60"}, Directives{MaxAge: invalid}},
		{"fraction", []string{"max-age=1.5"}, Directives{MaxAge: invalid}},
		{"missing argument", []string{"max-age"}, Directives{MaxAge: invalid}},
		{"empty argument", []string{"max-age="}, Directives{MaxAge: invalid}},
		{"quoted with space", []string{`max-age="6 0"`}, Directives{MaxAge: invalid}},
		{"token with junk", []string{"max-age=60 s, public"}, Directives{MaxAge: invalid, Public: true}},
		{"leading zeros", []string{"max-age=060"}, Directives{MaxAge: delta(60)}},
		{"zero", []string{"max-age=0"}, Directives{MaxAge: delta(0)}},
		{"largest below clamp", []string{"max-age=2147483647"}, Directives{MaxAge: delta(2147483647)}},
		{"clamp at 2^31", []string{"max-age=2147483648"}, Directives{MaxAge: Delta{Present: true, Value: MaxDelta}}},
		{"clamp overflow", []string{"max-age=99999999999999999999999"}, Directives{MaxAge: Delta{Present: true, Value: MaxDelta}}},
		{"spaces around equals", []string{"max-age = 60"}, Directives{MaxAge: delta(60)}},
		{"tabs and stray commas", []string{" ,\tmax-age=5 ,, ,public,"}, Directives{MaxAge: delta(5), Public: true}},
		{"no-cache", []string{"no-cache"}, Directives{NoCache: true}},
		{"no-cache field", []string{`no-cache="Set-Cookie"`}, Directives{NoCache: true, NoCacheFields: []string{"Set-Cookie"}}},
		{"no-cache fields canonical", []string{`no-cache="set-cookie, x-foo ,SET-COOKIE"`}, Directives{NoCache: true, NoCacheFields: []string{"Set-Cookie", "X-Foo"}}},
		{"no-cache token field", []string{"no-cache=set-cookie"}, Directives{NoCache: true, NoCacheFields: []string{"Set-Cookie"}}},
		{"no-cache qualified then bare", []string{`no-cache="Set-Cookie", no-cache`}, Directives{NoCache: true}},
		{"no-cache empty list", []string{`no-cache=""`}, Directives{NoCache: true}},
		{"no-cache quote then garbage", []string{`no-cache="A"x, public`}, Directives{NoCache: true, Public: true}},
		{"private bare", []string{"private"}, Directives{Private: true}},
		{"private comma in quotes", []string{`private="Set-Cookie, Authorization", max-age=5`}, Directives{Private: true, PrivateFields: []string{"Set-Cookie", "Authorization"}, MaxAge: delta(5)}},
		{"private two qualified", []string{`private="A"`, `private="B"`}, Directives{Private: true, PrivateFields: []string{"A", "B"}}},
		{"private unterminated", []string{`private="Set-Cookie, max-age=5`}, Directives{Private: true}},
		{"escaped quote", []string{`no-cache="X-\"A\\B"`}, Directives{NoCache: true, NoCacheFields: []string{`X-"A\B`}}},
		{"booleans", []string{"no-store, public, must-revalidate, proxy-revalidate, must-understand, no-transform, immutable, only-if-cached"},
			Directives{NoStore: true, Public: true, MustRevalidate: true, ProxyRevalidate: true, MustUnderstand: true, NoTransform: true, Immutable: true, OnlyIfCached: true}},
		{"boolean with argument", []string{"public=yes, no-store=1"}, Directives{Public: true, NoStore: true}},
		{"max-stale bare", []string{"max-stale"}, Directives{MaxStale: Delta{Present: true, Value: MaxDelta}}},
		{"max-stale value", []string{"max-stale=30"}, Directives{MaxStale: delta(30)}},
		{"max-stale invalid", []string{"max-stale=x"}, Directives{MaxStale: invalid}},
		{"min-fresh", []string{"min-fresh=10"}, Directives{MinFresh: delta(10)}},
		{"rfc 5861", []string{"max-age=600, stale-while-revalidate=30, stale-if-error=86400"},
			Directives{MaxAge: delta(600), StaleWhileRevalidate: delta(30), StaleIfError: delta(86400)}},
		{"stale-if-error invalid", []string{"stale-if-error=soon"}, Directives{StaleIfError: invalid}},
		{"extensions ignored", []string{`community="UCI", foo=bar, baz`}, Directives{}},
		{"extension with comma in quotes", []string{`foo="a, max-age=9", max-age=3`}, Directives{MaxAge: delta(3)}},
		{"several lines", []string{"public", "max-age=10", "s-maxage=20"}, Directives{Public: true, MaxAge: delta(10), SMaxAge: delta(20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCacheControl(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseCacheControl(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDirectivesString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"canonical order", "public, MAX-AGE=60, s-maxage=30", "max-age=60, s-maxage=30, public"},
		{"invalid renders zero", "max-age=x", "max-age=0"},
		{"max-stale any", "max-stale", "max-stale"},
		{"max-stale value", "max-stale=5", "max-stale=5"},
		{"field lists", `no-cache="set-cookie,x-a", private="X-B"`, `no-cache="Set-Cookie, X-A", private="X-B"`},
		{"escaped field", `no-cache="a\"b"`, `no-cache="a\"b"`},
		{"rfc 5861", "stale-if-error=1, stale-while-revalidate=2, immutable", "immutable, stale-while-revalidate=2, stale-if-error=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCacheControl([]string{tt.in}).String(); got != tt.want {
				t.Errorf("String of %q = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// withoutInvalid clears the Invalid flags, which String cannot render.
func withoutInvalid(d Directives) Directives {
	for _, p := range []*Delta{&d.MaxAge, &d.SMaxAge, &d.MaxStale, &d.MinFresh, &d.StaleWhileRevalidate, &d.StaleIfError} {
		p.Invalid = false
	}
	return d
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{
		"", "max-age=60", `MAX-AGE="60", public`, "max-age=1, max-age=2", `no-cache="Set-Cookie, X-A"`,
		`private="a\"b`, "max-stale", "max-stale=99999999999999999999", "s-maxage = 5 ,\tno-store",
		`foo="a, b", immutable`, "must-understand, no-store\nstale-if-error=10", `no-cache="", private=x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseCacheControl(strings.Split(s, "\n"))
		r := d.String()
		d2 := ParseCacheControl([]string{r})
		if !reflect.DeepEqual(withoutInvalid(d), withoutInvalid(d2)) {
			t.Fatalf("round trip of %q through %q:\n got %+v\nwant %+v", s, r, d2, d)
		}
		if r2 := d2.String(); r2 != r {
			t.Fatalf("String not idempotent for %q: %q then %q", s, r, r2)
		}
	})
}
