package main

import (
	"fmt"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// scrubColumn is an edge's SCRUB cell in `geocdn status`: how far the
// running pass has got ("pass 3 41%"), or what the last full pass found
// and how long ago it ended ("ok 2h ago", "2 CORRUPT 5m ago"); "-" when
// the edge has not reported since the origin started. Corruption is in
// capitals so that it stands out of the table; a running pass still
// shows what the last one found, which the running one will confirm or
// not.
func scrubColumn(p *origin.ScrubProgress, now time.Time) string {
	if p == nil {
		return "-"
	}
	var s string
	switch {
	case p.Running:
		s = fmt.Sprintf("pass %d", p.Pass)
		if p.PassTotalBlobs > 0 {
			// Rounded down, so 100% means done.
			s += fmt.Sprintf(" %d%%", min(int(p.Progress*100), 99))
		}
		if p.PassCorrupt > 0 {
			s += fmt.Sprintf(" %d CORRUPT", p.PassCorrupt)
		} else if p.LastFullPassCorrupt > 0 {
			s += fmt.Sprintf(", last %d CORRUPT", p.LastFullPassCorrupt)
		}
	case p.LastFullPass > 0:
		s = "ok"
		if p.LastFullPassCorrupt > 0 {
			s = fmt.Sprintf("%d CORRUPT", p.LastFullPassCorrupt)
		}
		s += " " + shortAge(now.Sub(p.LastPassFinished)) + " ago"
	case p.Pass > 0:
		// Shut down, or the blobs could not be listed.
		s = fmt.Sprintf("pass %d cut short", p.Pass)
	default:
		s = "no pass yet"
	}
	if p.PassReadErrors > 0 {
		s += fmt.Sprintf(", %d unreadable", p.PassReadErrors)
	}
	return s
}

// shortAge is d in its largest whole unit (45s, 12m, 5h, 3d), for a
// table cell; negative, from clocks that disagree, is 0s.
func shortAge(d time.Duration) string {
	switch d = max(d, 0); {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
