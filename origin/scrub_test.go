package origin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/wire"
)

// recordHandler keeps the records logged at Error and passes every record
// on to next.
type recordHandler struct {
	next  slog.Handler
	attrs []slog.Attr
	mu    *sync.Mutex
	errs  *[]map[string]string
}

func newRecordHandler(next slog.Handler) *recordHandler {
	return &recordHandler{next: next, mu: &sync.Mutex{}, errs: &[]map[string]string{}}
}

func (h *recordHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *recordHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		m := map[string]string{"msg": r.Message}
		for _, a := range h.attrs {
			m[a.Key] = a.Value.String()
		}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		h.mu.Lock()
		*h.errs = append(*h.errs, m)
		h.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), as...)
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

func (h *recordHandler) errors() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.errs)
}

// metricValue reads the single value of an unlabelled counter or gauge.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// scrubPass starts a scrub pass through the admin API and waits for it
// to finish.
func (to *testOrigin) scrubPass(t *testing.T) ScrubStatus {
	t.Helper()
	before := to.ScrubStatus().Pass
	auth := map[string]string{"Authorization": "Bearer " + to.token}
	if code, body := rawRequest(t, to.HTTPAddr().String(), "POST", "/v1/scrub", auth, ""); code != http.StatusAccepted {
		t.Fatalf("POST /v1/scrub: %d %s, want 202", code, body)
	}
	var st ScrubStatus
	eventually(t, "a scrub pass", func() bool {
		st = to.ScrubStatus()
		return st.Pass > before && !st.Running
	})
	return st
}

func (to *testOrigin) getStatus(t *testing.T) Status {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+to.HTTPAddr().String()+"/v1/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+to.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/status: %s", resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /v1/status: %v", err)
	}
	return st
}

