package lincheck

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestCheck(t *testing.T) {
	ms := func(f float64) int64 { return int64(f * 1e6) }
	for _, tc := range []struct {
		name string
		rec  func(r *Recorder)
		want porcupine.CheckResult
	}{
		{"read after a write returned", func(r *Recorder) {
			r.Write(0, "k", "1", ms(0), ms(10), true, "")
			r.Read(1, "k", "1", ms(11), ms(12), "")
		}, porcupine.Ok},
		{"404 before the first write", func(r *Recorder) {
			r.Read(1, "k", Absent, ms(0), ms(1), "")
			r.Write(0, "k", "1", ms(2), ms(3), true, "")
		}, porcupine.Ok},
		// The inversion the real-process runs found: a read saw the new
		// value while the write was pending, a later read the old one.
		{"read goes back in time", func(r *Recorder) {
			r.Write(0, "k", "117", ms(0), ms(10), true, "")
			r.Write(0, "k", "118", ms(4930.5), ms(4955.2), true, "")
			r.Read(1, "k", "118", ms(4940.2), ms(4948.0), "e1")
			r.Read(2, "k", "117", ms(4950.9), ms(4963.5), "e1")
		}, porcupine.Illegal},
		{"a write of unknown outcome may take effect late", func(r *Recorder) {
			r.Write(0, "k", "1", ms(0), ms(1), true, "")
			r.Write(0, "k", "2", ms(2), 0, false, "504")
			r.Read(1, "k", "1", ms(3), ms(4), "")
			r.Read(1, "k", "2", ms(5), ms(6), "")
		}, porcupine.Ok},
		{"or never", func(r *Recorder) {
			r.Write(0, "k", "2", ms(2), 0, false, "504")
			r.Read(1, "k", Absent, ms(5), ms(6), "")
		}, porcupine.Ok},
		{"but not before its call", func(r *Recorder) {
			r.Read(1, "k", "2", ms(0), ms(1), "")
			r.Write(0, "k", "2", ms(2), 0, false, "504")
		}, porcupine.Illegal},
		{"keys are separate registers", func(r *Recorder) {
			r.Write(0, "a", "1", ms(0), ms(1), true, "")
			r.Read(1, "b", Absent, ms(2), ms(3), "")
			r.Read(1, "a", "1", ms(4), ms(5), "")
		}, porcupine.Ok},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder()
			tc.rec(r)
			dir := t.TempDir()
			got, err := Check(r.History(), 10*time.Second, dir, "h")
			if got != tc.want {
				t.Fatalf("Check: %v, want %v", got, tc.want)
			}
			if tc.want == porcupine.Illegal {
				if err == nil || !strings.Contains(err.Error(), "not linearizable") {
					t.Fatalf("Check error %v, want one naming the files", err)
				}
				for _, f := range []string{"h.html", "h.txt"} {
					if _, err := os.Stat(dir + "/" + f); err != nil {
						t.Errorf("%s not written: %v", f, err)
					}
				}
			} else if err != nil {
				t.Fatalf("Check error %v on a linearizable history", err)
			}
		})
	}
}
