package loadtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

var chartIDs = []string{"latency-over-time", "region-latency", "hit-ratio-over-time", "rate-over-time"}

func TestHTMLSelfContained(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, syntheticReport()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, id := range chartIDs {
		if !strings.Contains(page, `data-chart="`+id+`"`) {
			t.Errorf("no chart %s", id)
		}
	}
	// Nothing is loaded from anywhere: no src or href but data: URLs,
	// no url() in the style, and a policy that forbids loads anyway.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\b(src|href|xlink:href)\s*=\s*["']?(?:[^"'d]|d[^a])`),
		regexp.MustCompile(`(?i)url\(`),
		regexp.MustCompile(`(?i)@import`),
		regexp.MustCompile(`(?i)<script`),
	} {
		if m := re.FindString(page); m != "" {
			t.Errorf("page has %q", m)
		}
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'; img-src data:"`) {
		t.Error("page lacks its Content-Security-Policy")
	}
	// The event whose description looks like markup is escaped.
	if !strings.Contains(page, "publish &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("event description not escaped as text")
	}
	for _, want := range []string{"table-regions", "table-ops", "table-edges", "kill lhr-1", "body hashes to", "Origin offload"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHTMLEmptyReport(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, NewRecorder().Report(RunInfo{Scenario: "nothing"})); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), `class="empty"`); n != len(chartIDs) {
		t.Errorf("%d charts say they have no data, want all %d", n, len(chartIDs))
	}
}

func TestHTMLTicks(t *testing.T) {
	for _, tt := range []struct {
		t    float64
		want string
	}{{0, "0s"}, {4.5, "4.5s"}, {45, "45s"}, {60, "1m"}, {150, "2m30s"}, {3600, "1h"}, {3900, "1h5m"}} {
		if got := fmtTick(tt.t); got != tt.want {
			t.Errorf("fmtTick(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
	for _, tt := range []struct {
		span float64
		want float64
	}{{1, 0.2}, {7, 2}, {300, 100}, {0.03, 0.01}} {
		if got := niceStep(tt.span, 5, nil); got != tt.want {
			t.Errorf("niceStep(%v, 5) = %v, want %v", tt.span, got, tt.want)
		}
	}
}

// browserPath finds Debian's (or another distribution's) Chromium.
func browserPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserRendersReport opens the HTML report of a synthetic run in
// headless Chromium and checks that it renders each chart without a
// script error and without loading anything but itself.
func TestBrowserRendersReport(t *testing.T) {
	browser := browserPath()
	if browser == "" {
		t.Skip("chromium not installed: no chromium or chromium-browser in PATH (apt-get install chromium)")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	if err := WriteHTML(&buf, syntheticReport()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	pageURL := "file://" + file

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(1280, 2000),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer bcancel()

	var mu sync.Mutex
	var problems, requests []string
	// Listen starts the browser and the tab before it returns, so the
	// events of everything after it are seen.
	err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			problems = append(problems, "exception: "+msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value), a.Description)
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		case *log.EventEntryAdded:
			// The browser's own messages, CSP violations among them.
			if ev.Entry.Level == log.EntryLevelError {
				problems = append(problems, "log: "+ev.Entry.Text)
			}
		case *network.EventRequestWillBeSent:
			requests = append(requests, ev.Request.URL)
		}
	})
	if err != nil {
		t.Fatalf("start browser: %v", err)
	}

	type chartInfo struct {
		Marks, Drawn, Points, Markers, XTicks, YTicks int
		MarkerLabels                                  []string
		Width, Height                                 float64
	}
	type pageInfo struct {
		Charts  map[string]*chartInfo
		Scripts int
		Title   string
		Tables  int
	}
	const inspect = `(() => {
		const charts = {};
		for (const id of ` + `["latency-over-time", "region-latency", "hit-ratio-over-time", "rate-over-time"]` + `) {
			const svg = document.querySelector('svg[data-chart="' + id + '"]');
			if (!svg) { charts[id] = null; continue; }
			const marks = [...svg.querySelectorAll("path.line, rect.bar")];
			let drawn = 0, points = 0;
			for (const m of marks) {
				const b = m.getBBox();
				if (b.width > 0 && b.height > 0) drawn++;
				if (m.tagName === "path") points += (m.getAttribute("d").match(/[ML]/g) || []).length;
			}
			const r = svg.getBoundingClientRect();
			charts[id] = {
				Marks: marks.length, Drawn: drawn, Points: points,
				Markers: svg.querySelectorAll("line.marker").length,
				MarkerLabels: [...svg.querySelectorAll("text.marker-label")].map(t => t.textContent),
				XTicks: svg.querySelectorAll(".x-ticks text").length,
				YTicks: svg.querySelectorAll(".y-ticks text").length,
				Width: r.width, Height: r.height,
			};
		}
		return {Charts: charts, Scripts: document.scripts.length, Title: document.title,
			Tables: document.querySelectorAll("table").length};
	})()`
	// Navigate returns once the page has loaded.
	if err := chromedp.Do(bctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("browser: %v", err)
	}
	res, err := chromedp.Run(bctx, chromedp.Evaluate[pageInfo](inspect))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("page reported %s", p)
	}
	if len(requests) == 0 {
		t.Error("saw no network request at all: the listener is not working")
	}
	for _, u := range requests {
		if u != pageURL && !strings.HasPrefix(u, "data:") {
			t.Errorf("page requested %s", u)
		}
	}
	if res.Title != "Load test synthetic" || res.Scripts != 0 || res.Tables < 4 {
		t.Errorf("title %q, %d scripts, %d tables; want the report's title, none, at least 4", res.Title, res.Scripts, res.Tables)
	}
	for _, id := range chartIDs {
		c := res.Charts[id]
		if c == nil {
			t.Errorf("chart %s: not in the page", id)
			continue
		}
		t.Logf("chart %s: %+v", id, *c)
		if c.Width < 100 || c.Height < 50 {
			t.Errorf("chart %s is %v×%v px, want a visible chart", id, c.Width, c.Height)
		}
		if c.Drawn == 0 || c.XTicks < 2 || c.YTicks < 2 {
			t.Errorf("chart %s: %d of %d marks drawn, %d x ticks, %d y ticks; want data and axes", id, c.Drawn, c.Marks, c.XTicks, c.YTicks)
		}
		if id == "region-latency" {
			// Four bars for each of lhr, nyc and sin; syd had no request.
			if c.Drawn != 12 {
				t.Errorf("region chart: %d bars drawn, want 12", c.Drawn)
			}
			continue
		}
		if c.Points < 30 {
			t.Errorf("chart %s: %d points, want one per second of the run", id, c.Points)
		}
		want := []string{"kill lhr-1", "restart lhr-1", "purge prefix loadtest/syn/", `publish <script>alert("x")</script>`}
		if strings.Join(c.MarkerLabels, "|") != strings.Join(want, "|") || c.Markers != len(want) {
			t.Errorf("chart %s: %d markers labelled %q, want %q", id, c.Markers, c.MarkerLabels, want)
		}
	}
}
