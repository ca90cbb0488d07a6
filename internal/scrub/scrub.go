// Package scrub re-hashes content-addressed blobs in the background, at a
// bounded rate, to find the ones whose bytes no longer match their digest
// (bit rot, a torn or truncated file, a bad sector) before a client or a
// replica is handed them. The origin and the edges each run one over their
// own blob store.
//
// Invariant: the bytes read per second never exceed Config.Rate by more than
// one chunk (256 KiB): every read is paid for from a token bucket, driven by
// the injected clock, before it is made. A blob is reported corrupt only
// when it could be read in full and its length or sha256 is wrong; a blob
// that vanished meanwhile is skipped, and one that could not be read is
// counted as a read error, never as corrupt, so a caller may act on a
// finding (drop the blob, refetch it) without second-guessing it.
package scrub

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/wire"
)

const (
	// DefaultRate is Config.Rate's default: 20 MiB/s, a small share of a
	// disk's bandwidth, and a full pass of 1 TiB in about 15 hours.
	DefaultRate = 20 << 20
	// DefaultInterval is Config.Interval's default.
	DefaultInterval = 24 * time.Hour
	// Unlimited as Config.Rate hashes as fast as the disk and CPU allow
	// (benchmarks, a one-off check).
	Unlimited = -1

	// chunk is the unit of reading and of rate accounting, and so the
	// limiter's burst: the most the rate can be exceeded by.
	chunk = 256 << 10
)

// Blob is one blob to check: its digest and expected length.
type Blob struct {
	Digest wire.Digest
	Size   int64
}

// Finding is a blob whose content does not match its digest.
type Finding struct {
	Blob
	// Read is the number of bytes read: less than Size for a truncated
	// blob, Size+1 for a longer one (reading stops there), Size when the
	// length is right and the content is not.
	Read int64
	// Got is the sha256 of the Read bytes.
	Got wire.Digest
	// Pass is the number of the pass that found it; At when.
	Pass int
	At   time.Time
}

// Reason says in a word or two what is wrong.
func (f Finding) Reason() string {
	switch {
	case f.Read < f.Size:
		return "truncated"
	case f.Read > f.Size:
		return "too long"
	}
	return "digest mismatch"
}

