package edge

import (
	"context"
	"log/slog"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

// scrubReportInterval is the least time between two reports of one
// running pass's progress. A pass's start and end are reported at once.
const scrubReportInterval = 10 * time.Second

// scrubSource is the scrubber as reportScrub reads it.
type scrubSource interface {
	Status() scrub.Status
	// Changed is closed when a pass starts (has listed its blobs) or ends.
	Changed() <-chan struct{}
}

var _ scrubSource = (*scrub.Scrubber)(nil)

// reportScrub tells the origin, on the session's control stream, how the
// scrubber is doing, so that `geocdn status` can show it per edge.
func (e *Edge) reportScrub(ctx context.Context, s *session) error {
	return reportScrub(ctx, e.clk, e.scrubber, s.send, e.log)
}

// reportScrub sends src's progress with send: once at once (the origin
// knows nothing of this edge's scrubbing after a reconnect, or its own
// restart), when a pass starts and when it ends, and every
// scrubReportInterval while a pass runs, if its progress moved. It
// returns nil when ctx ends, or send's error: the control stream is
// broken and the session with it.
func reportScrub(ctx context.Context, clk clock.Clock, src scrubSource, send func(wire.Frame) error, log *slog.Logger) error {
	clk = clock.Or(clk)
	var (
		last  wire.ScrubProgress
		sent  bool
		tick  clock.Ticker // while a pass runs
		tickC <-chan time.Time
	)
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		changed := src.Changed()
		st := src.Status()
		if p := scrubProgress(st); !sent || p != last {
			if err := p.Validate(); err != nil {
				// The origin would drop the connection for it. Not
				// expected: the scrubber's counts are consistent.
				log.Error("scrub progress not reported", "err", err, "status", st)
			} else if err := send(p); err != nil {
				return err
			}
			last, sent = p, true
		}
		switch {
		case st.Running && tick == nil:
			tick = clk.NewTicker(scrubReportInterval)
			tickC = tick.C()
		case !st.Running && tick != nil:
			tick.Stop()
			tick, tickC = nil, nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tickC:
		}
	}
}

// scrubProgress is st as the wire carries it.
func scrubProgress(st scrub.Status) wire.ScrubProgress {
	p := wire.ScrubProgress{
		Pass: wireCount(st.Pass), Running: st.Running,
		Bytes: wireCount(st.PassBytes), TotalBytes: wireCount(st.PassTotalBytes),
		Blobs: wireCount(st.PassBlobs), TotalBlobs: wireCount(st.PassTotalBlobs),
		Corrupt: wireCount(st.PassCorrupt), ReadErrors: wireCount(st.PassReadErrors),
		LastFullPass: wireCount(st.LastFullPass), LastFullPassCorrupt: wireCount(st.LastFullPassCorrupt),
		CorruptTotal: wireCount(st.CorruptTotal),
	}
	if st.LastFullPass > 0 {
		p.LastFullPassMillis = wireCount(st.LastPassFinished.UnixMilli())
	}
	return p
}

// wireCount is n as a wire count: negative is 0, and beyond wire.MaxVarint
// (which no count of a running edge reaches) is wire.MaxVarint, since
// Append panics on more.
func wireCount[T int | int64](n T) uint64 {
	return min(uint64(max(n, 0)), wire.MaxVarint)
}
