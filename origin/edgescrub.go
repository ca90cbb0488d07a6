package origin

import (
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// ScrubProgress is an edge's blob scrubbing as the edge last reported it
// (wire.ScrubProgress), the scrub field of a GET /v1/edges row. Field
// names follow the origin's own scrub section of GET /v1/status.
//
// An edge reports when it connects, when a pass starts and ends, and at
// most every 10 seconds while a pass runs, so a report is at most that
// stale while the edge is up; the origin keeps the last one of an edge
// that went away, with ReportedAt saying how old it is, and forgets them
// all when it restarts.
type ScrubProgress struct {
	// ReportedAt is when the origin received the report.
	ReportedAt time.Time `json:"reported_at"`
	// Pass is the number of the pass running, or of the last one when
	// none is, from 1; 0 before the first.
	Pass    uint64 `json:"pass"`
	Running bool   `json:"running"`
	// Progress is the fraction of the running pass done, 0 to 1; 1 when
	// no pass runs and one has got through its whole list, else 0.
	Progress float64 `json:"progress"`
	// PassBytes of PassTotalBytes, and PassBlobs of PassTotalBlobs, is how
	// far Pass has got; the totals are 0 until it has listed its blobs.
	PassBytes      uint64 `json:"pass_bytes"`
	PassTotalBytes uint64 `json:"pass_total_bytes"`
	PassBlobs      uint64 `json:"pass_blobs"`
	PassTotalBlobs uint64 `json:"pass_total_blobs"`
	// PassCorrupt are the blobs Pass found not matching their digest,
	// which the edge quarantined (it fetches them again from the origin);
	// PassReadErrors those it could not read.
	PassCorrupt    uint64 `json:"pass_corrupt"`
	PassReadErrors uint64 `json:"pass_read_errors"`
	// LastFullPass is the number of the last pass that got through its
	// whole list, LastFullPassCorrupt the corrupt blobs it found and
	// LastPassFinished when it ended; zero before one has.
	LastFullPass        uint64    `json:"last_full_pass"`
	LastFullPassCorrupt uint64    `json:"last_full_pass_corrupt"`
	LastPassFinished    time.Time `json:"last_pass_finished,omitzero"`
	// CorruptTotal counts corrupt findings since the edge started; a blob
	// that stays corrupt counts once per pass.
	CorruptTotal uint64 `json:"corrupt_total"`
}

// scrubProgress turns an edge's report, received at at, into its status.
func scrubProgress(at time.Time, m wire.ScrubProgress) ScrubProgress {
	p := ScrubProgress{
		ReportedAt: at, Pass: m.Pass, Running: m.Running,
		PassBytes: m.Bytes, PassTotalBytes: m.TotalBytes, PassBlobs: m.Blobs, PassTotalBlobs: m.TotalBlobs,
		PassCorrupt: m.Corrupt, PassReadErrors: m.ReadErrors,
		LastFullPass: m.LastFullPass, LastFullPassCorrupt: m.LastFullPassCorrupt, CorruptTotal: m.CorruptTotal,
	}
	// A varint holds times JSON cannot (beyond year 9999), which would
	// spoil the whole /v1/edges answer: those are left out.
	if t := time.UnixMilli(int64(m.LastFullPassMillis)).UTC(); m.LastFullPass > 0 && t.Year() <= 9999 {
		p.LastPassFinished = t
	}
	// As scrub.Status.Progress: by bytes, or by blobs when the blobs
	// listed are all empty.
	switch {
	case m.Running && m.TotalBytes > 0:
		p.Progress = float64(m.Bytes) / float64(m.TotalBytes)
	case m.Running && m.TotalBlobs > 0:
		p.Progress = float64(m.Blobs) / float64(m.TotalBlobs)
	case !m.Running && m.LastFullPass > 0:
		p.Progress = 1
	}
	return p
}

// edgeScrubbed records e's scrub report m. Corruption an edge's pass
// found is logged once per pass, as the edge does, so that the origin's
// log tells which edges' disks are failing.
func (o *Origin) edgeScrubbed(e *edge, m wire.ScrubProgress) {
	p := scrubProgress(o.clk.Now(), m)
	e.mu.Lock()
	prev := e.scrub
	e.scrub = &p
	e.mu.Unlock()
	// The first report after a reconnect repeats the edge's last pass.
	repeat := prev != nil && prev.LastFullPass == p.LastFullPass && prev.CorruptTotal == p.CorruptTotal
	if m.LastFullPassCorrupt > 0 && !m.Running && m.LastFullPass == m.Pass && !repeat {
		o.log.Warn("edge scrub found corrupt blobs; the edge quarantined them and fetches them again",
			"edge", e.info.ID, "pass", m.LastFullPass, "corrupt", m.LastFullPassCorrupt, "corrupt_total", m.CorruptTotal)
	}
}
