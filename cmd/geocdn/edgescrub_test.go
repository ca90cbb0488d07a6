package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/origin"
)

func TestScrubColumn(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		p    *origin.ScrubProgress
		want string
	}{
		{"not reported", nil, "-"},
		{"before the first pass", &origin.ScrubProgress{}, "no pass yet"},
		{"listing", &origin.ScrubProgress{Pass: 1, Running: true}, "pass 1"},
		{"running", &origin.ScrubProgress{Pass: 3, Running: true, Progress: 0.4199, PassTotalBlobs: 10, LastFullPass: 2}, "pass 3 41%"},
		{"running, nearly done", &origin.ScrubProgress{Pass: 3, Running: true, Progress: 0.9999, PassTotalBlobs: 10}, "pass 3 99%"},
		{"running over empty blobs", &origin.ScrubProgress{Pass: 2, Running: true, Progress: 1, PassTotalBlobs: 3}, "pass 2 99%"},
		{"running, found corruption", &origin.ScrubProgress{Pass: 3, Running: true, Progress: 0.5, PassTotalBlobs: 10, PassCorrupt: 1, LastFullPassCorrupt: 2}, "pass 3 50% 1 CORRUPT"},
		{"running after a corrupt pass", &origin.ScrubProgress{Pass: 3, Running: true, Progress: 0.05, PassTotalBlobs: 10, LastFullPass: 2, LastFullPassCorrupt: 2}, "pass 3 5%, last 2 CORRUPT"},
		{"clean", &origin.ScrubProgress{Pass: 4, LastFullPass: 4, Progress: 1, LastPassFinished: now.Add(-2*time.Hour - 10*time.Minute)}, "ok 2h ago"},
		{"clean, seconds ago", &origin.ScrubProgress{Pass: 1, LastFullPass: 1, LastPassFinished: now.Add(-1500 * time.Millisecond)}, "ok 1s ago"},
		{"clean, days ago", &origin.ScrubProgress{Pass: 1, LastFullPass: 1, LastPassFinished: now.Add(-50 * time.Hour)}, "ok 2d ago"},
		{"clean, edge clock ahead", &origin.ScrubProgress{Pass: 1, LastFullPass: 1, LastPassFinished: now.Add(time.Minute)}, "ok 0s ago"},
		{"corrupt", &origin.ScrubProgress{Pass: 4, LastFullPass: 4, PassCorrupt: 2, LastFullPassCorrupt: 2, LastPassFinished: now.Add(-5 * time.Minute)}, "2 CORRUPT 5m ago"},
		{"unreadable", &origin.ScrubProgress{Pass: 4, LastFullPass: 4, PassReadErrors: 3, LastPassFinished: now.Add(-time.Minute)}, "ok 1m ago, 3 unreadable"},
		{"cut short", &origin.ScrubProgress{Pass: 1}, "pass 1 cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scrubColumn(tc.p, now); got != tc.want {
				t.Errorf("scrubColumn(%+v) = %q, want %q", tc.p, got, tc.want)
			}
		})
	}
}

// statusRow returns the cells of edge id's row in `geocdn status` output,
// split on the table's column gaps, with the header's.
func statusRow(out, id string) (header, row []string) {
	split := func(line string) []string {
		var cells []string
		for _, c := range strings.Split(line, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				cells = append(cells, c)
			}
		}
		return cells
	}
	for _, line := range strings.Split(out, "\n") {
		switch f := strings.Fields(line); {
		case len(f) > 0 && f[0] == "EDGE":
			header = split(line)
		case len(f) > 0 && f[0] == id:
			row = split(line)
		}
	}
	return header, row
}

// scrubCell is edge id's SCRUB cell in `geocdn status`, "" if there is
// no such row or column.
func scrubCell(t *testing.T, cli []string, id string) string {
	t.Helper()
	header, row := statusRow(mustCLI(t, append([]string{"status"}, cli...)...), id)
	for i, h := range header {
		if h == "SCRUB" && i < len(row) {
			return row[i]
		}
	}
	return ""
}

// With the real binaries: `geocdn status` shows an edge's clean scrub pass,
// then, after a blob rotted on its disk while it was stopped, the
// corruption the pass at its restart found; --json carries the figures.
func TestStatusShowsEdgeScrub(t *testing.T) {
	c := newCluster(t)
	// Passes only at the edge's start: what a pass found stays shown.
	e := c.addEdge("fra", "eu-central", 50.11, 8.68, "--scrub-interval", "24h")
	c.start()
	body := []byte(strings.Repeat("scrub me ", 1000))
	res := c.mustPublish("scrub/a.txt", body, "w=all")
	c.mustPublish("scrub/b.txt", []byte("another object"), "w=all")
	cli := []string{"--origin", c.originURL(), "--token-file", c.tokenFile}

	// The pass at the edge's start, over an empty store, is over.
	var cell string
	waitFor(t, "status showing fra's clean scrub pass", func() bool {
		cell = scrubCell(t, cli, "fra")
		return strings.HasPrefix(cell, "ok ") && strings.HasSuffix(cell, " ago")
	}, c.origin, e.p)

	e.p.signal(t, syscall.SIGTERM)
	e.p.wait(t)
	path := filepath.Join(e.data, "blobs", res.Digest[:2], res.Digest)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0); err != nil {
		t.Fatal(err)
	}
	c.startEdge(e)
	waitFor(t, "status showing fra's corrupt blob", func() bool {
		cell = scrubCell(t, cli, "fra")
		return strings.HasPrefix(cell, "1 CORRUPT ") && strings.HasSuffix(cell, " ago")
	}, c.origin, e.p)

	var st origin.Status
	if err := json.Unmarshal([]byte(mustCLI(t, append([]string{"status", "--json"}, cli...)...)), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Edges) != 1 || st.Edges[0].Scrub == nil {
		t.Fatalf("status --json edges %+v, want fra with its scrub progress", st.Edges)
	}
	if p := st.Edges[0].Scrub; p.Running || p.Pass != 1 || p.LastFullPass != 1 || p.LastFullPassCorrupt != 1 ||
		p.CorruptTotal != 1 || p.PassTotalBlobs != 2 || p.Progress != 1 || p.LastPassFinished.IsZero() {
		t.Fatalf("status --json scrub of fra %+v, want pass 1 done over 2 blobs with 1 corrupt", *p)
	}
}
