// Package clock is the time source that lease, heartbeat, timeout and Age
// code takes instead of calling the time package directly, so tests can
// drive time by hand (Fake) or run inside a testing/synctest bubble (Real,
// whose time functions the bubble fakes).
//
// Invariant: a Fake's timers and tickers fire only from Advance, in deadline
// order, and Now never moves backwards.
package clock

import "time"

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	Now() time.Time
	// Since is Now().Sub(t), using the monotonic reading where t has one.
	Since(t time.Time) time.Duration
	NewTimer(d time.Duration) Timer
	NewTicker(d time.Duration) Ticker
}

// Timer is the part of *time.Timer that callers use.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Ticker is the part of *time.Ticker that callers use.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Or returns c, or the real clock when c is nil, so a nil Clock field in a
// config means "real time".
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Real is the system clock.
type Real struct{}

func (Real) Now() time.Time                    { return time.Now() }
func (Real) Since(t time.Time) time.Duration   { return time.Since(t) }
func (Real) NewTimer(d time.Duration) Timer    { return realTimer{time.NewTimer(d)} }
func (Real) NewTicker(d time.Duration) Ticker  { return realTicker{time.NewTicker(d)} }
func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
func (t realTicker) C() <-chan time.Time       { return t.t.C }
func (t realTicker) Stop()                     { t.t.Stop() }

type realTimer struct{ t *time.Timer }
type realTicker struct{ t *time.Ticker }
