package wire

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

func TestParseLogEntry(t *testing.T) {
	tests := []struct {
		name string
		e    LogEntry
	}{
		{"full", fullEntry()},
		{"delete", LogEntry{LSN: 3, Op: OpDelete, Namespace: "default", Key: "x"}},
		{"eventual no mod time", LogEntry{LSN: 1, Op: OpPut, Key: "/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLogEntry(tc.e.Append(nil))
			if err != nil {
				t.Fatalf("ParseLogEntry: %v", err)
			}
			if !reflect.DeepEqual(got, tc.e) {
				t.Errorf("got %#v, want %#v", got, tc.e)
			}
		})
	}
	t.Run("format version", func(t *testing.T) {
		b := fullEntry().Append(nil)
		if b[0] != LogEntryVersion {
			t.Errorf("written format version %d, want %d", b[0], LogEntryVersion)
		}
	})
	t.Run("zero mod time", func(t *testing.T) {
		b := LogEntry{Op: OpPut}.Append(nil)
		got, err := ParseLogEntry(b)
		if err != nil {
			t.Fatalf("ParseLogEntry: %v", err)
		}
		if !got.ModTime.IsZero() {
			t.Errorf("ModTime = %v, want the zero time", got.ModTime)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := ParseLogEntry(nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("got %v, want %v", err, ErrMalformed)
		}
	})
}

func TestLogEntryValidate(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*LogEntry)
		detail string // empty: valid
	}{
		{"valid", func(*LogEntry) {}, ""},
		{"delete", func(e *LogEntry) { *e = LogEntry{LSN: 1, Op: OpDelete, Key: "k"} }, ""},
		{"lsn over varint", func(e *LogEntry) { e.LSN = MaxVarint + 1 }, "lsn"},
		{"size over varint", func(e *LogEntry) { e.Size = math.MaxUint64 }, "size"},
		{"negative bound", func(e *LogEntry) { e.Bound = -time.Second }, "bound"},
		{"sub-millisecond bound", func(e *LogEntry) { e.Bound = 1500 * time.Microsecond }, "bound"},
		{"mod time year 3000", func(e *LogEntry) { e.ModTime = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }, "mod time"},
		{"mod time year 1600", func(e *LogEntry) { e.ModTime = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) }, "mod time"},
		{"op 0", func(e *LogEntry) { e.Op = 0 }, "op 0"},
		{"key too long", func(e *LogEntry) { e.Key = strings.Repeat("k", MaxKeyLen+1) }, "key"},
		{"too large", func(e *LogEntry) { e.SurrogateKeys = manyStrings(MaxSurrogateKeys, strings.Repeat("s", 1000)) }, "exceed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := fullEntry()
			tc.mod(&e)
			err := e.Validate()
			if tc.detail == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("Validate() = %v, want %v mentioning %q", err, ErrMalformed, tc.detail)
			}
		})
	}
}

func TestObjectID(t *testing.T) {
	tests := []struct {
		ns, key, want string
	}{
		{"default", "a/b", "default\x00a/b"},
		{"", "", "\x00"},
		// Without the separator these two would collide.
		{"ab", "c", "ab\x00c"},
		{"a", "bc", "a\x00bc"},
	}
	for _, tc := range tests {
		if got := (LogEntry{Namespace: tc.ns, Key: tc.key}).ObjectID(); got != tc.want {
			t.Errorf("ObjectID(%q, %q) = %q, want %q", tc.ns, tc.key, got, tc.want)
		}
	}
}

func TestParseConsistency(t *testing.T) {
	tests := []struct {
		in        string
		want      Consistency
		wantBound time.Duration
		wantErr   string // substring; empty: no error
	}{
		{in: "eventual", want: Eventual},
		{in: "consistent-prefix", want: ConsistentPrefix},
		{in: "prefix", want: ConsistentPrefix},
		{in: "session", want: Session},
		{in: "strong", want: Strong},
		{in: "Strong", want: Strong},
		{in: "bounded(5s)", want: Bounded, wantBound: 5 * time.Second},
		{in: "bounded(500ms)", want: Bounded, wantBound: 500 * time.Millisecond},
		{in: "bounded(1m30s)", want: Bounded, wantBound: 90 * time.Second},
		{in: "bounded", wantErr: "bounded(5s)"},
		{in: "bounded()", wantErr: "invalid duration"},
		{in: "bounded(5)", wantErr: "missing unit"},
		{in: "bounded(0s)", wantErr: "positive"},
		{in: "bounded(-1s)", wantErr: "positive"},
		{in: "bounded(1500us)", wantErr: "milliseconds"},
		{in: "bounded(5s", wantErr: "parenthesis"},
		{in: "strong(5s)", wantErr: "only bounded"},
		{in: "", wantErr: "unknown consistency"},
		{in: "linearizable", wantErr: "unknown consistency"},
		{in: " strong", wantErr: "unknown consistency"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, bound, err := ParseConsistency(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseConsistency(%q) error = %v, want one mentioning %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConsistency(%q): %v", tc.in, err)
			}
			if got != tc.want || bound != tc.wantBound {
				t.Errorf("ParseConsistency(%q) = %v, %v; want %v, %v", tc.in, got, bound, tc.want, tc.wantBound)
			}
		})
	}
}

