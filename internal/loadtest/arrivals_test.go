package loadtest

import (
	"math"
	"testing"
	"time"
)

// integral is ∫ rate over [a, b) for the phases, in closed form.
func integral(phases []Phase, a, b time.Duration) float64 {
	var start time.Duration
	total := 0.0
	for _, ph := range phases {
		end := start + ph.Duration
		lo, hi := max(a, start), min(b, end)
		if lo < hi {
			r0, r1 := phasesRate([]Phase{ph}, lo-start), phasesRate([]Phase{ph}, hi-start)
			if hi == end {
				r1 = ph.To
			}
			total += (r0 + r1) / 2 * (hi - lo).Seconds()
		}
		start = end
	}
	return total
}

// drain returns every arrival of s, checking they never go back in time.
func drain(t *testing.T, s *Schedule) []time.Duration {
	t.Helper()
	var out []time.Duration
	for {
		at, ok := s.Next()
		if !ok {
			break
		}
		if n := len(out); n > 0 && at < out[n-1] {
			t.Fatalf("arrival %d at %v, before the previous one at %v", n, at, out[n-1])
		}
		out = append(out, at)
		if len(out) > 10_000_000 {
			t.Fatal("schedule does not end")
		}
	}
	if _, ok := s.Next(); ok {
		t.Fatal("Next returned an arrival after reporting the end")
	}
	return out
}

// TestScheduleKeepsOpenLoopRate is "the arrival scheduler keeps an
// open-loop rate within 2% on a fake clock": the schedule's offsets are
// the clock, advanced one second at a time, so no real time passes. In
// every 1 s window the arrivals must match the integral of the rate
// within 2% (and within one request), and the total must be exact.
func TestScheduleKeepsOpenLoopRate(t *testing.T) {
	tests := []struct {
		name   string
		phases []Phase
	}{
		{"constant", []Phase{{Duration: 20 * time.Second, From: 200, To: 200}}},
		{"fractional constant", []Phase{{Duration: 30 * time.Second, From: 333.3, To: 333.3}}},
		{"ramp up", []Phase{{Duration: 10 * time.Second, From: 200, To: 1000}}},
		{"ramp down", []Phase{{Duration: 10 * time.Second, From: 900, To: 100}}},
		{"step", []Phase{{Duration: 5 * time.Second, From: 200, To: 200}, {Duration: 5 * time.Second, From: 800, To: 800}, {Duration: 5 * time.Second, From: 150, To: 150}}},
		{"the README's shape", []Phase{{Duration: 20 * time.Second, From: 200, To: 200}, {Duration: 10 * time.Second, From: 200, To: 1000}, {Duration: 30 * time.Second, From: 1000, To: 1000}}},
		{"ramp then step down", []Phase{{Duration: 7 * time.Second, From: 100, To: 450}, {Duration: 3 * time.Second, From: 120, To: 120}}},
		{"half-second phases", []Phase{{Duration: 1500 * time.Millisecond, From: 300, To: 300}, {Duration: 2500 * time.Millisecond, From: 300, To: 500}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSchedule(tt.phases)
			end := s.End()
			times := drain(t, NewSchedule(tt.phases))
			total := integral(tt.phases, 0, end)
			if want := int(math.Round(total)); len(times) != want {
				t.Errorf("%d arrivals in all, want %d (the integral is %.3f)", len(times), want, total)
			}
			if n := len(times); n > 0 && (times[0] < 0 || times[n-1] > end) {
				t.Errorf("arrivals span [%v, %v], outside the schedule's [0, %v]", times[0], times[n-1], end)
			}
			// The fake clock: advance one second, count what was due.
			i := 0
			for now := time.Duration(0); now < end; now += time.Second {
				next := min(now+time.Second, end)
				got := 0
				for i < len(times) && times[i] < next {
					got++
					i++
				}
				want := integral(tt.phases, now, next)
				if d := math.Abs(float64(got) - want); d > 1 || d > 0.02*want {
					t.Errorf("[%v, %v): %d arrivals, want %.2f within 2%% and one request", now, next, got, want)
				}
			}
		})
	}
}

