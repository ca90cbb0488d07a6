package placement

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/geocdn/geocdn/internal/yamlx"
)

// yamlFile is one YAML document being decoded: the generic node helpers
// of yamlx, plus the field types only placement's files have.
type yamlFile struct{ yamlx.Doc }

// Fields is yamlx's, but first recognises a value a comma split: inside
// { } a comma separates fields, so "capacity: 1,5GB" reads as capacity 1
// and a field "5GB" with no value, which would otherwise be reported as
// an unknown field "5GB".
func (f yamlFile) Fields(path string, n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	if err := f.commaSplit(path, n); err != nil {
		return nil, err
	}
	return f.Doc.Fields(path, n, allowed...)
}

// commaSplit reports a field of flow mapping n whose value a comma cut
// short: a plain scalar followed, on the same line and with no space
// after the comma, by a key without a value.
func (f yamlFile) commaSplit(path string, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode || n.Style&yaml.FlowStyle == 0 {
		return nil
	}
	for i := 2; i+1 < len(n.Content); i += 2 {
		pk, pv := n.Content[i-2], n.Content[i-1]
		k, v := n.Content[i], n.Content[i+1]
		split := pv.Kind == yaml.ScalarNode && pv.Style == 0 &&
			k.Kind == yaml.ScalarNode && k.Style == 0 && k.Line == pv.Line &&
			k.Column == pv.Column+utf8.RuneCountInString(pv.Value)+1 && // "1,5GB": no space after the comma
			v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "" && v.Line == k.Line &&
			v.Column == k.Column+utf8.RuneCountInString(k.Value) // no ':' either
		if !split {
			continue
		}
		whole := pv.Value + "," + k.Value
		fix := fmt.Sprintf("quote it (%q)", whole)
		if c := pv.Value[0]; c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' {
			fix = commaFix(whole)
		}
		return f.Errorf(pv.Line, yamlx.Join(path, pk.Value), "%q was cut at the comma, which separates fields inside { }, and read as %s and a field %q: %s",
			whole, pv.Value, k.Value, fix)
	}
	return nil
}

// commaFix says how to write a number that has a comma, which may have
// been meant as a decimal or a thousands separator: "1,5GB" is 1.5GB or
// 15GB, and only the person knows which.
func commaFix(s string) string {
	return fmt.Sprintf("write %s with a decimal point, or %s with no thousands separator",
		strings.Replace(s, ",", ".", 1), strings.ReplaceAll(s, ",", ""))
}

// Num is yamlx's, with a hint for a comma in the number.
func (f yamlFile) Num(path string, n *yaml.Node) (float64, error) {
	v, err := f.Doc.Num(path, n)
	if err != nil && n.Kind == yaml.ScalarNode && strings.Contains(n.Value, ",") {
		return 0, f.Errorf(n.Line, path, "want a number, got %q: %s", n.Value, commaFix(n.Value))
	}
	return v, err
}

// Bytes is yamlx's, with a hint for a comma in the number.
func (f yamlFile) Bytes(path string, n *yaml.Node) (int64, error) {
	v, err := f.Doc.Bytes(path, n)
	if err != nil && n.Kind == yaml.ScalarNode && strings.Contains(n.Value, ",") {
		return 0, f.Errorf(n.Line, path, "want a size like 40TB, got %q: %s", n.Value, commaFix(n.Value))
	}
	return v, err
}

// affinity returns mapping n as an Affinity.
func (f yamlFile) affinity(path string, n *yaml.Node) (Affinity, error) {
	fs, err := f.Fields(path, n)
	if err != nil {
		return nil, err
	}
	a := make(Affinity, len(fs))
	for i := 0; i+1 < len(n.Content); i += 2 {
		region := n.Content[i].Value
		v, err := f.Num(yamlx.Join(path, region), fs[region])
		if err != nil {
			return nil, err
		}
		if v < 0 {
			return nil, f.Errorf(fs[region].Line, yamlx.Join(path, region), "negative multiplier %v", v)
		}
		a[region] = v
	}
	return a, nil
}

// ParseBytes reads a size: a whole or decimal number of bytes, or one
// followed by a unit, SI (kB, MB, GB, TB, PB: powers of 1000) or IEC (KiB,
// MiB, GiB, TiB, PiB: powers of 1024), any case, with or without a space:
// "40TB", "1.5 GiB", "1234". The result is exact: "1.23MB" is 1,230,000.
func ParseBytes(s string) (int64, error) { return yamlx.ParseBytes(s) }

// FormatBytes writes n so that ParseBytes reads it back exactly, in the
// largest SI unit that needs at most three decimals ("1.23MB", "40TB",
// "512"): readable in a file, and never rounded.
func FormatBytes(n int64) string { return yamlx.FormatBytes(n) }

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
