package httpcache

import (
	"net/http"
	"testing"
	"time"
)

// stored is a response received at t0, for a request sent at t0, with a
// Date of t0 unless resp sets one.
func stored(status int, resp, req http.Header) Stored {
	if resp.Get("Date") == "" {
		resp.Set("Date", httpDate(t0))
	}
	return Stored{Status: status, Header: resp, Request: req, Times: Times{Request: t0, Response: t0}}
}

func request(method string, h http.Header) *http.Request {
	return &http.Request{Method: method, Header: h}
}

func TestEvaluate(t *testing.T) {
	honor := Options{HonorClientNoCache: true}
	gzip := hdr("Accept-Encoding", "gzip")
	tests := []struct {
		name    string
		method  string
		req     http.Header
		status  int
		resp    http.Header
		stReq   http.Header // stored request header
		elapsed time.Duration
		opts    Options
		want    Decision
		reason  string
		fwd     string
	}{
		{"fresh", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 30 * sec, Options{}, Fresh, "fresh", ""},
		{"fresh last second", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 60*sec - 1, Options{}, Fresh, "fresh", ""},
		{"stale at lifetime", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 60 * sec, Options{}, Revalidate, "stale", FwdStale},
		{"empty method is get", "", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"head from get", "HEAD", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"post", "POST", hdr(), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Forward, "method", FwdMethod},
		{"no freshness information", "GET", hdr(), 200, hdr(), nil, 0, Options{}, Revalidate, "stale", FwdStale},
		{"invalid max-age", "GET", hdr(), 200, hdr("Cache-Control", "max-age=1m"), nil, 0, Options{}, Revalidate, "stale", FwdStale},
		{"upstream age makes stale", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60", "Age", "50"), nil, 15 * sec, Options{}, Revalidate, "stale", FwdStale},
		{"heuristic fresh", "GET", hdr(), 200, hdr("Last-Modified", httpDate(t0.Add(-240*time.Hour))), nil, 23 * time.Hour, Options{}, Fresh, "fresh", ""},
		{"heuristic stale after cap", "GET", hdr(), 200, hdr("Last-Modified", httpDate(t0.Add(-240*time.Hour))), nil, 24 * time.Hour, Options{}, Revalidate, "stale", FwdStale},
		{"no-cache response", "GET", hdr(), 200, hdr("Cache-Control", "no-cache, max-age=60"), nil, 0, Options{}, Revalidate, "no-cache", FwdStale},
		{"qualified no-cache response", "GET", hdr(), 200, hdr("Cache-Control", `no-cache="Set-Cookie", max-age=60`), nil, 0, Options{}, Revalidate, "no-cache", FwdStale},
		{"response pragma ignored", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60", "Pragma", "no-cache"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"authorization without permission", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Forward, "authorization", FwdRequest},
		{"authorization public", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "public, max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"authorization s-maxage", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "s-maxage=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"authorization must-revalidate", "GET", hdr("Authorization", "Basic x"), 200, hdr("Cache-Control", "must-revalidate, max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"vary match", "GET", gzip, 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept-Encoding"), gzip, 0, Options{}, Fresh, "fresh", ""},
		{"vary mismatch", "GET", hdr("Accept-Encoding", "br"), 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept-Encoding"), gzip, 0, Options{}, Forward, "vary", FwdVaryMiss},
		{"vary star", "GET", gzip, 200, hdr("Cache-Control", "max-age=60", "Vary", "*"), gzip, 0, Options{}, Forward, "vary", FwdVaryMiss},
		{"client no-cache ignored", "GET", hdr("Cache-Control", "no-cache"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"client no-cache honored", "GET", hdr("Cache-Control", "no-cache"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, honor, Revalidate, "client-no-cache", FwdRequest},
		{"client pragma honored", "GET", hdr("Pragma", "no-cache"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, honor, Revalidate, "client-no-cache", FwdRequest},
		{"client pragma ignored beside cache-control", "GET", hdr("Pragma", "no-cache", "Cache-Control", "no-transform"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, honor, Fresh, "fresh", ""},
		{"client max-age=0 ignored", "GET", hdr("Cache-Control", "max-age=0"), 200, hdr("Cache-Control", "max-age=60"), nil, sec, Options{}, Fresh, "fresh", ""},
		{"client max-age=0 honored", "GET", hdr("Cache-Control", "max-age=0"), 200, hdr("Cache-Control", "max-age=60"), nil, sec, honor, Revalidate, "client-max-age", FwdRequest},
		{"client max-age equal to age", "GET", hdr("Cache-Control", "max-age=30"), 200, hdr("Cache-Control", "max-age=60"), nil, 30 * sec, honor, Fresh, "fresh", ""},
		{"client min-fresh not met", "GET", hdr("Cache-Control", "min-fresh=30"), 200, hdr("Cache-Control", "max-age=60"), nil, 30 * sec, honor, Revalidate, "client-min-fresh", FwdRequest},
		{"client min-fresh met", "GET", hdr("Cache-Control", "min-fresh=29"), 200, hdr("Cache-Control", "max-age=60"), nil, 30 * sec, honor, Fresh, "fresh", ""},
		{"client max-stale honored", "GET", hdr("Cache-Control", "max-stale=10"), 200, hdr("Cache-Control", "max-age=60"), nil, 70 * sec, honor, StaleWhileRevalidate, "max-stale", ""},
		{"client max-stale exceeded", "GET", hdr("Cache-Control", "max-stale=10"), 200, hdr("Cache-Control", "max-age=60"), nil, 70*sec + 1, honor, Revalidate, "stale", FwdStale},
		{"client max-stale any", "GET", hdr("Cache-Control", "max-stale"), 200, hdr("Cache-Control", "max-age=60"), nil, 48 * time.Hour, honor, StaleWhileRevalidate, "max-stale", ""},
		{"client max-stale ignored", "GET", hdr("Cache-Control", "max-stale"), 200, hdr("Cache-Control", "max-age=60"), nil, 70 * sec, Options{}, Revalidate, "stale", FwdStale},
		{"client max-stale against must-revalidate", "GET", hdr("Cache-Control", "max-stale"), 200, hdr("Cache-Control", "max-age=60, must-revalidate"), nil, 70 * sec, honor, Revalidate, "must-revalidate", FwdStale},
		{"swr at expiry", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30"), nil, 60 * sec, Options{}, StaleWhileRevalidate, "stale-while-revalidate", ""},
		{"swr last instant", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30"), nil, 90 * sec, Options{}, StaleWhileRevalidate, "stale-while-revalidate", ""},
		{"swr just past", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30"), nil, 90*sec + 1, Options{}, Revalidate, "stale", FwdStale},
		{"swr with upstream age", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30", "Age", "80"), nil, 10 * sec, Options{}, StaleWhileRevalidate, "stale-while-revalidate", ""},
		{"swr invalid", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=x"), nil, 61 * sec, Options{}, Revalidate, "stale", FwdStale},
		{"swr must-revalidate", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30, must-revalidate"), nil, 70 * sec, Options{}, Revalidate, "must-revalidate", FwdStale},
		{"swr proxy-revalidate", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30, proxy-revalidate"), nil, 70 * sec, Options{}, Revalidate, "proxy-revalidate", FwdStale},
		{"swr s-maxage", "GET", hdr(), 200, hdr("Cache-Control", "s-maxage=60, stale-while-revalidate=30"), nil, 70 * sec, Options{}, Revalidate, "s-maxage", FwdStale},
		{"swr s-maxage allowed", "GET", hdr(), 200, hdr("Cache-Control", "s-maxage=60, stale-while-revalidate=30"), nil, 70 * sec, Options{SMaxAgeAllowsStale: true}, StaleWhileRevalidate, "stale-while-revalidate", ""},
		{"swr s-maxage allowed but must-revalidate", "GET", hdr(), 200, hdr("Cache-Control", "s-maxage=60, stale-while-revalidate=30, must-revalidate"), nil, 70 * sec, Options{SMaxAgeAllowsStale: true}, Revalidate, "must-revalidate", FwdStale},
		{"s-maxage fresh beats stale max-age", "GET", hdr(), 200, hdr("Cache-Control", "max-age=10, s-maxage=60"), nil, 30 * sec, Options{}, Fresh, "fresh", ""},
		{"only-if-cached fresh", "GET", hdr("Cache-Control", "only-if-cached"), 200, hdr("Cache-Control", "max-age=60"), nil, 0, Options{}, Fresh, "fresh", ""},
		{"only-if-cached stale", "GET", hdr("Cache-Control", "only-if-cached"), 200, hdr("Cache-Control", "max-age=60"), nil, 61 * sec, Options{}, GatewayTimeout, "only-if-cached", ""},
		{"only-if-cached swr", "GET", hdr("Cache-Control", "only-if-cached"), 200, hdr("Cache-Control", "max-age=60, stale-while-revalidate=30"), nil, 61 * sec, Options{}, StaleWhileRevalidate, "stale-while-revalidate", ""},
		{"only-if-cached vary miss", "GET", hdr("Cache-Control", "only-if-cached"), 200, hdr("Cache-Control", "max-age=60", "Vary", "*"), nil, 0, Options{}, GatewayTimeout, "only-if-cached", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stored(tt.status, tt.resp, tt.stReq)
			got, info := Evaluate(request(tt.method, tt.req), s, t0.Add(tt.elapsed), tt.opts)
			if got != tt.want || info.Reason != tt.reason || info.Fwd != tt.fwd {
				t.Errorf("Evaluate = %v (%q, fwd %q), want %v (%q, fwd %q); info %+v", got, info.Reason, info.Fwd, tt.want, tt.reason, tt.fwd, info)
			}
		})
	}
}

func TestEvaluateInfo(t *testing.T) {
	tests := []struct {
		name    string
		resp    http.Header
		elapsed time.Duration
		want    Info
	}{
		{"fresh", hdr("Cache-Control", "max-age=60"), 18 * sec, Info{Age: 18 * sec, Lifetime: 60 * sec, TTL: 42 * sec, Reason: "fresh"}},
		{"stale", hdr("Cache-Control", "max-age=60", "Age", "10"), 55 * sec, Info{Age: 65 * sec, Lifetime: 60 * sec, TTL: -5 * sec, Fwd: FwdStale, Reason: "stale"}},
		{"heuristic", hdr("Last-Modified", httpDate(t0.Add(-1000*sec))), 40 * sec, Info{Age: 40 * sec, Lifetime: 100 * sec, Heuristic: true, TTL: 60 * sec, Reason: "fresh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, info := Evaluate(request("GET", hdr()), stored(200, tt.resp, nil), t0.Add(tt.elapsed), Options{})
			if info != tt.want {
				t.Errorf("Info = %+v, want %+v", info, tt.want)
			}
		})
	}
}

func TestStaleIfErrorAllowed(t *testing.T) {
	tests := []struct {
		name    string
		req     *http.Request
		resp    string // Cache-Control of the stored response
		elapsed time.Duration
		opts    Options
		want    bool
	}{
		{"fresh", nil, "max-age=60", 30 * sec, Options{}, true},
		{"stale without permission", nil, "max-age=60", 61 * sec, Options{}, false},
		{"within response window", nil, "max-age=60, stale-if-error=60", 120 * sec, Options{}, true},
		{"past response window", nil, "max-age=60, stale-if-error=60", 120*sec + 1, Options{}, false},
		{"swr is not sie", nil, "max-age=60, stale-while-revalidate=600", 70 * sec, Options{}, false},
		{"must-revalidate", nil, "max-age=60, stale-if-error=600, must-revalidate", 70 * sec, Options{}, false},
		{"must-revalidate while fresh", nil, "max-age=60, must-revalidate", 30 * sec, Options{}, true},
		{"proxy-revalidate", nil, "max-age=60, stale-if-error=600, proxy-revalidate", 70 * sec, Options{}, false},
		{"s-maxage", nil, "s-maxage=60, stale-if-error=600", 70 * sec, Options{}, false},
		{"s-maxage allowed", nil, "s-maxage=60, stale-if-error=600", 70 * sec, Options{SMaxAgeAllowsStale: true}, true},
		{"no-cache even fresh", nil, "no-cache, max-age=60, stale-if-error=600", 10 * sec, Options{}, false},
		{"request window", request("GET", hdr("Cache-Control", "stale-if-error=30")), "max-age=60", 90 * sec, Options{}, true},
		{"past request window", request("GET", hdr("Cache-Control", "stale-if-error=30")), "max-age=60", 91 * sec, Options{}, false},
		{"request window against must-revalidate", request("GET", hdr("Cache-Control", "stale-if-error=30")), "max-age=60, must-revalidate", 70 * sec, Options{}, false},
		{"larger request window", request("GET", hdr("Cache-Control", "stale-if-error=100")), "max-age=60, stale-if-error=10", 110 * sec, Options{}, true},
		{"invalid window", nil, "max-age=60, stale-if-error=x", 61 * sec, Options{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := stored(200, hdr("Cache-Control", tt.resp), nil)
			if got := StaleIfErrorAllowed(s, tt.req, t0.Add(tt.elapsed), tt.opts); got != tt.want {
				t.Errorf("StaleIfErrorAllowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecisionString(t *testing.T) {
	tests := []struct {
		d    Decision
		want string
	}{
		{Forward, "forward"},
		{Fresh, "fresh"},
		{StaleWhileRevalidate, "stale-while-revalidate"},
		{Revalidate, "revalidate"},
		{GatewayTimeout, "gateway-timeout"},
		{Decision(9), "decision(9)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}