// TestScrubFindsCorruptBlob flips a byte of a blob on disk: the next pass
// reports it in the log, the metrics and /v1/status, naming the keys that
// reference it; once the file is restored, a pass later it is no longer
// listed.
func TestScrubFindsCorruptBlob(t *testing.T) {
	logs := newRecordHandler(slog.NewTextHandler(&quicLogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	to := startTestOrigin(t, func(c *Config) {
		c.Logger = slog.New(logs)
		c.Registry = reg
	})
	// Larger than maxInline, so that it is a file on disk (inline content
	// lives in the catalog).
	bad := []byte(strings.Repeat("content that rots on disk\n", 3000))
	good := []byte("content that stays intact\n")
	for key, body := range map[string][]byte{"a.txt": bad, "copy-of-a.txt": bad, "b.txt": good} {
		if code, res := to.publish(t, key, body, ""); code != http.StatusCreated {
			t.Fatalf("publish %s: %d %+v", key, code, res)
		}
	}
	badDigest := wire.Digest(sha256.Sum256(bad))
	path := to.store.blobPath(badDigest)

	// A clean pass first: nothing found, every byte read.
	st := to.scrubPass(t)
	if st.PassCorrupt != 0 || st.PassTotalBlobs != 2 || st.PassTotalBytes != int64(len(bad)+len(good)) {
		t.Fatalf("clean pass: %+v, want 2 blobs of %d bytes, none corrupt", st.Status, len(bad)+len(good))
	}

	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(orig)
	flipped[len(flipped)/2] ^= 0x01
	if err := os.WriteFile(path, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	st = to.scrubPass(t)
	if st.PassCorrupt != 1 || st.CorruptTotal != 1 {
		t.Fatalf("after flipping a byte: %+v, want 1 corrupt blob", st.Status)
	}
	if got := metricValue(t, reg, "geocdn_origin_scrub_corrupt_blobs_total"); got != 1 {
		t.Errorf("geocdn_origin_scrub_corrupt_blobs_total = %v, want 1", got)
	}
	if got, min := metricValue(t, reg, "geocdn_origin_scrub_bytes_total"), float64(2*(len(bad)+len(good))); got < min {
		t.Errorf("geocdn_origin_scrub_bytes_total = %v, want at least %v", got, min)
	}
	if got := metricValue(t, reg, "geocdn_origin_scrub_pass_progress"); got != 1 {
		t.Errorf("geocdn_origin_scrub_pass_progress = %v after a pass, want 1", got)
	}

	var logged map[string]string
	for _, rec := range logs.errors() {
		if rec["digest"] == badDigest.String() {
			logged = rec
		}
	}
	if logged == nil {
		t.Fatalf("no Error log line names %s; logged %v", badDigest, logs.errors())
	}
	if logged["path"] != path || !strings.Contains(logged["keys"], "default:a.txt") ||
		!strings.Contains(logged["keys"], "default:copy-of-a.txt") || !strings.Contains(logged["msg"], "CORRUPT") {
		t.Errorf("log line %v, want the path %s and keys default:a.txt and default:copy-of-a.txt", logged, path)
	}

	status := to.getStatus(t)
	if status.ID != "origin-1" || status.LastLSN != to.LastLSN() || status.Edges == nil || len(status.Edges) != 0 {
		t.Errorf("/v1/status: id %q lsn %d edges %v, want origin-1, %d and an empty list", status.ID, status.LastLSN, status.Edges, to.LastLSN())
	}
	if status.Scrub.PassCorrupt != 1 || len(status.Scrub.CorruptBlobs) != 1 || status.Scrub.Progress != 1 {
		t.Fatalf("/v1/status scrub: %+v, want one corrupt blob listed", status.Scrub)
	}
	cb := status.Scrub.CorruptBlobs[0]
	wantKeys := []ObjectRef{{"default", "a.txt"}, {"default", "copy-of-a.txt"}}
	if cb.Digest != badDigest || cb.Path != path || cb.Reason != "digest mismatch" || cb.Size != int64(len(bad)) ||
		!slices.Equal(cb.Keys, wantKeys) {
		t.Errorf("/v1/status lists %+v, want %s at %s (digest mismatch, %d bytes) named by %v", cb, badDigest, path, len(bad), wantKeys)
	}

	// Restored, it is no longer listed once a pass has not found it; the
	// counter keeps what was found.
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	st = to.scrubPass(t)
	if st.PassCorrupt != 0 || len(st.CorruptBlobs) != 0 {
		t.Errorf("after restoring the file: %+v, want nothing corrupt or listed", st)
	}
	if got := metricValue(t, reg, "geocdn_origin_scrub_corrupt_blobs_total"); got != 1 {
		t.Errorf("geocdn_origin_scrub_corrupt_blobs_total = %v after the repair, want still 1", got)
	}
}

func TestCorruptListCapped(t *testing.T) {
	var c corruptList
	digest := func(i int) wire.Digest { return wire.Digest(sha256.Sum256([]byte(fmt.Sprint(i)))) }
	for i := range maxCorruptListed + 10 {
		c.add(CorruptBlob{Digest: digest(i), Pass: 1}, 0)
	}
	if got := len(c.list(0)); got != maxCorruptListed {
		t.Fatalf("listed %d after %d findings, want the cap %d", got, maxCorruptListed+10, maxCorruptListed)
	}
	// Pass 2 runs after full pass 1: its findings displace pass 1's when
	// the list is full, and both are listed.
	c.add(CorruptBlob{Digest: digest(-1), Pass: 2}, 1)
	if got, now := len(c.list(1)), len(c.list(2)); got != maxCorruptListed || now != 1 {
		t.Fatalf("listed %d from pass 1 on and %d from pass 2, want %d and 1", got, now, maxCorruptListed)
	}
	// Once pass 2 was full, pass 1's findings are forgotten.
	c.add(CorruptBlob{Digest: digest(-2), Pass: 3}, 2)
	if got := len(c.list(0)); got != 2 {
		t.Fatalf("listed %d after pass 2 was full, want its finding and pass 3's", got)
	}
}

func TestScrubConfig(t *testing.T) {
	base := Config{DataDir: "d", CA: nil, Token: "0123456789abcdef"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative rate", func(c *Config) { c.ScrubRate = -1 }, "scrub rate"},
		{"negative interval", func(c *Config) { c.ScrubInterval = -time.Hour }, "scrub interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			if err := c.withDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	d := base.withDefaults()
	if d.ScrubRate != 20<<20 || d.ScrubInterval != 24*time.Hour {
		t.Errorf("defaults: rate %d interval %v, want 20 MiB/s and 24h", d.ScrubRate, d.ScrubInterval)
	}
}
