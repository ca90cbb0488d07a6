package loadtest

import (
	"math"
	"time"
)

// Schedule is an open loop's arrival times: the intended send time of
// every request, as offsets from the start of the run, worked out from
// the phases alone so that a slow target cannot slow the load down.
//
// The n-th arrival (n = 1, 2, …) is the time t at which the integral of
// the rate, Λ(t), reaches n − ½. So a constant rate r gives one arrival
// every 1/r, a ramp's arrivals follow its rate exactly (Λ is quadratic
// there, and solved in closed form), a step changes the spacing at the
// phase boundary, a rate-0 phase sends nothing, and the number of
// arrivals by any time t is Λ(t) rounded: never more than half a request
// off the integral, with no error accumulating across phases.
//
// A Schedule is not safe for concurrent use.
type Schedule struct {
	phases []Phase
	i      int           // the phase of the next arrival
	start  time.Duration // when phase i starts
	base   float64       // Λ at the start of phase i
	n      int64         // arrivals returned
}

// NewSchedule returns the schedule of phases, run one after another
// from offset 0. Rates must be finite and ≥ 0 (a parsed Scenario's are).
func NewSchedule(phases []Phase) *Schedule {
	return &Schedule{phases: phases}
}

// WriteSchedule returns the schedule of a write stream: w.Rate per
// second from w.At until w.At+w.For, or until end when For is 0 or
// reaches past it.
func WriteSchedule(w Write, end time.Duration) *Schedule {
	stop := end
	if w.For > 0 {
		stop = min(stop, w.At+w.For)
	}
	if stop <= w.At || !(w.Rate > 0) {
		return NewSchedule(nil)
	}
	var phases []Phase
	if w.At > 0 {
		phases = append(phases, Phase{Duration: w.At, Line: w.Line})
	}
	phases = append(phases, Phase{Duration: stop - w.At, From: w.Rate, To: w.Rate, Line: w.Line})
	return NewSchedule(phases)
}

// area is Λ over the whole of ph.
func area(ph Phase) float64 {
	return (ph.From + ph.To) / 2 * ph.Duration.Seconds()
}

// Next returns the intended time of the next arrival, or false after
// the last phase.
func (s *Schedule) Next() (time.Duration, bool) {
	target := float64(s.n) + 0.5
	for s.i < len(s.phases) {
		ph := s.phases[s.i]
		if x := target - s.base; x <= area(ph) {
			tau := phaseTime(ph, x)
			t := s.start + min(time.Duration(math.Round(tau*float64(time.Second))), ph.Duration)
			s.n++
			return t, true
		}
		s.base += area(ph)
		s.start += ph.Duration
		s.i++
	}
	return 0, false
}

// phaseTime is the time τ into ph at which the integral of its rate
// reaches x, 0 < x ≤ area(ph): the positive root of
// a·τ + k·τ² = x, with a = From and k = (To−From)/(2·Duration), in the
// form 2x / (a + √(a² + 4kx)), which stays exact as k goes to 0 and for
// a falling rate (k < 0).
func phaseTime(ph Phase, x float64) float64 {
	a := ph.From
	k := (ph.To - ph.From) / (2 * ph.Duration.Seconds())
	return 2 * x / (a + math.Sqrt(max(0, a*a+4*k*x)))
}

// Rate is the schedule's rate, in requests per second, at offset at:
// the rate of the phase running then (the later one at a boundary), 0
// before the start and after the last phase.
func (s *Schedule) Rate(at time.Duration) float64 {
	return phasesRate(s.phases, at)
}

func phasesRate(phases []Phase, at time.Duration) float64 {
	if at < 0 {
		return 0
	}
	var start time.Duration
	for _, ph := range phases {
		if at < start+ph.Duration {
			f := float64(at-start) / float64(ph.Duration)
			return ph.From + (ph.To-ph.From)*f
		}
		start += ph.Duration
	}
	return 0
}

// End is when the last phase ends.
func (s *Schedule) End() time.Duration {
	var end time.Duration
	for _, ph := range s.phases {
		end += ph.Duration
	}
	return end
}
