package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

// sentReport is a scrub report as reportScrub sent it, and when.
type sentReport struct {
	at time.Time
	p  wire.ScrubProgress
}

// reportLog collects what reportScrub sends.
type reportLog struct {
	mu   sync.Mutex
	sent []sentReport
}

func (l *reportLog) send(f wire.Frame) error {
	p, ok := f.(wire.ScrubProgress)
	if !ok {
		return fmt.Errorf("sent %T, want a scrub progress", f)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, sentReport{time.Now(), p})
	return nil
}

// take returns the reports sent since the last take.
func (l *reportLog) take() []sentReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.sent
	l.sent = nil
	return out
}

// The scrub reporter, over a real scrubber in simulated time, sends one
// report at once, one when a pass starts, one every 10 seconds while it
// runs and one when it ends, nothing while the scrubber is idle, and the
// corruption a pass found; it returns when its context ends.
func TestReportScrub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		e := newTestEdge(t, storeConfig{Dir: dir}, 0)
		var ents []wire.LogEntry
		for i := range 8 {
			body := bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
			ents = append(ents, e.publish(t, uint64(i+1), fmt.Sprintf("scrub/%d", i), body, true))
		}
		const total = 8 * 256 << 10
		// At 32 KiB/s, a pass over the 2 MiB takes about a minute.
		sc, err := e.st.newScrubber(32<<10, time.Hour, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var log reportLog
		reported := make(chan error, 1)
		go func() { reported <- reportScrub(ctx, nil, sc, log.send, testLogger(t)) }()
		synctest.Wait()
		if got := log.take(); len(got) != 1 || got[0].p != (wire.ScrubProgress{}) {
			t.Fatalf("before the first pass, sent %+v; want one report of no pass", got)
		}

		scrubbed := make(chan struct{})
		go func() {
			defer close(scrubbed)
			sc.Run(ctx)
		}()
		waitPass(sc, 1)
		synctest.Wait()
		sent := log.take()
		if len(sent) < 5 {
			t.Fatalf("a pass of about a minute sent %d reports, want its start, its end and one every 10s between: %+v", len(sent), sent)
		}
		start, end := sent[0], sent[len(sent)-1]
		if p := start.p; !p.Running || p.Pass != 1 || p.TotalBlobs != 8 || p.TotalBytes != total || p.LastFullPass != 0 {
			t.Errorf("first report of the pass %+v, want pass 1 running over 8 blobs and %d bytes", p, total)
		}
		st := sc.Status()
		want := wire.ScrubProgress{Pass: 1, Bytes: total, TotalBytes: total, Blobs: 8, TotalBlobs: 8,
			LastFullPass: 1, LastFullPassMillis: uint64(st.LastPassFinished.UnixMilli())}
		if end.p != want || !end.at.Equal(st.LastPassFinished) {
			t.Errorf("last report %+v at %v, want %+v when the pass ended at %v", end.p, end.at, want, st.LastPassFinished)
		}
		for i := 1; i < len(sent)-1; i++ {
			prev, cur := sent[i-1], sent[i]
			if gap := cur.at.Sub(prev.at); gap < scrubReportInterval {
				t.Errorf("reports %d and %d of a running pass %v apart, want at least %v", i-1, i, gap, scrubReportInterval)
			}
			if !cur.p.Running || cur.p.Bytes <= prev.p.Bytes {
				t.Errorf("report %d %+v after %+v, want the running pass further on", i, cur.p, prev.p)
			}
		}

		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if got := log.take(); len(got) != 0 {
			t.Fatalf("idle scrubber: sent %+v, want nothing", got)
		}

		flipByte(t, blobFile(dir, ents[3].Digest))
		sc.Trigger()
		waitPass(sc, 2)
		synctest.Wait()
		sent = log.take()
		if len(sent) < 2 {
			t.Fatalf("second pass sent %+v, want at least its start and end", sent)
		}
		if p := sent[0].p; !p.Running || p.Pass != 2 || p.LastFullPass != 1 {
			t.Errorf("first report of pass 2 %+v, want pass 2 running after full pass 1", p)
		}
		if p := sent[len(sent)-1].p; p.Running || p.LastFullPass != 2 || p.Corrupt != 1 || p.LastFullPassCorrupt != 1 || p.CorruptTotal != 1 {
			t.Errorf("last report of pass 2 %+v, want pass 2 done with 1 corrupt blob", p)
		}

		cancel()
		if err := <-reported; err != nil {
			t.Errorf("reportScrub returned %v when its context ended, want nil", err)
		}
		<-scrubbed
	})
}

