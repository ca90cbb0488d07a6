package httpcache

import (
	"net/http"
	"time"
)

// t0 is the fixed time every test is built around; no test reads the clock.
var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

const sec = time.Second

// httpDate formats t as an IMF-fixdate.
func httpDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// hdr builds a header from name, value pairs; a name may repeat.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
