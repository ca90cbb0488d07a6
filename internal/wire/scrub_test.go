package wire

import (
	"errors"
	"strings"
	"testing"
)

// A ScrubProgress whose counts contradict each other is refused by the
// decoder and by Validate alike, naming what is wrong, while every
// message of validFrames passes Validate.
func TestScrubProgressContradictions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     ScrubProgress
		detail string
	}{
		{"running pass 0", ScrubProgress{Running: true}, "running pass 0"},
		{"last full pass ahead", ScrubProgress{Pass: 1, LastFullPass: 2}, "last full pass 2 after pass 1"},
		{"bytes beyond total", ScrubProgress{Pass: 1, Running: true, Bytes: 10, TotalBytes: 9}, "bytes: 10 of 9"},
		{"bytes before listing", ScrubProgress{Pass: 1, Running: true, Bytes: 1}, "bytes: 1 of 0"},
		{"blobs beyond total", ScrubProgress{Pass: 1, Blobs: 2, TotalBlobs: 1}, "blobs: 2 of 1"},
		{"corrupt beyond checked", ScrubProgress{Pass: 1, Blobs: 1, TotalBlobs: 1, Corrupt: 2, CorruptTotal: 2}, "2 corrupt and 0 unreadable of 1"},
		{"corrupt and unreadable beyond checked", ScrubProgress{Pass: 1, Blobs: 2, TotalBlobs: 2, Corrupt: 1, ReadErrors: 2, CorruptTotal: 1}, "1 corrupt and 2 unreadable of 2"},
		{"unreadable at the varint limit", ScrubProgress{Pass: 1, Blobs: 1, TotalBlobs: 1, Corrupt: 1, ReadErrors: MaxVarint, CorruptTotal: 1}, "unreadable"},
		{"corrupt beyond total", ScrubProgress{Pass: 1, Blobs: 1, TotalBlobs: 1, Corrupt: 1}, "exceed corrupt total 0"},
		{"last pass corrupt beyond total", ScrubProgress{Pass: 1, LastFullPass: 1, LastFullPassCorrupt: 1}, "exceed corrupt total 0"},
		{"last pass end without a last pass", ScrubProgress{Pass: 1, LastFullPassMillis: 5}, "without a last full pass"},
		{"last pass corrupt without a last pass", ScrubProgress{Pass: 1, LastFullPassCorrupt: 1, CorruptTotal: 1}, "without a last full pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.in.Validate()
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("Validate() = %v, want %v mentioning %q", err, ErrMalformed, tc.detail)
			}
			enc := AppendFrame(nil, tc.in)
			f, n, err := ParseFrame(enc)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("ParseFrame = %#v, %v; want %v mentioning %q", f, err, ErrMalformed, tc.detail)
			}
			if f != nil || n != len(enc) {
				t.Errorf("ParseFrame returned %#v and consumed %d of %d bytes; want no frame and all of them", f, n, len(enc))
			}
		})
	}
	for _, tc := range validFrames() {
		if p, ok := tc.in.(ScrubProgress); ok {
			if err := p.Validate(); err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tc.name, err)
			}
		}
	}
}
