package edge

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

// Scrubbing: the edge re-hashes its stored blobs in the background, at a
// bounded rate (internal/scrub), and a read from disk into the hot tier
// checks the bytes it is about to cache (hot.go). A blob whose content no
// longer matches its digest is quarantined at once: its file is moved to
// <DataDir>/quarantine/ for an operator to look at, its record dropped,
// so neither the disk nor the hot tier serves it again; the next request
// for it fills it from the origin like an evicted blob, and the next
// resync reports it (Corrupt) and fetches it again if the edge owes it.

// maxQuarantined caps the files kept in quarantine/; the oldest go first.
const maxQuarantined = 64

// newScrubber makes the scrubber of the blobs on disk. It must run after
// the store is open and stop before it closes.
func (s *store) newScrubber(rate int64, interval time.Duration, clk clock.Clock, log *slog.Logger) (*scrub.Scrubber, error) {
	return scrub.New(scrub.Config{
		Rate:     rate,
		Interval: interval,
		List:     s.blobsOnDisk,
		Open: func(d wire.Digest) (io.ReadCloser, error) {
			// A blob evicted since the list fails with fs.ErrNotExist,
			// which the scrubber skips.
			return os.Open(s.blobPath(d))
		},
		OnCorrupt: func(f scrub.Finding) { s.recheck(f.Digest, f.Size, "scrub") },
		Clock:     clk,
		Logger:    log,
	})
}

// blobsOnDisk lists every blob on disk with its size, in digest order, so
// that the scrubber's random starting point walks the same order after a
// restart.
func (s *store) blobsOnDisk(context.Context) ([]scrub.Blob, error) {
	s.mu.RLock()
	out := make([]scrub.Blob, 0, s.blobs.len())
	for b := range s.blobs.all() {
		if b.onDisk {
			out = append(out, scrub.Blob{Digest: b.digest, Size: b.size})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b scrub.Blob) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	return out, nil
}

// corruptOnRead handles a read into the hot tier that found the blob d's
// file not holding its content: it quarantines the blob and returns the
// error open reports, which wraps fs.ErrNotExist so that the serving code
// fills the blob from the origin as it would an evicted one.
func (s *store) corruptOnRead(d wire.Digest, size int64) error {
	s.recheck(d, size, "read")
	return fmt.Errorf("edge: blob %s on disk does not match its digest: %w", shortHex(d), fs.ErrNotExist)
}

// recheck reads the blob d's file again and quarantines the blob if the
// file does not hold the size bytes of digest d; by ("scrub", "read") says
// what found it. A file that now matches was replaced by a good copy since
// it was found: it is left alone. The second read is not rate-limited;
// corrupt blobs are rare, and it spares holding writeMu while hashing.
func (s *store) recheck(d wire.Digest, size int64, by string) {
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return // evicted, or quarantined already
	}
	if err != nil {
		s.log.Error("edge: read a corrupt blob again", "digest", d.String(), "err", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.log.Error("edge: read a corrupt blob again", "digest", d.String(), "err", err)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, size+1))
	if err != nil {
		s.log.Error("edge: read a corrupt blob again", "digest", d.String(), "err", err)
		return
	}
	finding := scrub.Finding{Blob: scrub.Blob{Digest: d, Size: size}, Read: n}
	h.Sum(finding.Got[:0])
	if n == size && finding.Got == d {
		s.log.Warn("edge: a blob found corrupt matches its digest when read again; kept",
			"digest", d.String(), "by", by)
		return
	}
	s.quarantine(finding, fi, by)
}

// quarantine takes the blob f.Digest out of service if fi, the file found
// corrupt, is still its file: the file moves to quarantine/ (or is
// removed, if it cannot be moved) and the blob's record is dropped, with
// its hot-tier entry and any cached open file. Writes rename files into
// place under writeMu, which quarantine holds from the check to the move,
// so a good copy written meanwhile is never taken away.
func (s *store) quarantine(f scrub.Finding, fi os.FileInfo, by string) {
	d := f.Digest
	path := s.blobPath(d)
	s.writeMu.Lock()
	b := s.blobs.get(d) // writeMu holders may read blobs without mu
	cur, err := os.Stat(path)
	if b == nil || !b.onDisk || err != nil || !os.SameFile(fi, cur) {
		s.writeMu.Unlock()
		return
	}
	dst := filepath.Join(s.quarantineDir(), hex.EncodeToString(d[:]))
	moveErr := os.MkdirAll(filepath.Dir(dst), 0o755)
	if moveErr == nil {
		moveErr = os.Rename(path, dst)
	}
	if err := s.evictLocked([]evictee{{d, b}}); err != nil {
		// The record stays, without its file: the next resync's
		// verifyFiles drops it. Until then opens fail and fill.
		s.log.Error("edge: forget a corrupt blob", "digest", d.String(), "err", err)
		s.removeFile(d)
	}
	s.writeMu.Unlock()

	attrs := []any{"digest", d.String(), "found_by", by, "reason", f.Reason(), "size", f.Size, "read", f.Read, "got", f.Got.String()}
	if moveErr != nil {
		s.log.Error("edge: CORRUPT BLOB removed; the next request fills it from the origin",
			append(attrs, "quarantine_err", moveErr)...)
	} else {
		// The file's time is when it was quarantined, for pruning and
		// for the operator: file metadata, so the wall clock, as the
		// kernel's own timestamps.
		now := time.Now()
		os.Chtimes(dst, now, now)
		s.log.Error("edge: CORRUPT BLOB quarantined; the next request fills it from the origin",
			append(attrs, "path", dst)...)
		s.pruneQuarantine()
	}
	s.onCorrupt(d, by)
}

func (s *store) quarantineDir() string {
	return filepath.Join(filepath.Dir(s.blobDir), "quarantine")
}

// pruneQuarantine removes the oldest quarantined files beyond
// maxQuarantined.
func (s *store) pruneQuarantine() {
	ents, err := os.ReadDir(s.quarantineDir())
	if err != nil || len(ents) <= maxQuarantined {
		return
	}
	type file struct {
		name  string
		mtime time.Time
	}
	files := make([]file, 0, len(ents))
	for _, de := range ents {
		if info, err := de.Info(); err == nil {
			files = append(files, file{de.Name(), info.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Or(a.mtime.Compare(b.mtime), cmp.Compare(a.name, b.name)) })
	for _, f := range files[:max(len(files)-maxQuarantined, 0)] {
		if err := os.Remove(filepath.Join(s.quarantineDir(), f.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("edge: prune quarantine", "err", err)
		}
	}
}

// blobQuarantined counts a blob the store quarantined, in the metrics and
// in the next resync report.
func (e *Edge) blobQuarantined(_ wire.Digest, by string) {
	e.quarantined.Add(1)
	e.metrics.corrupt(by)
}

// ScrubNow starts a scrub pass over the stored blobs at once, or as soon
// as the running one ends.
func (e *Edge) ScrubNow() { e.scrubber.Trigger() }

// ScrubStatus is the scrubber's progress.
func (e *Edge) ScrubStatus() scrub.Status { return e.scrubber.Status() }
