// Package yamlx decodes YAML input files a person writes (topologies,
// catalogs, load-test scenarios) as node trees rather than straight into
// structs, so that every error can name the file, the line and the field.
//
// Invariant: every error a Doc method returns is an *InputError with the
// Doc's name as its File and, but for an empty file, the line of the
// offending node.
package yamlx

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Doc is one YAML document being decoded. Name labels its errors; it is
// usually the file's path. The zero Doc works, with an empty name.
type Doc struct{ Name string }

var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlParserProblems are the messages of the YAML parser's (not scanner's)
// errors.
var yamlParserProblems = []string{
	"did not find expected ',' or",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected node content",
	"did not find expected <",
	"found duplicate %",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// Parse reads the document's root node. A file with no document, more
// than one, or one that is not valid YAML is an error.
func (d Doc) Parse(r io.Reader) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, Errorf(d.Name, 0, "", "empty file")
		}
		line := 0
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = yamlLine.ReplaceAllString(msg, "")
		msg = strings.TrimLeft(msg, ": ")
		// The YAML library numbers lines from 1 for scanner errors but
		// from 0 for parser errors (go-yaml/yaml#205); the message is all
		// that tells them apart.
		for _, p := range yamlParserProblems {
			if strings.HasPrefix(msg, p) {
				line++
				break
			}
		}
		return nil, Errorf(d.Name, line, "", "not valid YAML: %s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, Errorf(d.Name, extra.Line, "", "more than one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errorf(d.Name, doc.Line, "", "empty document")
	}
	return doc.Content[0], nil
}

// Errorf builds an InputError about the field at path on line line of
// the document.
func (d Doc) Errorf(line int, path, format string, args ...any) *InputError {
	return Errorf(d.Name, line, path, format, args...)
}

// Wrap makes err, from a validator that knows nothing of files, an
// InputError about the field at path on line line.
func (d Doc) Wrap(line int, path string, err error) *InputError {
	return &InputError{File: d.Name, Line: line, Field: path, Err: err}
}

// Fields returns the values of mapping n by key, refusing repeated keys
// and, unless allowed is empty, keys not in allowed. Aliases are
// resolved.
func (d Doc) Fields(path string, n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil, d.Errorf(n.Line, path, "want a mapping (key: value, ...), got %s", Describe(n))
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		fp := Join(path, name)
		if k.Kind != yaml.ScalarNode {
			return nil, d.Errorf(k.Line, path, "keys must be plain names")
		}
		if _, dup := out[name]; dup {
			return nil, d.Errorf(k.Line, fp, "given twice")
		}
		if allowed != nil && !contains(allowed, name) {
			return nil, d.Errorf(k.Line, fp, "unknown field (want one of %s)", strings.Join(allowed, ", "))
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		out[name] = v
	}
	return out, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Join is the path of field inside the value at path.
func Join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// Index is the path of item i of the list at path.
func Index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// Describe names what n is, for "want X, got Y" messages: "a mapping",
// "a list", or a scalar's value quoted.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// Seq returns the items of list n, aliases resolved.
func (d Doc) Seq(path string, n *yaml.Node) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, d.Errorf(n.Line, path, "want a list, got %s", Describe(n))
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		if it.Kind == yaml.AliasNode {
			it = it.Alias
		}
		items[i] = it
	}
	return items, nil
}

// Str returns scalar n as a string; a number or a boolean is read as
// written, null is refused.
func (d Doc) Str(path string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", d.Errorf(n.Line, path, "want a string, got %s", Describe(n))
	}
	return n.Value, nil
}

// Num returns scalar n as a finite number; underscores between digits
// are allowed (10_000).
func (d Doc) Num(path string, n *yaml.Node) (float64, error) {
	if n.Kind == yaml.ScalarNode {
		v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return v, nil
		}
	}
	return 0, d.Errorf(n.Line, path, "want a number, got %s", Describe(n))
}

// Int returns scalar n as an int.
func (d Doc) Int(path string, n *yaml.Node) (int, error) {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.Atoi(strings.ReplaceAll(n.Value, "_", "")); err == nil {
			return v, nil
		}
	}
	return 0, d.Errorf(n.Line, path, "want a whole number, got %s", Describe(n))
}

// Bytes returns scalar n as a byte count (see ParseBytes).
func (d Doc) Bytes(path string, n *yaml.Node) (int64, error) {
	if n.Kind == yaml.ScalarNode {
		v, err := ParseBytes(n.Value)
		if err != nil {
			return 0, d.Wrap(n.Line, path, err)
		}
		return v, nil
	}
	return 0, d.Errorf(n.Line, path, "want a size like 40TB, got %s", Describe(n))
}

// Duration returns scalar n as a duration in Go's syntax ("1m30s",
// "250ms"; a bare "0" too). Negative durations are refused: an input
// file's durations are lengths of time and offsets from a start.
func (d Doc) Duration(path string, n *yaml.Node) (time.Duration, error) {
	if n.Kind == yaml.ScalarNode {
		if v, err := time.ParseDuration(strings.TrimSpace(n.Value)); err == nil {
			if v < 0 {
				return 0, d.Errorf(n.Line, path, "negative duration %s", v)
			}
			return v, nil
		}
	}
	return 0, d.Errorf(n.Line, path, "want a duration like 1m30s or 500ms, got %s", Describe(n))
}

// Bool returns scalar n as a boolean: true or false, in any case.
func (d Doc) Bool(path string, n *yaml.Node) (bool, error) {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, d.Errorf(n.Line, path, "want true or false, got %s", Describe(n))
}

// Scalar writes s as a YAML scalar: plain when that is unambiguous, else
// double-quoted (JSON string syntax is valid YAML), so a writer never
// produces a key that reads back as a number, a boolean or null.
func Scalar(s string) string {
	if plainYAML.MatchString(s) && !yamlSpecial.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

var (
	plainYAML   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)
	yamlSpecial = regexp.MustCompile(`^(?i:true|false|yes|no|on|off|y|n|null|~|[-+]?[0-9._]+(e[-+]?[0-9]+)?|0x[0-9a-f]+|0o[0-7]+|\.inf|\.nan)$`)
)