// Config configures a Scrubber. List and Open are required; every other
// zero field takes the default its comment names.
type Config struct {
	// Rate bounds the bytes read and hashed per second. Default
	// DefaultRate (20 MiB/s); negative (Unlimited) means no bound.
	Rate int64
	// Interval is how often a pass starts: a pass that finishes early
	// waits until Interval after its start, one that takes longer is
	// followed by the next at once. Default 24h; must be positive.
	Interval time.Duration
	// List returns the blobs to check. It is called once at the start of
	// each pass, so blobs stored during a pass wait for the next one. A
	// pass starts at a random point of the list and wraps around, so that
	// a process restarted more often than a pass lasts still gets to every
	// blob. An error ends the pass; the next is due Interval after its
	// start as usual. Required.
	List func(ctx context.Context) ([]Blob, error)
	// Open opens one blob for reading. An error that wraps
	// fs.ErrNotExist means the blob was removed since List: it is
	// skipped. Required.
	Open func(d wire.Digest) (io.ReadCloser, error)
	// OnCorrupt is called, from the scrubbing goroutine, for every
	// corrupt blob found; the pass waits for it, so it may look things up
	// but should not block for long. A blob that stays corrupt is
	// reported again by every pass. Default: an Error log line.
	OnCorrupt func(Finding)
	// Clock drives the rate limit and the interval. Default the real one.
	Clock clock.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Status is a Scrubber's progress. Byte and blob counts of the pass are of
// the pass running, or of the last one when none is.
type Status struct {
	// Pass is the number of the current or last pass, from 1; 0 before the
	// first.
	Pass    int  `json:"pass"`
	Running bool `json:"running"`
	// PassStarted is when the current or last pass started.
	PassStarted time.Time `json:"pass_started,omitzero"`
	// PassBytes is how far the pass has got, in bytes of the listed sizes
	// (a blob that is skipped or found short counts in full once done), of
	// PassTotalBytes.
	PassBytes      int64 `json:"pass_bytes"`
	PassTotalBytes int64 `json:"pass_total_bytes"`
	// PassBlobs blobs of PassTotalBlobs have been checked (or skipped).
	PassBlobs      int `json:"pass_blobs"`
	PassTotalBlobs int `json:"pass_total_blobs"`
	// PassCorrupt are the corrupt blobs found by this pass, PassSkipped
	// those that vanished before they were read, PassReadErrors those
	// that could not be read.
	PassCorrupt    int `json:"pass_corrupt"`
	PassSkipped    int `json:"pass_skipped"`
	PassReadErrors int `json:"pass_read_errors"`
	// CorruptTotal counts findings since start: a blob that stays corrupt
	// counts once per pass.
	CorruptTotal int64 `json:"corrupt_total"`
	// BytesRead counts the bytes read and hashed since start.
	BytesRead int64 `json:"bytes_read"`
	// LastFullPass is the number of the last pass that got through its
	// whole list, LastPassFinished when it ended and LastFullPassCorrupt
	// the corrupt blobs it found; zero before one has. A pass cut short by
	// shutdown or a failed List is not full.
	LastFullPass        int       `json:"last_full_pass"`
	LastPassFinished    time.Time `json:"last_pass_finished,omitzero"`
	LastFullPassCorrupt int       `json:"last_full_pass_corrupt"`
	// NextPass is when the next pass is due, while none is running (in
	// the past when the last pass took longer than the interval: the
	// next one is starting).
	NextPass time.Time `json:"next_pass,omitzero"`
	// LastError is the last failure of List or of a read, if any.
	LastError string `json:"last_error,omitempty"`
}

// Progress is the fraction of the current pass done, between 0 and 1; 1
// when no pass is running and one has finished.
func (s Status) Progress() float64 {
	switch {
	case s.Running && s.PassTotalBytes > 0:
		return min(float64(s.PassBytes)/float64(s.PassTotalBytes), 1)
	case s.Running:
		if s.PassTotalBlobs == 0 {
			return 0
		}
		return float64(s.PassBlobs) / float64(s.PassTotalBlobs)
	case s.LastPassFinished.IsZero():
		return 0
	}
	return 1
}

// Scrubber checks blobs in passes. Create it with New and start it with
// Run; Status, Changed and Trigger are safe to call from any goroutine at
// any time.
type Scrubber struct {
	cfg     Config
	log     *slog.Logger
	lim     *rate.Limiter // nil: Unlimited
	trigger chan struct{}
	buf     []byte
	h       hash.Hash
	changed broadcast.Signal

	mu sync.Mutex
	st Status
}

// New checks cfg and returns a Scrubber that is not yet running.
func New(cfg Config) (*Scrubber, error) {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	var errs []error
	if cfg.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %v: must be positive", cfg.Interval))
	}
	if cfg.List == nil {
		errs = append(errs, errors.New("list: required"))
	}
	if cfg.Open == nil {
		errs = append(errs, errors.New("open: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scrub config: %w", err)
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Scrubber{
		cfg:     cfg,
		log:     cfg.Logger,
		trigger: make(chan struct{}, 1),
		buf:     make([]byte, chunk),
		h:       sha256.New(),
	}
	if s.cfg.OnCorrupt == nil {
		s.cfg.OnCorrupt = s.logFinding
	}
	if cfg.Rate > 0 {
		s.lim = rate.NewLimiter(rate.Limit(cfg.Rate), chunk)
	}
	return s, nil
}

func (s *Scrubber) logFinding(f Finding) {
	s.log.Error("scrub: corrupt blob", "digest", f.Digest.String(), "reason", f.Reason(),
		"size", f.Size, "read", f.Read, "got", f.Got.String())
}

// Status returns the progress so far.
func (s *Scrubber) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Changed returns a channel that is closed when a pass has listed its
// blobs (so Status has its totals) and when a pass ends, full or not;
// progress within a pass is not signalled. Take the channel before
// reading Status, so that a change in between is not missed.
func (s *Scrubber) Changed() <-chan struct{} { return s.changed.C() }

// Trigger asks for a pass now. A pass that starts after Trigger is called
// follows: at once when none is running, else as soon as the running one
// ends. Triggers made while one is pending count once.
func (s *Scrubber) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run scrubs until ctx ends, then returns ctx's error. The first pass
// starts at once. Call it once.
func (s *Scrubber) Run(ctx context.Context) error {
	for {
		// A trigger made before this pass starts is served by it.
		select {
		case <-s.trigger:
		default:
		}
		start := s.cfg.Clock.Now()
		s.pass(ctx, start)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := s.cfg.Interval - s.cfg.Clock.Since(start)
		if wait <= 0 {
			continue
		}
		t := s.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		case <-s.trigger:
			t.Stop()
		}
	}
}

// pass checks every blob List returns once.
func (s *Scrubber) pass(ctx context.Context, start time.Time) {
	s.mu.Lock()
	s.st.Pass++
	s.st.Running = true
	s.st.PassStarted = start
	s.st.NextPass = time.Time{}
	s.st.PassBytes, s.st.PassTotalBytes = 0, 0
	s.st.PassBlobs, s.st.PassTotalBlobs = 0, 0
	s.st.PassCorrupt, s.st.PassSkipped, s.st.PassReadErrors = 0, 0, 0
	pass := s.st.Pass
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.st.Running = false
		s.st.NextPass = start.Add(s.cfg.Interval)
		s.mu.Unlock()
		s.changed.Broadcast()
	}()

	blobs, err := s.cfg.List(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("scrub: list blobs", "pass", pass, "err", err)
			s.setError(err)
		}
		return
	}
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	s.mu.Lock()
	s.st.PassTotalBytes, s.st.PassTotalBlobs = total, len(blobs)
	s.mu.Unlock()
	s.changed.Broadcast()
	s.log.Debug("scrub: pass started", "pass", pass, "blobs", len(blobs), "bytes", total)

	first := 0
	if len(blobs) > 1 {
		first = rand.IntN(len(blobs))
	}
	for i := range blobs {
		if ctx.Err() != nil {
			return
		}
		b := blobs[(first+i)%len(blobs)]
		res, f, err := s.check(ctx, b)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.st.PassBlobs++
		s.st.PassBytes += b.Size - min(f.Read, b.Size) // the rest of the blob, read or not
		switch res {
		case vanished:
			s.st.PassSkipped++
		case unreadable:
			s.st.PassReadErrors++
			s.st.LastError = err.Error()
		case corrupt:
			s.st.PassCorrupt++
			s.st.CorruptTotal++
		}
		s.mu.Unlock()
		switch res {
		case unreadable:
			s.log.Error("scrub: read blob", "digest", b.Digest.String(), "err", err)
		case corrupt:
			f.Pass, f.At = pass, s.cfg.Clock.Now()
			s.cfg.OnCorrupt(f)
		}
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	s.st.LastFullPass, s.st.LastPassFinished, s.st.LastFullPassCorrupt = pass, now, s.st.PassCorrupt
	st := s.st
	s.mu.Unlock()
	s.log.Info("scrub: pass done", "pass", pass, "blobs", st.PassBlobs, "bytes", st.PassTotalBytes,
		"corrupt", st.PassCorrupt, "skipped", st.PassSkipped, "read_errors", st.PassReadErrors,
		"took", now.Sub(start))
}

