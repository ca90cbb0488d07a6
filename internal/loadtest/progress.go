package loadtest

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/geocdn/geocdn/internal/clock"
)

// Progress intervals: a terminal line is rewritten often enough to look
// live; a log (CI, a file) gets a line every few seconds, not a flood.
const (
	progressTTYEvery = 500 * time.Millisecond
	progressLogEvery = 5 * time.Second
	// rateSpan is how far back the shown rate looks: long enough to
	// smooth a half-second tick, short enough to show a step.
	rateSpan = 2 * time.Second
)

// Progress shows a running load test's figures: elapsed time, request
// rate over the last two seconds, errors, latency percentiles and hit
// ratio. On a terminal it rewrites one line; elsewhere it prints a line
// every few seconds. Its methods are safe for concurrent use.
type Progress struct {
	cfg   progressConfig
	start time.Time

	mu      sync.Mutex // serialises writes to out and guards history
	history []progressPoint
	shown   bool // a terminal line is on screen, unfinished

	cancel context.CancelFunc
	done   chan struct{}
	stop   sync.Once
}

type progressPoint struct {
	at       time.Time
	requests int64
}

// progressConfig is StartProgress's, with what tests replace.
type progressConfig struct {
	out   io.Writer
	src   interface{ Snapshot() Snapshot }
	total time.Duration // the run's planned length, 0 if unknown
	tty   bool          // rewrite one line rather than print lines
	every time.Duration // 0: by tty
	clk   clock.Clock   // nil: the real clock
}

// StartProgress shows rec's figures on w until ctx ends or Stop is
// called. total is the run's planned length, shown beside the elapsed
// time; 0 leaves it out.
func StartProgress(ctx context.Context, w io.Writer, rec *Recorder, total time.Duration) *Progress {
	return startProgress(ctx, progressConfig{out: w, src: rec, total: total, tty: IsTerminal(w)})
}

func startProgress(ctx context.Context, cfg progressConfig) *Progress {
	cfg.clk = clock.Or(cfg.clk)
	if cfg.every <= 0 {
		cfg.every = progressLogEvery
		if cfg.tty {
			cfg.every = progressTTYEvery
		}
	}
	p := &Progress{cfg: cfg, done: make(chan struct{})}
	p.start = cfg.clk.Now()
	p.history = []progressPoint{{at: p.start}}
	ctx, p.cancel = context.WithCancel(ctx)
	tk := cfg.clk.NewTicker(cfg.every)
	go func() {
		defer close(p.done)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C():
				p.update()
			}
		}
	}()
	return p
}

// Stop ends the updates, prints the final figures and, on a terminal,
// ends the line so that what follows starts on a fresh one. It returns
// once nothing more will be written; later calls do nothing.
func (p *Progress) Stop() {
	p.stop.Do(func() {
		p.cancel()
		<-p.done
		p.update()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.shown {
			fmt.Fprint(p.cfg.out, "\n")
			p.shown = false
		}
	})
}

// update prints the current figures.
func (p *Progress) update() {
	s := p.cfg.src.Snapshot()
	now := p.cfg.clk.Now()
	p.mu.Lock()
	defer p.mu.Unlock()

	// The rate is over the oldest point no older than rateSpan (or the
	// start); points before it are dropped.
	p.history = append(p.history, progressPoint{at: now, requests: s.Requests})
	for len(p.history) > 2 && now.Sub(p.history[1].at) >= rateSpan {
		p.history = p.history[1:]
	}
	var rate float64
	if first := p.history[0]; now.After(first.at) {
		rate = float64(s.Requests-first.requests) / now.Sub(first.at).Seconds()
	}

	line := formatProgress(now.Sub(p.start), p.cfg.total, rate, s)
	if p.cfg.tty {
		// \r returns to the line's start and \x1b[K clears what a longer
		// previous line left behind.
		fmt.Fprintf(p.cfg.out, "\r\x1b[K%s", line)
		p.shown = true
	} else {
		fmt.Fprintln(p.cfg.out, line)
	}
}

func formatProgress(elapsed, total time.Duration, rate float64, s Snapshot) string {
	at := elapsed.Truncate(100 * time.Millisecond).String()
	if total > 0 {
		at += "/" + total.String()
	}
	line := fmt.Sprintf("%s  %.0f req/s  %d requests  %d errors  p50 %s  p99 %s  hit %.1f%%",
		at, rate, s.Requests, s.Errors, fmtDur(s.P50), fmtDur(s.P99), 100*s.HitRatio)
	if s.Corrupt > 0 || s.Stale > 0 {
		line += fmt.Sprintf("  CORRUPT %d  STALE %d", s.Corrupt, s.Stale)
	}
	return line
}

// fmtDur prints a latency with three significant digits: 850µs, 1.23ms,
// 10ms, 123ms, 1.23s.
func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	unit := time.Microsecond
	for limit := time.Millisecond; d >= limit && unit < 100*time.Millisecond; limit *= 10 {
		unit *= 10
	}
	return d.Round(unit).String()
}

// IsTerminal reports whether w is a terminal: an *os.File (or anything
// with an Fd method) whose descriptor is one.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
