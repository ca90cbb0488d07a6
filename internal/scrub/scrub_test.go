package scrub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// fakeStore is an in-memory blob store. It counts the bytes read from it,
// which are the bytes the scrubber hashed.
type fakeStore struct {
	mu      sync.Mutex
	list    []Blob
	content map[wire.Digest][]byte
	openErr map[wire.Digest]error
	readErr map[wire.Digest]error
	lists   []time.Time // when List was called
	read    atomic.Int64
}

func newFakeStore() *fakeStore {
	return &fakeStore{content: map[wire.Digest][]byte{}, openErr: map[wire.Digest]error{}, readErr: map[wire.Digest]error{}}
}

// add stores body as a correct blob and returns its digest.
func (st *fakeStore) add(body []byte) wire.Digest {
	d := wire.Digest(sha256.Sum256(body))
	st.mu.Lock()
	defer st.mu.Unlock()
	st.list = append(st.list, Blob{Digest: d, Size: int64(len(body))})
	st.content[d] = body
	return d
}

// damage replaces what d's blob holds on "disk".
func (st *fakeStore) damage(d wire.Digest, body []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.content[d] = body
}

func (st *fakeStore) List(context.Context) ([]Blob, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lists = append(st.lists, time.Now())
	return slices.Clone(st.list), nil
}

func (st *fakeStore) Open(d wire.Digest) (io.ReadCloser, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.openErr[d]; err != nil {
		return nil, err
	}
	b, ok := st.content[d]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", d, fs.ErrNotExist)
	}
	return &countingReader{r: bytes.NewReader(b), n: &st.read, err: st.readErr[d]}, nil
}

func (st *fakeStore) listTimes() []time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.lists)
}

type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	err error // returned instead of io.EOF, when set
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err == io.EOF && c.err != nil {
		err = c.err
	}
	return n, err
}

func (c *countingReader) Close() error { return nil }

type findings struct {
	mu sync.Mutex
	fs []Finding
}

func (f *findings) add(x Finding) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fs = append(f.fs, x)
}