func (s *Scrubber) setError(err error) {
	s.mu.Lock()
	s.st.LastError = err.Error()
	s.mu.Unlock()
}

type result int

const (
	intact result = iota
	corrupt
	vanished
	unreadable
)

// check reads b at the rate limit and compares it with its digest. The
// returned Finding's Read is the bytes read, whatever the result.
func (s *Scrubber) check(ctx context.Context, b Blob) (result, Finding, error) {
	f := Finding{Blob: b}
	r, err := s.cfg.Open(b.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		return vanished, f, nil
	}
	if err != nil {
		return unreadable, f, err
	}
	defer r.Close()
	s.h.Reset()
	for {
		// Read one byte past the expected end, to tell a longer file.
		want := int(min(int64(chunk), b.Size+1-f.Read))
		if want <= 0 {
			break
		}
		if err := s.wait(ctx, want); err != nil {
			return unreadable, f, err
		}
		n, err := io.ReadFull(r, s.buf[:want])
		s.h.Write(s.buf[:n])
		f.Read += int64(n)
		s.mu.Lock()
		s.st.BytesRead += int64(n)
		s.st.PassBytes += min(int64(n), max(b.Size-(f.Read-int64(n)), 0))
		s.mu.Unlock()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return unreadable, f, err
		}
	}
	s.h.Sum(f.Got[:0])
	if f.Read != b.Size || f.Got != b.Digest {
		return corrupt, f, nil
	}
	return intact, f, nil
}

// wait blocks until n more bytes may be read, or ctx ends.
func (s *Scrubber) wait(ctx context.Context, n int) error {
	if s.lim == nil {
		return ctx.Err()
	}
	now := s.cfg.Clock.Now()
	r := s.lim.ReserveN(now, n) // n <= chunk, the burst: always OK
	d := r.DelayFrom(now)
	if d <= 0 {
		return ctx.Err()
	}
	t := s.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		r.CancelAt(s.cfg.Clock.Now())
		return ctx.Err()
	case <-t.C():
		return nil
	}
}
