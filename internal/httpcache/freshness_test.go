package httpcache

import (
	"net/http"
	"testing"
	"time"
)

func TestFreshnessLifetime(t *testing.T) {
	date := httpDate(t0)
	tests := []struct {
		name      string
		status    int
		h         http.Header
		want      time.Duration
		heuristic bool
	}{
		{"s-maxage beats max-age", 200, hdr("Date", date, "Cache-Control", "max-age=60, s-maxage=30"), 30 * sec, false},
		{"max-age beats expires", 200, hdr("Date", date, "Cache-Control", "max-age=60", "Expires", httpDate(t0.Add(time.Hour))), 60 * sec, false},
		{"s-maxage beats expires", 200, hdr("Date", date, "Cache-Control", "s-maxage=5", "Expires", httpDate(t0.Add(time.Hour))), 5 * sec, false},
		{"max-age zero", 200, hdr("Date", date, "Cache-Control", "max-age=0"), 0, false},
		{"invalid max-age ignores expires", 200, hdr("Date", date, "Cache-Control", "max-age=x", "Expires", httpDate(t0.Add(time.Hour))), 0, false},
		{"duplicate max-age", 200, hdr("Date", date, "Cache-Control", "max-age=60", "Cache-Control", "max-age=60"), 0, false},
		{"huge max-age", 200, hdr("Cache-Control", "max-age=9999999999999"), MaxDelta, false},
		{"expires minus date", 200, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour))), time.Hour, false},
		{"expires asctime", 200, hdr("Date", date, "Expires", t0.Add(90*sec).Format(time.ANSIC)), 90 * sec, false},
		{"expires in the past", 200, hdr("Date", date, "Expires", httpDate(t0.Add(-time.Hour))), 0, false},
		{"expires equals date", 200, hdr("Date", date, "Expires", date), 0, false},
		{"expires zero", 200, hdr("Date", date, "Expires", "0"), 0, false},
		{"expires garbage", 200, hdr("Date", date, "Expires", "next week"), 0, false},
		{"expires without date", 200, hdr("Expires", httpDate(t0.Add(time.Hour))), 0, false},
		{"expires with invalid date", 200, hdr("Date", "now", "Expires", httpDate(t0.Add(time.Hour))), 0, false},
		{"expires repeated", 200, hdr("Date", date, "Expires", httpDate(t0.Add(time.Hour)), "Expires", httpDate(t0.Add(time.Hour))), 0, false},
		{"expires beats heuristic", 200, hdr("Date", date, "Expires", httpDate(t0.Add(10*sec)), "Last-Modified", httpDate(t0.Add(-1000*sec))), 10 * sec, false},
		{"heuristic ten percent", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-1000*sec))), 100 * sec, true},
		{"heuristic whole seconds", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-15*sec))), sec, true},
		{"heuristic capped at 24h", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-300*time.Hour))), 24 * time.Hour, true},
		{"heuristic just below cap", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-239*time.Hour))), 239 * time.Hour / 10, true},
		{"heuristic 404", 404, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-100*sec))), 10 * sec, true},
		{"no heuristic for 302", 302, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-1000*sec))), 0, false},
		{"no heuristic for 500", 500, hdr("Date", date, "Last-Modified", httpDate(t0.Add(-1000*sec))), 0, false},
		{"heuristic 302 public", 302, hdr("Date", date, "Cache-Control", "public", "Last-Modified", httpDate(t0.Add(-1000*sec))), 100 * sec, true},
		{"heuristic without last-modified", 200, hdr("Date", date), 0, false},
		{"last-modified after date", 200, hdr("Date", date, "Last-Modified", httpDate(t0.Add(time.Hour))), 0, false},
		{"last-modified without date", 200, hdr("Last-Modified", httpDate(t0.Add(-1000*sec))), 0, false},
		{"invalid last-modified", 200, hdr("Date", date, "Last-Modified", "long ago"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, heuristic := FreshnessLifetime(tt.status, tt.h, ParseCacheControl(tt.h["Cache-Control"]))
			if got != tt.want || heuristic != tt.heuristic {
				t.Errorf("FreshnessLifetime = %v, %v; want %v, %v", got, heuristic, tt.want, tt.heuristic)
			}
		})
	}
}

func TestCurrentAge(t *testing.T) {
	simple := Times{Request: t0, Response: t0}
	tests := []struct {
		name  string
		h     http.Header
		times Times
		now   time.Time
		want  time.Duration
	}{
		{"just received", hdr("Date", httpDate(t0)), simple, t0, 0},
		{"resident time", hdr("Date", httpDate(t0)), simple, t0.Add(10 * sec), 10 * sec},
		{"apparent age", hdr("Date", httpDate(t0)), Times{t0.Add(4 * sec), t0.Add(5 * sec)}, t0.Add(5 * sec), 5 * sec},
		{"age plus delay plus residence", hdr("Date", httpDate(t0.Add(sec)), "Age", "30"), Times{t0, t0.Add(2 * sec)}, t0.Add(12 * sec), 42 * sec},
		{"apparent age beats small age", hdr("Date", httpDate(t0), "Age", "1"), Times{t0.Add(20 * sec), t0.Add(20 * sec)}, t0.Add(25 * sec), 25 * sec},
		{"date in the future", hdr("Date", httpDate(t0.Add(time.Hour))), simple, t0.Add(3 * sec), 3 * sec},
		{"invalid age ignored", hdr("Date", httpDate(t0), "Age", "abc"), simple, t0.Add(sec), sec},
		{"negative age ignored", hdr("Date", httpDate(t0), "Age", "-5"), simple, t0.Add(sec), sec},
		{"first of several age lines", hdr("Date", httpDate(t0), "Age", "10", "Age", "20"), simple, t0, 10 * sec},
		{"first of an age list", hdr("Date", httpDate(t0), "Age", " 10 , 20"), simple, t0, 10 * sec},
		{"huge age clamped", hdr("Date", httpDate(t0), "Age", "99999999999999"), simple, t0.Add(time.Hour), MaxDelta},
		{"missing date", hdr("Age", "5"), simple, t0.Add(sec), 6 * sec},
		{"zero request time", hdr("Date", httpDate(t0), "Age", "5"), Times{Response: t0}, t0, 5 * sec},
		{"now before response", hdr("Date", httpDate(t0)), simple, t0.Add(-time.Minute), 0},
		{"sub-second residence", hdr("Date", httpDate(t0)), simple, t0.Add(1500 * time.Millisecond), 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CurrentAge(tt.h, tt.times, tt.now); got != tt.want {
				t.Errorf("CurrentAge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAgeHeader(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want string
	}{
		{"zero", 0, "0"},
		{"rounds down", 1900 * time.Millisecond, "1"},
		{"just below a minute", 59999 * time.Millisecond, "59"},
		{"hours", 3 * time.Hour, "10800"},
		{"negative", -5 * sec, "0"},
		{"clamp", MaxDelta + time.Hour, "2147483648"},
		{"exact clamp", MaxDelta, "2147483648"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AgeHeader(tt.in); got != tt.want {
				t.Errorf("AgeHeader(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