func (f *findings) byDigest() map[wire.Digest]Finding {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[wire.Digest]Finding{}
	for _, x := range f.fs {
		m[x.Digest] = x
	}
	return m
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs a scrubber over st in the current synctest bubble until the
// test ends, and returns it with the findings it reports and a function
// that cancels it and returns what Run returned.
func start(t *testing.T, st *fakeStore, mod func(*Config)) (*Scrubber, *findings, func() error) {
	t.Helper()
	found := &findings{}
	cfg := Config{List: st.List, Open: st.Open, OnCorrupt: found.add, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() error {
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			return err
		default:
			t.Fatal("Run did not return once its context ended")
			return nil
		}
	}
	t.Cleanup(func() { cancel() })
	return s, found, stop
}

func body(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestScrubFindsDamage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		good := st.add(body(3*chunk+17, 1))
		empty := st.add(nil)
		flipped := st.add(body(2*chunk, 2))
		truncated := st.add(body(chunk+5, 3))
		longer := st.add(body(100, 4))
		vanished := st.add(body(50, 5))
		unreadable := st.add(body(60, 6))
		brokenRead := st.add(body(70, 7))

		b := body(2*chunk, 2)
		b[chunk+3] ^= 0x10
		st.damage(flipped, b)
		st.damage(truncated, body(chunk+5, 3)[:chunk-1])
		st.damage(longer, append(body(100, 4), 0))
		st.mu.Lock()
		delete(st.content, vanished)
		st.openErr[unreadable] = errors.New("input/output error")
		st.readErr[brokenRead] = errors.New("input/output error")
		st.mu.Unlock()

		s, found, stop := start(t, st, nil)
		time.Sleep(time.Second) // 1.5 MiB at the default 20 MiB/s
		synctest.Wait()

		got := found.byDigest()
		want := map[wire.Digest]string{flipped: "digest mismatch", truncated: "truncated", longer: "too long"}
		if len(got) != len(want) {
			t.Errorf("found %d corrupt blobs, want %d: %+v", len(got), len(want), got)
		}
		for d, reason := range want {
			f, ok := got[d]
			if !ok {
				t.Errorf("%s (%s) not found", d, reason)
				continue
			}
			if f.Reason() != reason || f.Pass != 1 || f.At.IsZero() {
				t.Errorf("%s: reason %q pass %d at %v, want %q in pass 1", d, f.Reason(), f.Pass, f.At, reason)
			}
		}
		if f := got[truncated]; f.Read != chunk-1 {
			t.Errorf("truncated blob: read %d, want %d", f.Read, chunk-1)
		}
		if f := got[longer]; f.Read != 101 {
			t.Errorf("longer blob: read %d, want 101 (one past its size)", f.Read)
		}
		for _, d := range []wire.Digest{good, empty, vanished, unreadable, brokenRead} {
			if _, ok := got[d]; ok {
				t.Errorf("%s reported corrupt, want not", d)
			}
		}

		s0 := s.Status()
		var total int64
		for _, b := range st.list {
			total += b.Size
		}
		if s0.Pass != 1 || s0.Running || s0.PassBlobs != 8 || s0.PassTotalBlobs != 8 ||
			s0.PassBytes != total || s0.PassTotalBytes != total {
			t.Errorf("status %+v, want pass 1 done, 8 of 8 blobs, %d of %d bytes", s0, total, total)
		}
		if s0.PassCorrupt != 3 || s0.CorruptTotal != 3 || s0.PassSkipped != 1 || s0.PassReadErrors != 2 {
			t.Errorf("status %+v, want 3 corrupt, 1 skipped, 2 read errors", s0)
		}
		if s0.BytesRead != st.read.Load() || s0.LastFullPass != 1 || s0.LastPassFinished.IsZero() || s0.LastError == "" {
			t.Errorf("status %+v, want %d bytes read, a finish time and the read error", s0, st.read.Load())
		}
		if p := s0.Progress(); p != 1 {
			t.Errorf("progress %v after the pass, want 1", p)
		}

		// Nothing was repaired: the next pass finds the same again.
		s.Trigger()
		time.Sleep(time.Second)
		synctest.Wait()
		if s1 := s.Status(); s1.Pass != 2 || s1.PassCorrupt != 3 || s1.CorruptTotal != 6 {
			t.Errorf("after a second pass: %+v, want pass 2 with 3 corrupt, 6 in total", s1)
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// TestScrubRespectsRate: at every instant T of simulated time since the
// start, the bytes read are at most Rate×T plus one chunk (the burst), and
// not much less: the pass runs at its rate, not below it.
func TestScrubRespectsRate(t *testing.T) {
	for _, rate := range []int64{1 << 20, 300 << 10, 100 << 10} {
		t.Run(fmt.Sprintf("%dKiBps", rate>>10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newFakeStore()
				for i := range 6 {
					st.add(body(chunk*3/2+i*1000, byte(i)))
				}
				var total int64
				for _, b := range st.list {
					total += b.Size
				}
				t0 := time.Now()
				s, found, _ := start(t, st, func(c *Config) { c.Rate = rate })
				for step := 0; ; step++ {
					synctest.Wait()
					el := time.Since(t0)
					got := st.read.Load()
					allowed := int64(float64(rate)*el.Seconds()) + chunk
					if got > allowed {
						t.Fatalf("after %v: %d bytes read, want at most %d (rate %d/s plus a chunk)", el, got, allowed, rate)
					}
					if done := s.Status().Pass == 1 && !s.Status().Running; done {
						if got != total {
							t.Fatalf("pass done after %v with %d bytes read, want %d", el, got, total)
						}
						if min := time.Duration(float64(total-chunk) / float64(rate) * float64(time.Second)); el < min {
							t.Fatalf("pass took %v, want at least %v at %d bytes/s", el, min, rate)
						}
						break
					}
					if floor := int64(float64(rate)*el.Seconds()) - chunk; got < floor {
						t.Fatalf("after %v: %d bytes read, want at least %d: the pass is slower than its rate", el, got, floor)
					}
					time.Sleep(37 * time.Millisecond)
				}
				if len(found.fs) != 0 {
					t.Errorf("found %v in intact blobs", found.fs)
				}
			})
		})
	}
}

func TestScrubWaitsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.add(body(1000, 1))
		t0 := time.Now()
		s, _, stop := start(t, st, func(c *Config) { c.Interval = time.Hour })
		synctest.Wait()
		if s0 := s.Status(); s0.Pass != 1 || s0.Running || !s0.NextPass.Equal(t0.Add(time.Hour)) {
			t.Fatalf("at start: %+v, want pass 1 done and the next due at %v", s0, t0.Add(time.Hour))
		}
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		if got := s.Status().Pass; got != 1 {
			t.Fatalf("a second before the interval: pass %d, want 1", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := st.listTimes(); len(got) != 2 || !got[1].Equal(t0.Add(time.Hour)) {
			t.Fatalf("passes started at %v, want %v and %v", got, t0, t0.Add(time.Hour))
		}

		// A trigger starts a pass at once, and the interval counts from it.
		time.Sleep(10 * time.Minute)
		s.Trigger()
		synctest.Wait()
		t2 := t0.Add(70 * time.Minute)
		if got := st.listTimes(); len(got) != 3 || !got[2].Equal(t2) {
			t.Fatalf("after a trigger: passes started at %v, want a third at %v", got, t2)
		}
		if next := s.Status().NextPass; !next.Equal(t2.Add(time.Hour)) {
			t.Fatalf("next pass due %v, want %v", next, t2.Add(time.Hour))
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// TestScrubSlowPassStartsNextAtOnce: a pass longer than Interval is
// followed by the next one without a wait.
func TestScrubSlowPassStartsNextAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.add(body(4*chunk, 1))
		s, _, _ := start(t, st, func(c *Config) { c.Interval = time.Second; c.Rate = chunk }) // about 3s a pass
		for s.Status().Pass < 2 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		st2 := s.Status()
		if st2.LastPassFinished.Sub(st2.PassStarted) < 0 || !st2.PassStarted.Equal(st2.LastPassFinished) {
			t.Fatalf("pass 2 started %v, pass 1 finished %v: want the same instant", st2.PassStarted, st2.LastPassFinished)
		}
		if took := st2.PassStarted.Sub(st.listTimes()[0]); took <= time.Second {
			t.Fatalf("pass 1 took %v, want longer than the interval for this test", took)
		}
	})
}

// TestScrubTriggerDuringPass: a trigger while a pass runs asks for another
// pass right after it.
func TestScrubTriggerDuringPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.add(body(4*chunk, 1))
		s, _, _ := start(t, st, func(c *Config) { c.Rate = chunk })
		time.Sleep(time.Second)
		synctest.Wait()
		if st0 := s.Status(); !st0.Running || st0.Pass != 1 {
			t.Fatalf("status %+v, want pass 1 running", st0)
		}
		s.Trigger()
		s.Trigger()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		lists := st.listTimes()
		if len(lists) != 2 {
			t.Fatalf("passes started at %v, want 2 (the first and the one triggered)", lists)
		}
		if st1 := s.Status(); st1.Running || st1.Pass != 2 || !st1.NextPass.Equal(lists[1].Add(DefaultInterval)) {
			t.Fatalf("status %+v, want pass 2 done and the next a day after it started", st1)
		}
	})
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestScrubChanged: Changed is signalled once a pass has listed its blobs
// and when it ends, not as it makes progress; LastFullPassCorrupt keeps
// the last full pass's finding while the next pass runs.
func TestScrubChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newFakeStore()
		st.add(body(2*chunk, 1))
		bad := st.add(body(2*chunk, 2))
		st.damage(bad, body(2*chunk, 3))
		s, _, stop := start(t, st, func(c *Config) { c.Rate = chunk; c.Interval = time.Hour }) // about 3s a pass
		synctest.Wait()
		if st0 := s.Status(); !st0.Running || st0.PassTotalBlobs != 2 {
			t.Fatalf("status %+v, want pass 1 running over 2 blobs", st0)
		}
		ch := s.Changed()
		time.Sleep(time.Second)
		synctest.Wait()
		if st1 := s.Status(); st1.PassBytes == 0 || !st1.Running {
			t.Fatalf("status %+v, want pass 1 running with progress", st1)
		}
		if closed(ch) {
			t.Fatal("Changed signalled by progress within a pass")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if !closed(ch) {
			t.Fatal("Changed not signalled at the end of a pass")
		}
		if st2 := s.Status(); st2.Running || st2.LastFullPass != 1 || st2.LastFullPassCorrupt != 1 {
			t.Fatalf("status %+v, want pass 1 done with 1 corrupt", st2)
		}

		ch = s.Changed()
		if closed(ch) {
			t.Fatal("a channel taken after the signal is closed")
		}
		s.Trigger()
		synctest.Wait()
		if !closed(ch) {
			t.Fatal("Changed not signalled when a pass has listed its blobs")
		}
		if st3 := s.Status(); !st3.Running || st3.Pass != 2 || st3.PassTotalBlobs != 2 || st3.LastFullPass != 1 || st3.LastFullPassCorrupt != 1 {
			t.Fatalf("status %+v, want pass 2 running over 2 blobs, pass 1's corrupt blob still counted", st3)
		}
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

func TestScrubStopsOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration
		full  int
	}{
		{"during a pass", time.Second, 0},
		{"between passes", time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newFakeStore()
				st.add(body(8*chunk, 1))
				s, _, stop := start(t, st, func(c *Config) { c.Rate = chunk })
				time.Sleep(tc.after)
				synctest.Wait()
				running := s.Status().Running
				if want := tc.after < 5*time.Second; running != want {
					t.Fatalf("running %v, want %v", running, want)
				}
				if err := stop(); !errors.Is(err, context.Canceled) {
					t.Fatalf("Run returned %v, want context.Canceled", err)
				}
				got := s.Status()
				if got.Running {
					t.Errorf("status %+v after Run returned, want not running", got)
				}
				if got.LastFullPass != tc.full {
					t.Errorf("last full pass %d, want %d (a pass cut short is not full)", got.LastFullPass, tc.full)
				}
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	st := newFakeStore()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no list", Config{Open: st.Open}, "list: required"},
		{"no open", Config{List: st.List}, "open: required"},
		{"negative interval", Config{List: st.List, Open: st.Open, Interval: -time.Second}, "interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	s, err := New(Config{List: st.List, Open: st.Open})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Rate != DefaultRate || s.cfg.Interval != DefaultInterval || s.lim == nil {
		t.Errorf("defaults: rate %d interval %v, want %d and %v", s.cfg.Rate, s.cfg.Interval, DefaultRate, DefaultInterval)
	}
}

// BenchmarkScrub reports the throughput of one pass over 16 MiB of blobs
// held in memory, unlimited (the cost of hashing) and at rate limits.
func BenchmarkScrub(b *testing.B) {
	st := newFakeStore()
	for i := range 16 {
		st.add(body(1<<20, byte(i)))
	}
	var total int64
	for _, bl := range st.list {
		total += bl.Size
	}
	for _, tc := range []struct {
		name string
		rate int64
	}{
		{"unlimited", Unlimited},
		{"rate=20MiB/s", DefaultRate},
		{"rate=100MiB/s", 100 << 20},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{List: st.List, Open: st.Open, Rate: tc.rate,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(total)
			for b.Loop() {
				s.pass(b.Context(), time.Now())
			}
			if c := s.Status().PassCorrupt; c != 0 {
				b.Fatalf("%d corrupt", c)
			}
		})
	}
}
