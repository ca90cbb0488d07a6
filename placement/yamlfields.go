package placement

import (
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/geocdn/geocdn/internal/yamlx"
)

// yamlFile is one YAML document being decoded: the generic node helpers
// of yamlx, plus the field types only placement's files have.
type yamlFile struct{ yamlx.Doc }

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
