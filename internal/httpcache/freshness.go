package httpcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxHeuristic caps a heuristic freshness lifetime (RFC 9111 §4.2.2).
const maxHeuristic = 24 * time.Hour

// FreshnessLifetime returns the freshness lifetime of a response with the
// given status, header and Cache-Control directives (RFC 9111 §4.2.1), and
// whether it was computed heuristically (§4.2.2). The first that applies:
//
//   - s-maxage (§5.2.2.10), then max-age (§5.2.2.1);
//   - Expires minus Date (§5.3). An invalid Expires (such as "0"), a
//     repeated Expires, or a missing or invalid Date gives 0: the response
//     is already expired. Callers add a missing Date with EnsureDate;
//   - if the status is heuristically cacheable (RFC 9110 §15.1) or the
//     response is public, 10% of Date minus Last-Modified, in whole
//     seconds and at most 24 hours;
//   - otherwise 0.
func FreshnessLifetime(status int, h http.Header, d Directives) (lifetime time.Duration, heuristic bool) {
	switch {
	case d.SMaxAge.Present:
		return d.SMaxAge.Value, false
	case d.MaxAge.Present:
		return d.MaxAge.Value, false
	}
	if exp := h.Values("Expires"); len(exp) > 0 {
		e, err := http.ParseTime(trimOWS(exp[0]))
		date, ok := headerDate(h, "Date")
		if len(exp) > 1 || err != nil || !ok || !e.After(date) {
			return 0, false
		}
		return min(e.Sub(date), MaxDelta), false
	}
	if !heuristicStatus(status) && !d.Public {
		return 0, false
	}
	lm, ok1 := headerDate(h, "Last-Modified")
	date, ok2 := headerDate(h, "Date")
	if !ok1 || !ok2 || !lm.Before(date) {
		return 0, false
	}
	return min((date.Sub(lm) / 10).Truncate(time.Second), maxHeuristic), true
}

// Times records when the cache sent the request that produced a stored
// response and when it received the response (RFC 9111 §4.2.3
// request_time and response_time).
type Times struct {
	Request, Response time.Time
}

// CurrentAge returns the age at now of a response with header h exchanged
// at times t (RFC 9111 §4.2.3):
//
//	apparent_age = max(0, response_time - date_value)
//	response_delay = response_time - request_time
//	corrected_age_value = age_value + response_delay
//	corrected_initial_age = max(apparent_age, corrected_age_value)
//	resident_time = now - response_time
//	current_age = corrected_initial_age + resident_time
//
// age_value is the first Age value; an invalid one (not a non-negative
// integer) counts as 0. A missing Date gives an apparent_age of 0, a zero
// t.Request a response_delay of 0. The result is at most MaxDelta.
func CurrentAge(h http.Header, t Times, now time.Time) time.Duration {
	return AgeAt(InitialAge(h, t), t.Response, now)
}

// InitialAge returns the corrected initial age of a response with header
// h exchanged at times t (RFC 9111 §4.2.3): what CurrentAge adds the
// resident time to. It does not change while the response is stored, so
// a cache may compute it once and call AgeAt on every hit.
func InitialAge(h http.Header, t Times) time.Duration {
	var apparent, delay time.Duration
	if date, ok := headerDate(h, "Date"); ok {
		apparent = clamp(t.Response.Sub(date))
	}
	if !t.Request.IsZero() {
		delay = clamp(t.Response.Sub(t.Request))
	}
	return max(apparent, ageValue(h)+delay)
}

// AgeAt returns the current age at now of a response received at
// response with the corrected initial age initial (InitialAge).
func AgeAt(initial time.Duration, response, now time.Time) time.Duration {
	return min(initial+clamp(now.Sub(response)), MaxDelta)
}

// clamp limits d to [0, MaxDelta].
func clamp(d time.Duration) time.Duration { return min(max(d, 0), MaxDelta) }

// ageValue parses the Age field (RFC 9111 §5.1), using its first value.
func ageValue(h http.Header) time.Duration {
	v := h.Values("Age")
	if len(v) == 0 {
		return 0
	}
	first, _, _ := strings.Cut(v[0], ",")
	d, _ := parseDelta(trimOWS(first))
	return d
}

// AgeHeader formats an age as the value of an Age field: whole seconds,
// rounded down, between 0 and 2147483648 (RFC 9111 §5.1).
func AgeHeader(d time.Duration) string {
	return strconv.FormatInt(int64(clamp(d)/time.Second), 10)
}