// fakeScrubber is a scrubSource whose status the test sets.
type fakeScrubber struct {
	mu      sync.Mutex
	st      scrub.Status
	changed broadcast.Signal
}

func (f *fakeScrubber) Status() scrub.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeScrubber) Changed() <-chan struct{} { return f.changed.C() }

// set changes the status, and signals it when signal is set, as the
// scrubber does at the start and end of a pass.
func (f *fakeScrubber) set(signal bool, mod func(*scrub.Status)) {
	f.mu.Lock()
	mod(&f.st)
	f.mu.Unlock()
	if signal {
		f.changed.Broadcast()
	}
}

// A running pass whose progress stands still (a slow disk, a read that
// hangs) is not reported again; progress is reported at the next tick,
// not as it happens.
func TestReportScrubOnlyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeScrubber{}
		src.set(false, func(st *scrub.Status) {
			*st = scrub.Status{Pass: 4, Running: true, PassTotalBytes: 100, PassTotalBlobs: 10,
				LastFullPass: 3, LastFullPassCorrupt: 2, CorruptTotal: 2, LastPassFinished: time.Now().Add(-time.Hour)}
		})
		ctx, cancel := context.WithCancel(t.Context())
		var log reportLog
		reported := make(chan error, 1)
		go func() { reported <- reportScrub(ctx, nil, src, log.send, testLogger(t)) }()
		synctest.Wait()
		want := wire.ScrubProgress{Pass: 4, Running: true, TotalBytes: 100, TotalBlobs: 10,
			LastFullPass: 3, LastFullPassCorrupt: 2, CorruptTotal: 2, LastFullPassMillis: uint64(time.Now().Add(-time.Hour).UnixMilli())}
		if got := log.take(); len(got) != 1 || got[0].p != want {
			t.Fatalf("on start, sent %+v; want %+v", got, want)
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		if got := log.take(); len(got) != 0 {
			t.Fatalf("a pass standing still for a minute: sent %+v, want nothing", got)
		}

		t0 := time.Now()
		src.set(false, func(st *scrub.Status) { st.PassBytes, st.PassBlobs = 40, 4 })
		time.Sleep(scrubReportInterval)
		synctest.Wait()
		want.Bytes, want.Blobs = 40, 4
		got := log.take()
		if len(got) != 1 || got[0].p != want || got[0].at.Before(t0) || got[0].at.After(t0.Add(scrubReportInterval)) {
			t.Fatalf("after progress: sent %+v; want one report %+v at the next tick", got, want)
		}

		src.set(true, func(st *scrub.Status) {
			st.Running, st.PassBytes, st.PassBlobs = false, 100, 10
			st.LastFullPass, st.LastFullPassCorrupt, st.LastPassFinished = 4, 0, time.Now()
		})
		synctest.Wait()
		want = wire.ScrubProgress{Pass: 4, Bytes: 100, TotalBytes: 100, Blobs: 10, TotalBlobs: 10,
			LastFullPass: 4, CorruptTotal: 2, LastFullPassMillis: uint64(time.Now().UnixMilli())}
		if got := log.take(); len(got) != 1 || got[0].p != want || !got[0].at.Equal(time.Now()) {
			t.Fatalf("at the end of the pass: sent %+v; want %+v at once", got, want)
		}
		cancel()
		if err := <-reported; err != nil {
			t.Errorf("reportScrub returned %v when its context ended, want nil", err)
		}
	})
}

// A report the control stream refuses ends the reporter with the error,
// which ends the session.
func TestReportScrubSendError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEdge(t, storeConfig{}, 0)
		sc, err := e.st.newScrubber(0, time.Hour, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		broken := errors.New("stream reset")
		err = reportScrub(t.Context(), nil, sc, func(wire.Frame) error { return broken }, testLogger(t))
		if !errors.Is(err, broken) {
			t.Fatalf("reportScrub = %v, want %v", err, broken)
		}
	})
}
