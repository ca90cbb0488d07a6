package cluster

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The shared-cache conformance table (RFC 9111, RFC 5861, RFC 9211): a
// real origin and edge in front of a scripted upstream. Each case is a
// URL of its own; the upstream answers it with the case's status and
// fields, and answers a conditional request matching the case's ETag
// with 304. Two requests go to the edge; the table says what the second
// must be: from the cache or not, with what status, Cache-Status and Age,
// and how many requests the upstream saw in all. Time is in the fields
// (Date, Age, Expires, Last-Modified), not in the clock: a response can
// arrive already stale, so no case waits.

// confCase is one row of the conformance table.
type confCase struct {
	name string
	// The upstream's response: status (200 if zero), fields (Date is now
	// unless given; an empty value removes a field) and, for 200, a body.
	status int
	resp   map[string]string
	// down makes the upstream answer 503 to every request after the
	// first (a revalidation that fails).
	down bool
	// The two requests' fields.
	req1, req2 map[string]string
	// want: the second response's status (the upstream's if zero),
	// whether it came from the cache without asking the upstream (hit),
	// the upstream's request count after both, substrings of its
	// Cache-Status, and a lower bound of its Age (-1: no Age expected).
	status2  int
	hit      bool
	upstream int
	cs       []string
	minAge   int
}

