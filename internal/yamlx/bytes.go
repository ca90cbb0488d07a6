package yamlx

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

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