func TestScheduleConstantIsEven(t *testing.T) {
	times := drain(t, NewSchedule([]Phase{{Duration: 2 * time.Second, From: 400, To: 400}}))
	if len(times) != 800 {
		t.Fatalf("%d arrivals, want 800", len(times))
	}
	gap := time.Second / 400
	if times[0] != gap/2 {
		t.Errorf("first arrival at %v, want half a gap (%v)", times[0], gap/2)
	}
	for i := 1; i < len(times); i++ {
		if d := times[i] - times[i-1]; d < gap-1 || d > gap+1 {
			t.Fatalf("arrivals %d and %d are %v apart, want %v", i-1, i, d, gap)
		}
	}
}

// TestScheduleRateZero checks a rate-0 phase sends nothing, and an
// all-zero schedule nothing at all.
func TestScheduleRateZero(t *testing.T) {
	phases := []Phase{{Duration: time.Second, From: 10, To: 10}, {Duration: 5 * time.Second}, {Duration: time.Second, From: 10, To: 10}}
	times := drain(t, NewSchedule(phases))
	if len(times) != 20 {
		t.Errorf("%d arrivals, want 20", len(times))
	}
	for _, at := range times {
		if at > time.Second && at < 6*time.Second {
			t.Errorf("arrival at %v, inside the rate-0 phase [1s, 6s)", at)
		}
	}
	if got := drain(t, NewSchedule([]Phase{{Duration: 10 * time.Second}})); len(got) != 0 {
		t.Errorf("a rate-0 schedule sent %d", len(got))
	}
	if got := drain(t, NewSchedule(nil)); len(got) != 0 {
		t.Errorf("an empty schedule sent %d", len(got))
	}
}

func TestScheduleRate(t *testing.T) {
	s := NewSchedule([]Phase{{Duration: 10 * time.Second, From: 100, To: 100}, {Duration: 10 * time.Second, From: 200, To: 400}, {Duration: 5 * time.Second, From: 50, To: 50}})
	for _, tt := range []struct {
		at   time.Duration
		want float64
	}{
		{-time.Second, 0}, {0, 100}, {9 * time.Second, 100}, {10 * time.Second, 200}, {15 * time.Second, 300},
		{20*time.Second - 1, 400}, {20 * time.Second, 50}, {25*time.Second - 1, 50}, {25 * time.Second, 0}, {time.Hour, 0},
	} {
		if got := s.Rate(tt.at); math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("Rate(%v) = %v, want %v", tt.at, got, tt.want)
		}
	}
	if got := s.End(); got != 25*time.Second {
		t.Errorf("End = %v, want 25s", got)
	}
}

func TestWriteSchedule(t *testing.T) {
	for _, tt := range []struct {
		name     string
		w        Write
		end      time.Duration
		n        int
		from, to time.Duration
	}{
		{"whole run", Write{Rate: 2}, 60 * time.Second, 120, 0, 60 * time.Second},
		{"window", Write{Rate: 4, At: 10 * time.Second, For: 5 * time.Second}, 60 * time.Second, 20, 10 * time.Second, 15 * time.Second},
		{"to the end", Write{Rate: 0.5, At: 20 * time.Second}, 60 * time.Second, 20, 20 * time.Second, 60 * time.Second},
		{"cut by the end", Write{Rate: 10, At: 55 * time.Second, For: 30 * time.Second}, 60 * time.Second, 50, 55 * time.Second, 60 * time.Second},
		{"after the end", Write{Rate: 10, At: 60 * time.Second}, 60 * time.Second, 0, 0, 0},
		{"rate 0", Write{At: 1 * time.Second}, 60 * time.Second, 0, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := WriteSchedule(tt.w, tt.end)
			times := drain(t, s)
			if len(times) != tt.n {
				t.Fatalf("%d writes, want %d", len(times), tt.n)
			}
			for _, at := range times {
				if at < tt.from || at > tt.to {
					t.Fatalf("write at %v, outside [%v, %v]", at, tt.from, tt.to)
				}
			}
			if tt.n > 0 {
				if got := s.Rate(tt.from); got != tt.w.Rate {
					t.Errorf("Rate(%v) = %v, want %v", tt.from, got, tt.w.Rate)
				}
				if tt.from > 0 && s.Rate(tt.from-1) != 0 {
					t.Errorf("Rate just before %v = %v, want 0", tt.from, s.Rate(tt.from-1))
				}
			}
		})
	}
}
