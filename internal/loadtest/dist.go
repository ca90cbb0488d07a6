package loadtest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Zipf draws ranks 0…n-1 with P(rank i) ∝ 1/(i+1)^s, for any exponent
// s ≥ 0. math/rand's Zipf needs s > 1, but measured web and CDN
// popularity mostly has s below 1, so this one keeps the cumulative
// distribution (n float64s) and binary-searches it. A Zipf is read-only
// after NewZipf and safe for concurrent use.
type Zipf struct {
	cum []float64 // cum[i] = Σ_{j≤i} 1/(j+1)^s, not normalised
}

// NewZipf returns the law over n ≥ 1 ranks with exponent s ≥ 0 (0 is
// uniform). It panics on other arguments: a Scenario in hand has valid
// ones.
func NewZipf(n int, s float64) *Zipf {
	if n < 1 || !(s >= 0) || math.IsInf(s, 0) {
		panic(fmt.Sprintf("loadtest: NewZipf(%d, %v): want n ≥ 1 and a finite s ≥ 0", n, s))
	}
	z := &Zipf{cum: make([]float64, n)}
	acc := 0.0
	for i := range z.cum {
		acc += math.Pow(float64(i+1), -s)
		z.cum[i] = acc
	}
	return z
}

// N is the number of ranks.
func (z *Zipf) N() int { return len(z.cum) }

// P is the probability of rank i.
func (z *Zipf) P(i int) float64 {
	prev := 0.0
	if i > 0 {
		prev = z.cum[i-1]
	}
	return (z.cum[i] - prev) / z.cum[len(z.cum)-1]
}

// Sample draws a rank, 0 the most popular.
func (z *Zipf) Sample(r *rand.Rand) int {
	u := r.Float64() * z.cum[len(z.cum)-1]
	// The first rank whose cumulative weight exceeds u: ranks whose
	// weight underflowed to 0 (a huge s) are never drawn.
	i := sort.Search(len(z.cum), func(i int) bool { return z.cum[i] > u })
	return min(i, len(z.cum)-1) // u can round up to the total
}

// Validate reports whether d can be sampled: a known kind with sizes
// ≥ 0; for SizeLognormal a median in [Min, Max] above 0 and Sigma ≥ 0;
// for SizeWeighted as many weights as sizes, none negative, not all 0.
func (d SizeDist) Validate() error {
	switch d.Kind {
	case SizeFixed:
		if d.Fixed < 0 {
			return fmt.Errorf("negative size %d", d.Fixed)
		}
	case SizeLognormal:
		switch {
		case d.Median <= 0:
			return errors.New("lognormal: want a median above 0")
		case !(d.Sigma >= 0) || math.IsInf(d.Sigma, 0):
			return fmt.Errorf("lognormal: want a finite sigma ≥ 0, got %v", d.Sigma)
		case d.Min < 0 || d.Min > d.Max:
			return fmt.Errorf("lognormal: want 0 ≤ min ≤ max, got min %d, max %d", d.Min, d.Max)
		case d.Median < d.Min || d.Median > d.Max:
			return fmt.Errorf("lognormal: median %d is outside [%d, %d]", d.Median, d.Min, d.Max)
		}
	case SizeWeighted:
		if len(d.Sizes) == 0 || len(d.Sizes) != len(d.Weights) {
			return fmt.Errorf("weighted: %d sizes and %d weights; want as many of each, at least one", len(d.Sizes), len(d.Weights))
		}
		total := 0.0
		for i, w := range d.Weights {
			if !(w >= 0) || math.IsInf(w, 0) || d.Sizes[i] < 0 {
				return fmt.Errorf("weighted: size %d weight %v: want sizes ≥ 0 and finite weights ≥ 0", d.Sizes[i], w)
			}
			total += w
		}
		if !(total > 0) || math.IsInf(total, 0) {
			return errors.New("weighted: want weights with a finite sum above 0")
		}
	default:
		return fmt.Errorf("unknown size distribution %q (want fixed, lognormal or weighted)", d.Kind)
	}
	return nil
}

// Sample draws a size in bytes. d must be valid (see Validate); the zero
// SizeDist gives 0.
func (d SizeDist) Sample(r *rand.Rand) int64 {
	switch d.Kind {
	case SizeLognormal:
		x := float64(d.Median) * math.Exp(d.Sigma*r.NormFloat64())
		// Clamped as a float first: a far tail overflows int64.
		return int64(math.Round(math.Min(math.Max(x, float64(d.Min)), float64(d.Max))))
	case SizeWeighted:
		// Linear: such lists are a handful of sizes, and a value
		// receiver has nowhere to keep a cumulative table.
		total := 0.0
		for _, w := range d.Weights {
			total += w
		}
		u := r.Float64() * total
		last := 0
		for i, w := range d.Weights {
			if w <= 0 {
				continue
			}
			if u < w {
				return d.Sizes[i]
			}
			u -= w
			last = i
		}
		return d.Sizes[last] // u rounded past the last weight
	}
	return d.Fixed
}

// Mean is the expected size of a draw, exact for SizeFixed and
// SizeWeighted; for SizeLognormal it is the mean of the lognormal law
// clamped to [Min, Max], computed in closed form (the rounding of a draw
// to whole bytes, which moves the mean by far less than a byte, is left
// out).
func (d SizeDist) Mean() float64 {
	switch d.Kind {
	case SizeLognormal:
		return clampedLognormalMean(math.Log(float64(d.Median)), d.Sigma, float64(d.Min), float64(d.Max))
	case SizeWeighted:
		sum, total := 0.0, 0.0
		for i, w := range d.Weights {
			sum += w * float64(d.Sizes[i])
			total += w
		}
		return sum / total
	}
	return float64(d.Fixed)
}

// clampedLognormalMean is E[min(max(X, a), b)] for ln X ~ N(mu, sigma²):
// a·P(X<a) + b·P(X>b) + ∫_a^b x f(x) dx, the last being
// e^(mu+sigma²/2)·[Φ((ln b−mu−sigma²)/sigma) − Φ((ln a−mu−sigma²)/sigma)].
func clampedLognormalMean(mu, sigma, a, b float64) float64 {
	if sigma == 0 {
		return math.Min(math.Max(math.Exp(mu), a), b)
	}
	la, lb := math.Log(a), math.Log(b) // ln 0 = -Inf gives Φ = 0, as it should
	below := phi((la - mu) / sigma)
	above := 1 - phi((lb-mu)/sigma)
	mid := phi((lb-mu-sigma*sigma)/sigma) - phi((la-mu-sigma*sigma)/sigma)
	inner := 0.0
	if mid > 0 {
		// In logs: e^(sigma²/2) overflows for a large sigma while mid
		// underflows towards 0; their product is still a size.
		inner = math.Exp(mu + sigma*sigma/2 + math.Log(mid))
	}
	out := inner
	if below > 0 {
		out += a * below
	}
	if above > 0 {
		out += b * above
	}
	return out
}

// phi is the standard normal distribution function.
func phi(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }
