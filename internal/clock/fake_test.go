package clock

import (
	"testing"
	"time"
)

func TestFakeTimerFiresOnlyOnAdvance(t *testing.T) {
	f := NewFake(time.Unix(1000, 0))
	tm := f.NewTimer(2 * time.Second)
	f.Advance(time.Second)
	select {
	case <-tm.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(time.Second)
	select {
	case got := <-tm.C():
		if want := time.Unix(1002, 0); !got.Equal(want) {
			t.Fatalf("fired at %v, want %v", got, want)
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if got, want := f.Now(), time.Unix(1002, 0); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}

func TestFakeTickerAndStop(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tk := f.NewTicker(100 * time.Millisecond)
	n := 0
	for i := 0; i < 5; i++ {
		f.Advance(100 * time.Millisecond)
		select {
		case <-tk.C():
			n++
		default:
		}
	}
	if n != 5 {
		t.Fatalf("ticks = %d, want 5", n)
	}
	tk.Stop()
	f.Advance(time.Second)
	select {
	case <-tk.C():
		t.Fatal("stopped ticker ticked")
	default:
	}
}

func TestFakeTimerReset(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	tm := f.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop on an active timer = false, want true")
	}
	tm.Reset(3 * time.Second)
	f.Advance(2 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("reset timer fired early")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-tm.C():
	default:
		t.Fatal("reset timer did not fire")
	}
}
