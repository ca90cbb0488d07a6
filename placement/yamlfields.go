package placement

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// node decoding helpers: the files are read as YAML node trees rather than
// straight into structs so every error can name the line and the field.

// yamlFile is one YAML document being decoded.
type yamlFile struct{ name string }

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

// parse reads the document's root mapping.
func (f yamlFile) parse(r io.Reader) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, inputErr(f.name, 0, "", "empty file")
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
		return nil, inputErr(f.name, line, "", "not valid YAML: %s", msg)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, inputErr(f.name, extra.Line, "", "more than one YAML document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, inputErr(f.name, doc.Line, "", "empty document")
	}
	return doc.Content[0], nil
}

// fields returns the values of mapping n by key, refusing keys not in
// allowed and repeated keys.
func (f yamlFile) fields(path string, n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil, inputErr(f.name, n.Line, path, "want a mapping (key: value, ...), got %s", kindName(n))
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		fp := join(path, name)
		if k.Kind != yaml.ScalarNode {
			return nil, inputErr(f.name, k.Line, path, "keys must be plain names")
		}
		if _, dup := out[name]; dup {
			return nil, inputErr(f.name, k.Line, fp, "given twice")
		}
		if allowed != nil && !contains(allowed, name) {
			return nil, inputErr(f.name, k.Line, fp, "unknown field (want one of %s)", strings.Join(allowed, ", "))
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

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func kindName(n *yaml.Node) string {
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

// seq returns the items of list n.
func (f yamlFile) seq(path string, n *yaml.Node) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, inputErr(f.name, n.Line, path, "want a list, got %s", kindName(n))
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

// str returns scalar n as a string.
func (f yamlFile) str(path string, n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", inputErr(f.name, n.Line, path, "want a string, got %s", kindName(n))
	}
	return n.Value, nil
}

// num returns scalar n as a finite number.
func (f yamlFile) num(path string, n *yaml.Node) (float64, error) {
	if n.Kind == yaml.ScalarNode {
		v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return v, nil
		}
	}
	return 0, inputErr(f.name, n.Line, path, "want a number, got %s", kindName(n))
}

// integer returns scalar n as an int.
func (f yamlFile) integer(path string, n *yaml.Node) (int, error) {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.Atoi(strings.ReplaceAll(n.Value, "_", "")); err == nil {
			return v, nil
		}
	}
	return 0, inputErr(f.name, n.Line, path, "want a whole number, got %s", kindName(n))
}

// size returns scalar n as a byte count (see ParseBytes).
func (f yamlFile) size(path string, n *yaml.Node) (int64, error) {
	if n.Kind == yaml.ScalarNode {
		v, err := ParseBytes(n.Value)
		if err != nil {
			return 0, &InputError{File: f.name, Line: n.Line, Field: path, Err: err}
		}
		return v, nil
	}
	return 0, inputErr(f.name, n.Line, path, "want a size like 40TB, got %s", kindName(n))
}

// affinity returns mapping n as an Affinity.
func (f yamlFile) affinity(path string, n *yaml.Node) (Affinity, error) {
	fs, err := f.fields(path, n)
	if err != nil {
		return nil, err
	}
	a := make(Affinity, len(fs))
	for i := 0; i+1 < len(n.Content); i += 2 {
		region := n.Content[i].Value
		v, err := f.num(join(path, region), fs[region])
		if err != nil {
			return nil, err
		}
		if v < 0 {
			return nil, inputErr(f.name, fs[region].Line, join(path, region), "negative multiplier %v", v)
		}
		a[region] = v
	}
	return a, nil
}

// byteUnit is the multiplier of a unit name, in lower case.
func byteUnit(name string) (int64, bool) {
	switch name {
	case "", "b":
		return 1, true
	case "kb":
		return 1e3, true
	case "mb":
		return 1e6, true
	case "gb":
		return 1e9, true
	case "tb":
		return 1e12, true
	case "pb":
		return 1e15, true
	case "kib":
		return 1 << 10, true
	case "mib":
		return 1 << 20, true
	case "gib":
		return 1 << 30, true
	case "tib":
		return 1 << 40, true
	case "pib":
		return 1 << 50, true
	}
	return 0, false
}

// ParseBytes reads a size: a whole or decimal number of bytes, or one
// followed by a unit, SI (kB, MB, GB, TB, PB: powers of 1000) or IEC (KiB,
// MiB, GiB, TiB, PiB: powers of 1024), any case, with or without a space:
// "40TB", "1.5 GiB", "1234". The result is exact: "1.23MB" is 1,230,000.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ReplaceAll(s, "_", ""))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == 'e' || t[i] == 'E' || t[i] == '+') {
		i++
	}
	unit, ok := byteUnit(strings.ToLower(strings.TrimSpace(t[i:])))
	var r big.Rat
	num := t[:i]
	// big.Rat expands an exponent exactly: bound it before it can ask for
	// a number with billions of digits.
	if j := strings.IndexAny(num, "eE"); j >= 0 {
		if e, err := strconv.Atoi(num[j+1:]); err != nil || e > 30 || e < -30 {
			ok = false
		}
	}
	if ok && i > 0 {
		_, ok = r.SetString(num)
	}
	if !ok || i == 0 || r.Sign() < 0 || len(t) > 64 {
		return 0, fmt.Errorf("want a size like 40TB, 1.5GiB or 1234, got %q", s)
	}
	r.Mul(&r, new(big.Rat).SetInt64(unit))
	// Round to the nearest byte.
	q := new(big.Int).Quo(new(big.Int).Add(new(big.Int).Mul(r.Num(), big.NewInt(2)), r.Denom()), new(big.Int).Mul(r.Denom(), big.NewInt(2)))
	if !q.IsInt64() || q.Int64() > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return q.Int64(), nil
}

// FormatBytes writes n so that ParseBytes reads it back exactly, in the
// largest SI unit that needs at most three decimals ("1.23MB", "40TB",
// "512"): readable in a file, and never rounded.
func FormatBytes(n int64) string {
	units := []struct {
		name string
		v    int64
	}{{"PB", 1e15}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}}
	for _, u := range units {
		if n >= u.v && n%(u.v/1000) == 0 {
			whole, frac := n/u.v, n%u.v/(u.v/1000)
			if frac == 0 {
				return fmt.Sprintf("%d%s", whole, u.name)
			}
			return strings.TrimRight(fmt.Sprintf("%d.%03d", whole, frac), "0") + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// HumanBytes is n rounded for a table ("1.2 TB").
func HumanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB", "PB"} {
		f /= 1000
		if f < 999.5 || u == "PB" {
			prec := 2
			if f >= 99.95 {
				prec = 0
			} else if f >= 9.995 {
				prec = 1
			}
			return strconv.FormatFloat(f, 'f', prec, 64) + " " + u
		}
	}
	return ""
}

// yamlString writes s as a YAML scalar: plain when that is unambiguous,
// else double-quoted (JSON string syntax is valid YAML).
func yamlString(s string) string {
	if plainYAML.MatchString(s) && !yamlSpecial.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}

var (
	plainYAML   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)
	yamlSpecial = regexp.MustCompile(`^(?i:true|false|yes|no|on|off|y|n|null|~|[-+]?[0-9._]+(e[-+]?[0-9]+)?|0x[0-9a-f]+|0o[0-7]+|\.inf|\.nan)$`)
)
