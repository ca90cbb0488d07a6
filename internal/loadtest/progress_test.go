package loadtest

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// progressBuffer is a bytes.Buffer safe to read while Progress writes.
type progressBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *progressBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *progressBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recordHits records n samples of 10 ms, all hits.
func recordHits(r *Recorder, n int) {
	for range n {
		r.Record(Sample{Latency: 10 * time.Millisecond, Region: "r", Op: OpGet, Hit: true})
	}
}

func TestProgressPlainLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out progressBuffer
		rec := NewRecorder()
		p := startProgress(t.Context(), progressConfig{out: &out, src: rec, total: time.Minute})

		recordHits(rec, 500)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		recordHits(rec, 1000)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		p.Stop()

		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		// Two ticks, then Stop's final line.
		if len(lines) != 3 {
			t.Fatalf("got %d lines, want 3:\n%s", len(lines), out.String())
		}
		if strings.ContainsAny(out.String(), "\r\x1b") {
			t.Errorf("plain output has terminal controls: %q", out.String())
		}
		for i, want := range []string{
			"5s/1m0s  100 req/s  500 requests  0 errors  p50 10ms  p99 10ms  hit 100.0%",
			// The rate looks back two seconds at most: 1000 in the
			// last 5 s, as seen from the oldest point kept.
			"10s/1m0s  ",
		} {
			if !strings.HasPrefix(lines[i], want) {
				t.Errorf("line %d = %q, want it to start %q", i, lines[i], want)
			}
		}
		if !strings.Contains(lines[1], "1500 requests") {
			t.Errorf("line 1 = %q, want 1500 requests", lines[1])
		}
	})
}

func TestProgressTerminalLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out progressBuffer
		rec := NewRecorder()
		ctx, cancel := context.WithCancel(t.Context())
		p := startProgress(ctx, progressConfig{out: &out, src: rec, tty: true})

		for range 4 {
			recordHits(rec, 50)
			time.Sleep(500 * time.Millisecond)
			synctest.Wait()
		}
		got := out.String()
		if n := strings.Count(got, "\r\x1b[K"); n != 4 {
			t.Errorf("%d line rewrites after 2 s, want 4 (one per 500 ms): %q", n, got)
		}
		if strings.Contains(got, "\n") {
			t.Errorf("terminal output has a newline before Stop: %q", got)
		}
		// The context's end stops the updates; Stop still finishes the
		// line, once.
		cancel()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		p.Stop()
		p.Stop()
		got = out.String()
		if !strings.HasSuffix(got, "\n") || strings.Count(got, "\n") != 1 {
			t.Errorf("after Stop: %q, want exactly one final newline", got)
		}
		if n := strings.Count(got, "\r\x1b[K"); n != 5 {
			t.Errorf("%d rewrites in all, want 4 ticks and Stop's", n)
		}
		if last := got[strings.LastIndex(got, "\r\x1b[K"):]; !strings.Contains(last, "200 requests") {
			t.Errorf("final line %q, want 200 requests", last)
		}
	})
}

func TestProgressShowsCorruptAndStale(t *testing.T) {
	line := formatProgress(3*time.Second, 0, 42, Snapshot{Requests: 9, Errors: 2, Corrupt: 1, Stale: 1})
	for _, want := range []string{"3s ", "42 req/s", "2 errors", "CORRUPT 1", "STALE 1", "p50 -"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
}

func TestProgressIsTerminal(t *testing.T) {
	var b bytes.Buffer
	if IsTerminal(&b) {
		t.Error("a bytes.Buffer is a terminal")
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
}

func TestProgressFormatsLatency(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "-"},
		{850 * time.Microsecond, "850µs"},
		{1234567 * time.Nanosecond, "1.23ms"},
		{10007 * time.Microsecond, "10ms"},
		{123456 * time.Microsecond, "123ms"},
		{1234567 * time.Microsecond, "1.23s"},
		{12345 * time.Millisecond, "12.3s"},
	} {
		if got := fmtDur(tt.d); got != tt.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
