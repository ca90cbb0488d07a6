// Package broadcast provides Signal, a wake-up for any number of waiters:
// each takes the current channel, checks its condition, then waits on the
// channel, which the next Broadcast closes.
//
// Key invariant: a waiter that took C before checking its condition never
// misses a Broadcast that happens after the check. The zero value is ready.
package broadcast

import "sync"

// Signal wakes every goroutine waiting on its current channel.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns the channel the next Broadcast closes. Take it before checking
// the condition being waited for.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Broadcast wakes everyone waiting on a channel from C.
func (s *Signal) Broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