func confCases() []confCase {
	now := time.Now().UTC()
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	var cases []confCase
	add := func(c confCase) { cases = append(cases, c) }

	// Statuses: heuristically cacheable ones are stored without explicit
	// freshness (with a Last-Modified to compute it from); others only
	// with it (RFC 9110 §15.1, RFC 9111 §4.2.2).
	heuristic := []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}
	other := []int{201, 202, 302, 303, 307, 400, 401, 403, 409, 500, 502, 503}
	for _, st := range heuristic {
		add(confCase{name: fmt.Sprintf("status %d, Last-Modified a week ago: heuristic hit", st), status: st,
			resp: map[string]string{"Last-Modified": date(-7 * 24 * time.Hour)}, hit: true, upstream: 1, cs: []string{"hit"}})
		add(confCase{name: fmt.Sprintf("status %d, max-age=60: hit", st), status: st,
			resp: map[string]string{"Cache-Control": "max-age=60"}, hit: true, upstream: 1, cs: []string{"hit"}})
	}
	for _, st := range other {
		add(confCase{name: fmt.Sprintf("status %d, no freshness: not stored", st), status: st,
			resp: map[string]string{"Last-Modified": date(-7 * 24 * time.Hour)}, upstream: 2, cs: []string{"stored=?0"}})
		if st != 302 && st != 303 && st != 307 && st != 401 {
			add(confCase{name: fmt.Sprintf("status %d, max-age=60: stored", st), status: st,
				resp: map[string]string{"Cache-Control": "max-age=60"}, hit: true, upstream: 1, cs: []string{"hit"}})
		}
	}
	add(confCase{name: "302 with max-age=60: stored", status: 302, resp: map[string]string{"Cache-Control": "max-age=60", "Location": "/elsewhere"},
		hit: true, upstream: 1, cs: []string{"hit"}})
	add(confCase{name: "307 with Expires an hour ahead: stored", status: 307, resp: map[string]string{"Expires": date(time.Hour), "Location": "/elsewhere"},
		hit: true, upstream: 1, cs: []string{"hit"}})

	// Freshness lifetime: s-maxage before max-age before Expires (§4.2.1).
	add(confCase{name: "s-maxage=60 beats max-age=0", resp: map[string]string{"Cache-Control": "max-age=0, s-maxage=60", "ETag": `"a"`}, hit: true, upstream: 1, cs: []string{"hit"}})
	add(confCase{name: "s-maxage=0 beats max-age=60", resp: map[string]string{"Cache-Control": "max-age=60, s-maxage=0", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale", "fwd-status=304"}})
	add(confCase{name: "max-age=60 beats a past Expires", resp: map[string]string{"Cache-Control": "max-age=60", "Expires": date(-time.Hour)}, hit: true, upstream: 1})
	add(confCase{name: "max-age=0 beats a future Expires", resp: map[string]string{"Cache-Control": "max-age=0", "Expires": date(time.Hour), "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "Expires an hour ahead: hit", resp: map[string]string{"Expires": date(time.Hour)}, hit: true, upstream: 1, cs: []string{"hit"}})
	add(confCase{name: "Expires in the past: revalidated", resp: map[string]string{"Expires": date(-time.Hour), "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale", "fwd-status=304"}})
	add(confCase{name: "Expires 0 (invalid): stale", resp: map[string]string{"Expires": "0", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "Expires garbage: stale", resp: map[string]string{"Expires": "tomorrow", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "max-age twice: stale", resp: map[string]string{"Cache-Control": "max-age=60, max-age=120", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "max-age not a number: stale", resp: map[string]string{"Cache-Control": "max-age=soon", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: `max-age="60" quoted: fresh`, resp: map[string]string{"Cache-Control": `max-age="60"`}, hit: true, upstream: 1})
	add(confCase{name: "MAX-AGE upper case: fresh", resp: map[string]string{"Cache-Control": "MAX-AGE=60"}, hit: true, upstream: 1})
	add(confCase{name: "max-age huge: clamped, fresh", resp: map[string]string{"Cache-Control": "max-age=99999999999"}, hit: true, upstream: 1})

	// Heuristic freshness: 10% of the Last-Modified age, at most a day,
	// only without explicit freshness (§4.2.2).
	add(confCase{name: "heuristic: modified 10 days ago, 12 hours old: fresh (capped at a day)", resp: map[string]string{"Last-Modified": date(-10 * 24 * time.Hour), "Age": "43200"}, hit: true, upstream: 1, minAge: 43200})
	add(confCase{name: "heuristic: modified 10 days ago, 25 hours old: stale (cap)", resp: map[string]string{"Last-Modified": date(-10 * 24 * time.Hour), "Age": "90000", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "heuristic: modified 100 s ago, 20 s old: stale (10% is 10 s)", resp: map[string]string{"Last-Modified": date(-100 * time.Second), "Age": "20", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "heuristic: no Last-Modified: stale at once", resp: map[string]string{"ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "heuristic not for 201", status: 201, resp: map[string]string{"Last-Modified": date(-10 * 24 * time.Hour)}, upstream: 2, cs: []string{"stored=?0"}})
	add(confCase{name: "public makes 201 heuristically fresh", status: 201, resp: map[string]string{"Cache-Control": "public", "Last-Modified": date(-10 * 24 * time.Hour)}, hit: true, upstream: 1})

	// Age (§4.2.3): the upstream's Age, and the gap between Date and
	// receipt, count.
	add(confCase{name: "Age 30 of max-age=60: fresh, Age at least 30", resp: map[string]string{"Cache-Control": "max-age=60", "Age": "30"}, hit: true, upstream: 1, minAge: 30})
	add(confCase{name: "Age 90 of max-age=60: stale on arrival", resp: map[string]string{"Cache-Control": "max-age=60", "Age": "90", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "Date 90 s ago with max-age=60: stale on arrival", resp: map[string]string{"Cache-Control": "max-age=60", "Date": date(-90 * time.Second), "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "Date 30 s ago: Age at least 30", resp: map[string]string{"Cache-Control": "max-age=60", "Date": date(-30 * time.Second)}, hit: true, upstream: 1, minAge: 30})
	add(confCase{name: "Date in the future: age 0, fresh", resp: map[string]string{"Cache-Control": "max-age=60", "Date": date(time.Hour)}, hit: true, upstream: 1})
	add(confCase{name: "Age not a number: ignored", resp: map[string]string{"Cache-Control": "max-age=60", "Age": "old"}, hit: true, upstream: 1})
	add(confCase{name: "Age negative: ignored", resp: map[string]string{"Cache-Control": "max-age=60", "Age": "-5"}, hit: true, upstream: 1})

	// Storing (§3, §5.2.2): no-store, private, no-cache.
	add(confCase{name: "no-store: not stored", resp: map[string]string{"Cache-Control": "no-store, max-age=60"}, upstream: 2, cs: []string{"stored=?0", "detail=no-store"}, minAge: -1})
	add(confCase{name: "private: not stored", resp: map[string]string{"Cache-Control": "private, max-age=60"}, upstream: 2, cs: []string{"stored=?0", "detail=private"}, minAge: -1})
	add(confCase{name: `private="Set-Cookie": stored without it`, resp: map[string]string{"Cache-Control": `private="X-Secret", max-age=60`, "X-Secret": "s"}, hit: true, upstream: 1})
	add(confCase{name: "no-cache: stored, revalidated every time", resp: map[string]string{"Cache-Control": "no-cache, max-age=60", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale", "fwd-status=304"}})
	add(confCase{name: `no-cache="Set-Cookie": revalidated every time`, resp: map[string]string{"Cache-Control": `no-cache="Set-Cookie", max-age=60`, "ETag": `"a"`}, upstream: 2, cs: []string{"fwd-status=304"}})
	add(confCase{name: "request no-store: not stored", resp: map[string]string{"Cache-Control": "max-age=60"}, req1: map[string]string{"Cache-Control": "no-store"}, upstream: 2})
	add(confCase{name: "Set-Cookie: not stored", resp: map[string]string{"Cache-Control": "max-age=60", "Set-Cookie": "a=1"}, upstream: 2, cs: []string{"detail=set-cookie"}, minAge: -1})
	add(confCase{name: "must-understand with 200: stored despite no-store", resp: map[string]string{"Cache-Control": "must-understand, no-store, max-age=60"}, hit: true, upstream: 1})

	// Revalidation (§4.3): validators go upstream; a 304 refreshes the
	// stored fields without the body.
	add(confCase{name: "stale with ETag: 304 serves the stored body", resp: map[string]string{"Cache-Control": "max-age=0", "ETag": `"v"`}, upstream: 2, cs: []string{"fwd=stale", "fwd-status=304"}})
	add(confCase{name: "stale with Last-Modified: If-Modified-Since", resp: map[string]string{"Cache-Control": "max-age=0", "Last-Modified": date(-time.Hour)}, upstream: 2, cs: []string{"fwd=stale", "fwd-status=304"}})
	add(confCase{name: "stale without validators: fetched whole", resp: map[string]string{"Cache-Control": "max-age=0"}, upstream: 2, cs: []string{"fwd=stale"}})

	// must-revalidate, proxy-revalidate, s-maxage: never served stale
	// (§4.2.4, §5.2.2.2, §5.2.2.8).
	add(confCase{name: "must-revalidate stale, upstream down: 503 passed on", resp: map[string]string{"Cache-Control": "max-age=0, must-revalidate, stale-if-error=600"}, down: true, status2: 503, upstream: 2})
	add(confCase{name: "proxy-revalidate stale, upstream down: 503 passed on", resp: map[string]string{"Cache-Control": "max-age=0, proxy-revalidate, stale-if-error=600"}, down: true, status2: 503, upstream: 2})
	add(confCase{name: "stale-if-error: upstream down, stale served", resp: map[string]string{"Cache-Control": "max-age=0, stale-if-error=600"}, down: true, status2: 200, hit: true, upstream: 2, cs: []string{"hit", "detail=stale-if-error"}})
	add(confCase{name: "stale-if-error over: 503 passed on", resp: map[string]string{"Cache-Control": "max-age=1, stale-if-error=10", "Age": "60"}, down: true, status2: 503, upstream: 2})
	add(confCase{name: "no stale-if-error, upstream down: 503 passed on", resp: map[string]string{"Cache-Control": "max-age=0"}, down: true, status2: 503, upstream: 2})
	add(confCase{name: "request stale-if-error: stale served", resp: map[string]string{"Cache-Control": "max-age=0"}, req2: map[string]string{"Cache-Control": "stale-if-error=600"}, down: true, status2: 200, hit: true, upstream: 2, cs: []string{"detail=stale-if-error"}})

	// stale-while-revalidate (RFC 5861 §3): served at once, revalidated
	// behind it.
	add(confCase{name: "stale-while-revalidate: stale hit", resp: map[string]string{"Cache-Control": "max-age=1, stale-while-revalidate=600", "Age": "5", "ETag": `"a"`}, hit: true, cs: []string{"hit", "detail=stale-while-revalidate"}, minAge: 5})
	add(confCase{name: "stale-while-revalidate over: revalidated first", resp: map[string]string{"Cache-Control": "max-age=1, stale-while-revalidate=10", "Age": "60", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})
	add(confCase{name: "stale-while-revalidate with must-revalidate: revalidated first", resp: map[string]string{"Cache-Control": "max-age=1, must-revalidate, stale-while-revalidate=600", "Age": "5", "ETag": `"a"`}, upstream: 2, cs: []string{"fwd=stale"}})

	// Authorization (§3.5): stored only where the response allows it.
	auth := map[string]string{"Authorization": "Bearer x"}
	add(confCase{name: "Authorization, max-age only: not stored", resp: map[string]string{"Cache-Control": "max-age=60"}, req1: auth, req2: auth, upstream: 2, cs: []string{"detail=authorization"}})
	add(confCase{name: "Authorization, public: stored", resp: map[string]string{"Cache-Control": "public, max-age=60"}, req1: auth, req2: auth, hit: true, upstream: 1})
	add(confCase{name: "Authorization, s-maxage: stored", resp: map[string]string{"Cache-Control": "s-maxage=60"}, req1: auth, req2: auth, hit: true, upstream: 1})
	add(confCase{name: "Authorization, must-revalidate: stored", resp: map[string]string{"Cache-Control": "must-revalidate, max-age=60"}, req1: auth, req2: auth, hit: true, upstream: 1})
	add(confCase{name: "stored without Authorization, asked with it: forwarded", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: auth, upstream: 2})

	// Vary (§4.1).
	add(confCase{name: "Vary: Accept-Encoding, same: hit", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"},
		req1: map[string]string{"Accept-Encoding": "gzip"}, req2: map[string]string{"Accept-Encoding": "gzip"}, hit: true, upstream: 1})
	add(confCase{name: "Vary: Accept-Encoding, different: forwarded", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"},
		req1: map[string]string{"Accept-Encoding": "gzip"}, req2: map[string]string{"Accept-Encoding": "br"}, upstream: 2, cs: []string{"fwd=vary-miss"}})
	add(confCase{name: "Vary: Accept-Encoding, absent both times: hit", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"}, hit: true, upstream: 1})
	add(confCase{name: "Vary: Accept-Encoding, then absent: forwarded", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"},
		req1: map[string]string{"Accept-Encoding": "gzip"}, upstream: 2, cs: []string{"fwd=vary-miss"}})
	add(confCase{name: "Vary names in another case: same values hit", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "accept-language"},
		req1: map[string]string{"Accept-Language": "en"}, req2: map[string]string{"Accept-Language": "en"}, hit: true, upstream: 1})
	add(confCase{name: "Vary: *: never matches", resp: map[string]string{"Cache-Control": "max-age=60", "Vary": "*"}, upstream: 2, cs: []string{"detail=vary-star"}})

	// Client directives are ignored by default (documented: one client
	// must not send every request through).
	for _, cc := range []string{"no-cache", "max-age=0", "no-cache, max-age=0"} {
		add(confCase{name: "client " + cc + ": still a hit", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: map[string]string{"Cache-Control": cc}, hit: true, upstream: 1})
	}
	add(confCase{name: "client Pragma: no-cache: still a hit", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: map[string]string{"Pragma": "no-cache"}, hit: true, upstream: 1})
	add(confCase{name: "client only-if-cached, stored: hit", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: map[string]string{"Cache-Control": "only-if-cached"}, hit: true, upstream: 1})
	add(confCase{name: "client only-if-cached, stale: 504", resp: map[string]string{"Cache-Control": "max-age=0", "ETag": `"a"`}, req2: map[string]string{"Cache-Control": "only-if-cached"}, status2: 504, upstream: 1})

	// Conditional requests and ranges against a pulled response.
	add(confCase{name: "If-None-Match of the stored ETag: 304 from cache", resp: map[string]string{"Cache-Control": "max-age=60", "ETag": `"c"`}, req2: map[string]string{"If-None-Match": `"c"`}, status2: 304, hit: true, upstream: 1})
	add(confCase{name: "If-None-Match of another ETag: 200 from cache", resp: map[string]string{"Cache-Control": "max-age=60", "ETag": `"c"`}, req2: map[string]string{"If-None-Match": `"d"`}, hit: true, upstream: 1})
	add(confCase{name: "If-Modified-Since after Last-Modified: 304", resp: map[string]string{"Cache-Control": "max-age=60", "Last-Modified": date(-time.Hour)}, req2: map[string]string{"If-Modified-Since": date(0)}, status2: 304, hit: true, upstream: 1})
	add(confCase{name: "Range: 206 from cache", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: map[string]string{"Range": "bytes=0-3"}, status2: 206, hit: true, upstream: 1})
	add(confCase{name: "Range beyond the end: 416", resp: map[string]string{"Cache-Control": "max-age=60"}, req2: map[string]string{"Range": "bytes=9999-"}, status2: 416, hit: true, upstream: 1})
	add(confCase{name: "If-Range with the ETag: 206", resp: map[string]string{"Cache-Control": "max-age=60", "ETag": `"r"`}, req2: map[string]string{"Range": "bytes=0-3", "If-Range": `"r"`}, status2: 206, hit: true, upstream: 1})
	add(confCase{name: "If-Range with another ETag: 200", resp: map[string]string{"Cache-Control": "max-age=60", "ETag": `"r"`}, req2: map[string]string{"Range": "bytes=0-3", "If-Range": `"s"`}, hit: true, upstream: 1})
	return cases
}

func TestSharedCacheConformance(t *testing.T) {
	cases := confCases()
	if len(cases) < 100 {
		t.Fatalf("the table has %d cases; it must have at least 100", len(cases))
	}
	byPath := map[string]*confCase{}
	var mu sync.Mutex
	served := map[string]int{}
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		c := byPath[r.URL.Path]
		mu.Lock()
		served[r.URL.Path]++
		n := served[r.URL.Path]
		mu.Unlock()
		if c == nil {
			http.Error(w, "no such case", http.StatusInternalServerError)
			return
		}
		if c.down && n > 1 {
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		for k, v := range c.resp {
			if v != "" {
				h.Set(k, v)
			}
		}
		if h.Get("Date") == "" {
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
		}
		etag, lm := c.resp["ETag"], c.resp["Last-Modified"]
		if (etag != "" && r.Header.Get("If-None-Match") == etag) || (etag == "" && lm != "" && r.Header.Get("If-Modified-Since") != "") {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		st := c.status
		if st == 0 {
			st = http.StatusOK
		}
		w.WriteHeader(st)
		if st != http.StatusNoContent {
			io.WriteString(w, "body of "+r.URL.Path)
		}
	})
	for i := range cases {
		byPath[fmt.Sprintf("/case/%d", i)] = &cases[i]
	}
	c := startPullCluster(t, site, twoEdges[:1])
	edgeURL := c.Edges()[0].URL
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := fmt.Sprintf("/case/%d", i)
			g1 := pullGet(t, edgeURL+path, tc.req1)
			want1 := tc.status
			if want1 == 0 {
				want1 = http.StatusOK
			}
			if g1.status != want1 {
				t.Fatalf("first response %d, want %d (Cache-Status %q)", g1.status, want1, g1.hdr.Get("Cache-Status"))
			}
			g2 := pullGet(t, edgeURL+path, tc.req2)
			want2 := tc.status2
			if want2 == 0 {
				want2 = want1
			}
			cs := g2.hdr.Get("Cache-Status")
			if g2.status != want2 {
				t.Errorf("second response %d, want %d (Cache-Status %q)", g2.status, want2, cs)
			}
			if hit := strings.HasPrefix(cs, "geocdn; hit"); hit != tc.hit {
				t.Errorf("second response from the cache: %v, want %v (Cache-Status %q)", hit, tc.hit, cs)
			}
			for _, s := range tc.cs {
				if !strings.Contains(cs, s) {
					t.Errorf("second Cache-Status %q lacks %q", cs, s)
				}
			}
			if tc.upstream > 0 {
				mu.Lock()
				n := served[path]
				mu.Unlock()
				if n != tc.upstream {
					t.Errorf("the upstream saw %d requests, want %d", n, tc.upstream)
				}
			}
			age := g2.hdr.Get("Age")
			switch {
			case tc.minAge < 0 && age != "":
				t.Errorf("Age %q on a response not from the cache", age)
			case tc.minAge > 0:
				if a, err := strconv.Atoi(age); err != nil || a < tc.minAge {
					t.Errorf("Age %q, want at least %d", age, tc.minAge)
				}
			}
			if tc.hit && want2 == http.StatusOK && string(g2.body) != "body of "+path {
				t.Errorf("body %q", g2.body)
			}
			if strings.Contains(tc.name, "stored without it") && g2.hdr.Get("X-Secret") != "" {
				t.Errorf("a field named by private was stored: X-Secret %q", g2.hdr.Get("X-Secret"))
			}
		})
	}
}
