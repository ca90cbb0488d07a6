package wire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// FuzzReadFrame checks that no input makes the decoders panic, that
// ReadFrame and ParseFrame agree, and that whatever parses re-encodes to
// bytes that parse to the same value.
func FuzzReadFrame(f *testing.F) {
	for _, tc := range validFrames() {
		// Inputs the fuzzer finds interesting get minimised, which takes
		// seconds per mutant of a large seed and stalls the run; the
		// limit-sized frames are covered by the round-trip tests.
		if enc := AppendFrame(nil, tc.in); len(enc) <= 2<<10 {
			f.Add(enc)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadFrame(bytes.NewReader(data))
		plain, plainErr := ReadFrame(hideByteReader{bytes.NewReader(data)})
		parsed, n, parseErr := ParseFrame(data)

		// Errors are built per call, so they are compared by text.
		if fmt.Sprint(err) != fmt.Sprint(plainErr) {
			t.Fatalf("ReadFrame errors differ by reader: %v vs %v", err, plainErr)
		}
		if err != nil {
			if got != nil {
				t.Fatalf("ReadFrame returned %#v with error %v", got, err)
			}
			known := false
			for _, e := range []error{io.EOF, io.ErrUnexpectedEOF, ErrFrameTooLarge, ErrUnknownFrame, ErrMalformed} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("ReadFrame: unexpected error %v", err)
			}
			if parseErr == nil {
				t.Fatalf("ReadFrame failed with %v, ParseFrame succeeded with %#v", err, parsed)
			}
			return
		}
		if parseErr != nil {
			t.Fatalf("ReadFrame succeeded with %#v, ParseFrame failed with %v", got, parseErr)
		}
		if !reflect.DeepEqual(got, plain) || !reflect.DeepEqual(got, parsed) {
			t.Fatalf("decoders disagree: %#v, %#v, %#v", got, plain, parsed)
		}
		if n > len(data) {
			t.Fatalf("ParseFrame consumed %d of %d bytes", n, len(data))
		}
		p := got.Append(nil)
		if got.Len() != len(p) {
			t.Fatalf("%T: Len() = %d, len(Append) = %d", got, got.Len(), len(p))
		}
		enc := AppendFrame(nil, got)
		again, m, err := ParseFrame(enc)
		if err != nil {
			t.Fatalf("re-parse of %#v: %v", got, err)
		}
		if m != len(enc) {
			t.Fatalf("re-parse consumed %d of %d bytes", m, len(enc))
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("re-parse = %#v, want %#v", again, got)
		}
	})
}