func TestConsistencyString(t *testing.T) {
	tests := []struct {
		c     Consistency
		bound time.Duration
		want  string
	}{
		{Eventual, 0, "eventual"},
		{ConsistentPrefix, 0, "consistent-prefix"},
		{Session, 0, "session"},
		{Bounded, 0, "bounded"},
		{Strong, 0, "strong"},
		{Consistency(9), 0, "consistency(9)"},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("Consistency(%d).String() = %q, want %q", uint8(tc.c), got, tc.want)
		}
	}
	// FormatConsistency and ParseConsistency are inverses.
	for _, tc := range []struct {
		c     Consistency
		bound time.Duration
	}{{Eventual, 0}, {ConsistentPrefix, 0}, {Session, 0}, {Strong, 0}, {Bounded, 2500 * time.Millisecond}} {
		s := FormatConsistency(tc.c, tc.bound)
		c, bound, err := ParseConsistency(s)
		if err != nil || c != tc.c || bound != tc.bound {
			t.Errorf("ParseConsistency(FormatConsistency(%v, %v) = %q) = %v, %v, %v", tc.c, tc.bound, s, c, bound, err)
		}
	}
}

func TestDigest(t *testing.T) {
	empty := Digest(sha256.Sum256(nil))
	const emptyHex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	t.Run("string", func(t *testing.T) {
		if got := empty.String(); got != emptyHex {
			t.Errorf("String() = %q, want %q", got, emptyHex)
		}
	})
	t.Run("is zero", func(t *testing.T) {
		if !(Digest{}).IsZero() {
			t.Errorf("Digest{}.IsZero() = false, want true")
		}
		if empty.IsZero() {
			t.Errorf("IsZero() of sha256(\"\") = true, want false")
		}
	})
	t.Run("parse", func(t *testing.T) {
		tests := []struct {
			in      string
			want    Digest
			wantErr string
		}{
			{in: emptyHex, want: empty},
			{in: strings.ToUpper(emptyHex), want: empty},
			{in: strings.Repeat("0", 64), want: Digest{}},
			{in: "", wantErr: "want 64 hex digits, got 0"},
			{in: emptyHex[:63], wantErr: "want 64 hex digits, got 63"},
			{in: emptyHex + "00", wantErr: "got 66"},
			{in: "g" + emptyHex[1:], wantErr: "invalid byte"},
		}
		for _, tc := range tests {
			got, err := ParseDigest(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ParseDigest(%q) error = %v, want one mentioning %q", tc.in, err, tc.wantErr)
				}
				continue
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseDigest(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		type doc struct{ Digest Digest }
		b, err := json.Marshal(doc{empty})
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		if want := `{"Digest":"` + emptyHex + `"}`; string(b) != want {
			t.Errorf("Marshal = %s, want %s", b, want)
		}
		var got doc
		if err := json.Unmarshal(b, &got); err != nil || got.Digest != empty {
			t.Errorf("Unmarshal = %v, %v; want %v", got.Digest, err, empty)
		}
		if err := json.Unmarshal([]byte(`{"Digest":"abc"}`), &got); err == nil {
			t.Errorf("Unmarshal of a short digest succeeded")
		}
	})
}

func BenchmarkLogEntryAppendParse(b *testing.B) {
	e := fullEntry()
	buf := make([]byte, 0, e.Len())
	b.ReportAllocs()
	for b.Loop() {
		buf = e.Append(buf[:0])
		if _, err := ParseLogEntry(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func TestPurgeEntryRoundTrip(t *testing.T) {
	want := LogEntry{
		LSN: 77, Op: OpPurge, Namespace: "default",
		PurgeKeys: []string{"a.txt", "img/b.png"}, PurgePrefixes: []string{"css/"}, PurgeTags: []string{"home"},
		Soft: true, ModTime: time.Unix(1700000000, 0).UTC(),
	}
	roundTrip(t, want)
}

// roundTrip checks that want encodes in Len bytes and decodes to itself,
// and returns what was decoded.
func roundTrip(t *testing.T, want LogEntry) LogEntry {
	t.Helper()
	b := want.Append(nil)
	if len(b) != want.Len() {
		t.Fatalf("Len %d, len(Append) %d", want.Len(), len(b))
	}
	got, err := ParseLogEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	return got
}

// A rolling upgrade reads entries an older origin wrote: format 1 ended at
// the replicas and had no purge.
func TestParseFormatVersion1(t *testing.T) {
	want := LogEntry{LSN: 5, Op: OpPut, Namespace: "default", Key: "k", Size: 3, Replicas: []string{"e1"}}
	b := want.Append(nil)
	v1 := append([]byte{1}, b[1:len(b)-5]...) // no purge section, no pulled flag
	got, err := ParseLogEntry(v1)
	if err != nil {
		t.Fatalf("format 1 entry: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	purge := LogEntry{LSN: 6, Op: OpPurge, Namespace: "default", PurgeKeys: []string{"k"}}
	pb := purge.Append(nil)
	pb[0] = 1
	if _, err := ParseLogEntry(pb); err == nil {
		t.Fatal("format 1 purge entry accepted; purge needs format 2")
	}
}

// Format 2 ended at the soft flag: no pulled response.
func TestParseFormatVersion2(t *testing.T) {
	want := LogEntry{LSN: 8, Op: OpPurge, Namespace: "default", PurgeTags: []string{"t"}, Soft: true}
	b := want.Append(nil)
	v2 := append([]byte{2}, b[1:len(b)-1]...)
	got, err := ParseLogEntry(v2)
	if err != nil {
		t.Fatalf("format 2 entry: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	pulled := LogEntry{LSN: 9, Op: OpPut, Namespace: "default", Key: "k", Pulled: &Pulled{Status: 200}}
	pb := pulled.Append(nil)
	pb[0] = 2
	if _, err := ParseLogEntry(pb); err == nil {
		t.Fatal("format 2 entry with a pulled response accepted; that needs format 3")
	}
}

func TestPulledEntryRoundTrip(t *testing.T) {
	want := LogEntry{
		LSN: 12, Op: OpPut, Namespace: "site", Key: "blog/?page=2", Size: 5, ContentType: "text/html",
		Pulled: &Pulled{
			Status:    200,
			Header:    []HeaderField{{"Cache-Control", "max-age=60"}, {"Vary", "Accept-Encoding"}, {"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"X-Empty", ""}},
			Requested: time.Unix(1700000000, 5).UTC(), Received: time.Unix(1700000001, 7).UTC(),
			Selecting: []HeaderField{{"Accept-Encoding", "gzip, br"}},
		},
	}
	got := roundTrip(t, want)
	h := got.Pulled.HTTPHeader()
	if h.Get("Cache-Control") != "max-age=60" || len(h["Set-Cookie"]) != 2 || h.Get("vary") != "Accept-Encoding" {
		t.Fatalf("HTTPHeader %v", h)
	}
	if fs := HeaderFields(h); len(fs) != 5 || fs[0].Name != "Cache-Control" || fs[1].Value != "a=1" || fs[2].Value != "b=2" {
		t.Fatalf("HeaderFields %v", fs)
	}
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestParseLogEntryInterned checks that the interning parse returns what
// ParseLogEntry does, with the repeating strings, and only those, from
// intern, and fails where ParseLogEntry fails.
func TestParseLogEntryInterned(t *testing.T) {
	purge := LogEntry{LSN: 7, Op: OpPurge, Namespace: "default", PurgeKeys: []string{"a"}, PurgePrefixes: []string{"b/"}, PurgeTags: []string{"c"}}
	tests := []struct {
		name string
		e    LogEntry
		want []string // the strings intern is asked for, in order
	}{
		{"full", fullEntry(), []string{"default", "image/png", "public, max-age=60", "logos", "home", "edge-fra-1", "edge-iad-2"}},
		{"purge", purge, []string{"default", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.e.Append(nil)
			var asked []string
			intern := func(b []byte) string {
				asked = append(asked, string(b))
				return string(b)
			}
			got, err := ParseLogEntryInterned(b, intern)
			if err != nil {
				t.Fatalf("ParseLogEntryInterned: %v", err)
			}
			if !reflect.DeepEqual(got, tc.e) {
				t.Errorf("got %#v, want %#v", got, tc.e)
			}
			if !reflect.DeepEqual(asked, tc.want) {
				t.Errorf("interned %q, want %q", asked, tc.want)
			}
			if got, err := ParseLogEntryInterned(b, nil); err != nil || !reflect.DeepEqual(got, tc.e) {
				t.Errorf("nil intern: got %#v, %v; want %#v", got, err, tc.e)
			}
			for n := range len(b) {
				_, want := ParseLogEntry(b[:n])
				_, err := ParseLogEntryInterned(b[:n], intern)
				if want == nil || err == nil || err.Error() != want.Error() {
					t.Fatalf("%d of %d bytes: got %v, want %v", n, len(b), err, want)
				}
			}
		})
	}
	t.Run("shared", func(t *testing.T) {
		seen := map[string]string{}
		intern := func(b []byte) string {
			if s, ok := seen[string(b)]; ok {
				return s
			}
			s := string(b)
			seen[s] = s
			return s
		}
		b := fullEntry().Append(nil)
		e1, err1 := ParseLogEntryInterned(b, intern)
		e2, err2 := ParseLogEntryInterned(b, intern)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if unsafe.StringData(e1.ContentType) != unsafe.StringData(e2.ContentType) || unsafe.StringData(e1.Namespace) != unsafe.StringData(e2.Namespace) {
			t.Error("two parses do not share the interned strings")
		}
		if unsafe.StringData(e1.Key) == unsafe.StringData(e2.Key) {
			t.Error("two parses share the key")
		}
	})
}
