package broadcast

import (
	"sync"
	"testing"
)

func TestBroadcastWakesEveryWaiter(t *testing.T) {
	var s Signal
	var wg sync.WaitGroup
	ready := make(chan struct{}, 10)
	for i := 0; i < 10; i++ {
		ch := s.C()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready <- struct{}{}
			<-ch
		}()
	}
	for i := 0; i < 10; i++ {
		<-ready
	}
	s.Broadcast()
	wg.Wait()
}

func TestChannelTakenBeforeBroadcastIsClosed(t *testing.T) {
	var s Signal
	ch := s.C()
	s.Broadcast()
	select {
	case <-ch:
	default:
		t.Fatal("a channel taken before Broadcast is still open")
	}
	select {
	case <-s.C():
		t.Fatal("a channel taken after Broadcast is already closed")
	default:
	}
}

func TestBroadcastWithoutWaitersIsHarmless(t *testing.T) {
	var s Signal
	s.Broadcast()
	s.Broadcast()
	if s.C() == nil {
		t.Fatal("C returned nil")
	}
}
