package yamlx

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestInputErrorFormat(t *testing.T) {
	base := errors.New("bad")
	for _, tt := range []struct {
		e    *InputError
		want string
	}{
		{&InputError{File: "a.yaml", Line: 3, Field: "x.y", Err: base}, "a.yaml:3: x.y: bad"},
		{&InputError{File: "a.yaml", Field: "x", Err: base}, "a.yaml: x: bad"},
		{&InputError{File: "a.yaml", Line: 7, Err: base}, "a.yaml:7: bad"},
		{Errorf("b.csv", 2, "weight", "want %s", "more"), "b.csv:2: weight: want more"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if e := (&InputError{File: "a", Err: io.EOF}); !errors.Is(e, io.EOF) {
		t.Error("InputError does not unwrap to its Err")
	}
}

// TestParseErrors checks the line numbers of YAML syntax errors, which
// the library numbers from 0 for some and from 1 for others.
func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		name, src, want string
	}{
		{"empty", "", "f.yaml: empty file"},
		{"comment only", "# nothing\n", "f.yaml: empty file"},
		{"parser error", "a: 1\nb:\n  - {c: 2\n", "f.yaml:3: not valid YAML: did not find expected ',' or '}'"},
		{"block indent", "a:\n  b: 1\n c: 2\n", "f.yaml:3: not valid YAML: did not find expected key"},
		{"scanner error", "a: 1\nb: c: d\n", "f.yaml:2: not valid YAML: mapping values are not allowed in this context"},
		{"tab", "a:\n\tb: 1\n", "f.yaml:2: not valid YAML: found character that cannot start any token"},
		{"two documents", "a: 1\n---\nb: 2\n", "f.yaml:2: more than one YAML document"}, // the line of ---
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Doc{Name: "f.yaml"}.Parse(strings.NewReader(tt.src))
			if err == nil {
				t.Fatalf("parsed, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// mustParse returns the root of src.
func mustParse(t *testing.T, src string) (Doc, *yaml.Node) {
	t.Helper()
	d := Doc{Name: "f.yaml"}
	root, err := d.Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return d, root
}

func TestFields(t *testing.T) {
	d, root := mustParse(t, "base: &b {x: 1}\nother: *b\n")
	fs, err := d.Fields("", root, "base", "other")
	if err != nil {
		t.Fatal(err)
	}
	// An alias reads as what it names.
	inner, err := d.Fields("other", fs["other"], "x")
	if err != nil || inner["x"].Value != "1" {
		t.Errorf("alias: got %v, %v", inner, err)
	}
	for _, tt := range []struct {
		src     string
		allowed []string
		want    string
	}{
		{"a: 1\nb: 2\n", []string{"a"}, "f.yaml:2: b: unknown field (want one of a)"},
		{"a: 1\na: 2\n", nil, "f.yaml:2: a: given twice"},
		{"- 1\n", nil, "f.yaml:1: want a mapping (key: value, ...), got a list"},
		{"? [a]\n: 1\n", nil, "f.yaml:1: keys must be plain names"},
	} {
		d, root := mustParse(t, tt.src)
		_, err := d.Fields("", root, tt.allowed...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: got %v, want %q", tt.src, err, tt.want)
		}
	}
}

// TestScalars checks each scalar reader on good and bad values.
func TestScalars(t *testing.T) {
	type reader func(d Doc, n *yaml.Node) (any, error)
	str := func(d Doc, n *yaml.Node) (any, error) { return d.Str("v", n) }
	num := func(d Doc, n *yaml.Node) (any, error) { return d.Num("v", n) }
	integer := func(d Doc, n *yaml.Node) (any, error) { return d.Int("v", n) }
	size := func(d Doc, n *yaml.Node) (any, error) { return d.Bytes("v", n) }
	dur := func(d Doc, n *yaml.Node) (any, error) { return d.Duration("v", n) }
	boolean := func(d Doc, n *yaml.Node) (any, error) { return d.Bool("v", n) }
	seqLen := func(d Doc, n *yaml.Node) (any, error) {
		items, err := d.Seq("v", n)
		return len(items), err
	}
	for _, tt := range []struct {
		read    reader
		value   string
		want    any
		wantErr string
	}{
		{read: str, value: "hello", want: "hello"},
		{read: str, value: "12", want: "12"},
		{read: str, value: "null", wantErr: `v: want a string, got "null"`},
		{read: str, value: "{a: 1}", wantErr: "v: want a string, got a mapping"},
		{read: num, value: "1.5", want: 1.5},
		{read: num, value: "10_000", want: 10000.0},
		{read: num, value: ".nan", wantErr: `v: want a number, got ".nan"`},
		{read: num, value: "Inf", wantErr: `v: want a number, got "Inf"`},
		{read: integer, value: "42", want: 42},
		{read: integer, value: "4.2", wantErr: `v: want a whole number, got "4.2"`},
		{read: size, value: "4KiB", want: int64(4096)},
		{read: size, value: "4 parsecs", wantErr: `v: want a size like 40TB, 1.5GiB or 1234, got "4 parsecs"`},
		{read: size, value: "[1]", wantErr: "v: want a size like 40TB, got a list"},
		{read: dur, value: "1m30s", want: 90 * time.Second},
		{read: dur, value: "0", want: time.Duration(0)},
		{read: dur, value: "90", wantErr: `v: want a duration like 1m30s or 500ms, got "90"`},
		{read: dur, value: "-5s", wantErr: "v: negative duration -5s"},
		{read: boolean, value: "true", want: true},
		{read: boolean, value: "False", want: false},
		{read: boolean, value: "yes", wantErr: `v: want true or false, got "yes"`},
		{read: seqLen, value: "[1, 2, 3]", want: 3},
		{read: seqLen, value: "1", wantErr: `v: want a list, got "1"`},
	} {
		d, root := mustParse(t, "v: "+tt.value+"\n")
		fs, err := d.Fields("", root)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tt.read(d, fs["v"])
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != "f.yaml:1: "+tt.wantErr {
				t.Errorf("%q: got %v, %v; want error %q", tt.value, got, err, tt.wantErr)
			}
		case err != nil || got != tt.want:
			t.Errorf("%q: got %v (%T), %v; want %v (%T)", tt.value, got, got, err, tt.want, tt.want)
		}
	}
}

// TestScalarRoundTrip checks Scalar's output reads back as the same
// string, never as a number, boolean or null.
func TestScalarRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "img/logo.png", "true", "no", "null", "~", "12", "1e3", "0x1f", ".inf",
		"", "a: b", "- x", "#c", "ü", "with space", "'q'", `"dq"`, "tab\there"} {
		var got struct{ V *string }
		if err := yaml.Unmarshal([]byte("v: "+Scalar(s)+"\n"), &got); err != nil {
			t.Errorf("Scalar(%q) = %s: %v", s, Scalar(s), err)
			continue
		}
		if got.V == nil || *got.V != s {
			t.Errorf("Scalar(%q) = %s, which reads back as %v", s, Scalar(s), got.V)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1234", want: 1234},
		{in: "100B", want: 100},
		{in: "4KB", want: 4000},
		{in: "1KiB", want: 1024},
		{in: "1.5GiB", want: 3 << 29},
		{in: "0.0005kB", want: 1}, // half a byte rounds up
		{in: "lots", bad: true},
		{in: "-1", bad: true},
		{in: "1e99999", bad: true},
	} {
		got, err := ParseBytes(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, got)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, n := range []int64{0, 7, 1000, 1024, 1_230_000, 4 << 40} {
		if back, err := ParseBytes(FormatBytes(n)); err != nil || back != n {
			t.Errorf("FormatBytes(%d) = %q reads back as %d, %v", n, FormatBytes(n), back, err)
		}
	}
}
