package httpcache_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/geocdn/geocdn/internal/httpcache"
)

func ExampleEvaluate() {
	received := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	resp := http.Header{"Cache-Control": {"max-age=60, stale-while-revalidate=30"}}
	httpcache.EnsureDate(resp, received)
	s := httpcache.Stored{Status: 200, Header: resp, Times: httpcache.Times{Request: received, Response: received}}
	req := &http.Request{Method: "GET", Header: http.Header{}}
	for _, after := range []time.Duration{18 * time.Second, 75 * time.Second, 2 * time.Minute} {
		d, info := httpcache.Evaluate(req, s, received.Add(after), httpcache.Options{})
		cs := httpcache.CacheStatus{Cache: "geocdn", Hit: info.Fwd == "", Fwd: info.Fwd, TTL: info.TTL, TTLSet: true}
		fmt.Printf("%-22v Age: %s  Cache-Status: %s\n", d, httpcache.AgeHeader(info.Age), cs)
	}
	// Output:
	// fresh                  Age: 18  Cache-Status: geocdn; hit; ttl=42
	// stale-while-revalidate Age: 75  Cache-Status: geocdn; hit; ttl=-15
	// revalidate             Age: 120  Cache-Status: geocdn; fwd=stale; ttl=-60
}
