package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// chiSquareCritical is the 99.9th percentile of the chi-square law with
// k degrees of freedom (Wilson–Hilferty): a correct sampler passes with
// the fixed seeds below, a wrong one misses by far more.
func chiSquareCritical(k int) float64 {
	const z = 3.09
	f := float64(k)
	c := 1 - 2/(9*f) + z*math.Sqrt(2/(9*f))
	return f * c * c * c
}

// chiSquare compares observed counts with expected probabilities, pooling
// the categories expected fewer than 20 times into one so the statistic
// follows its law. It returns the statistic and its degrees of freedom.
func chiSquare(counts []int, p []float64, n int) (float64, int) {
	var stat float64
	bins := 0
	poolObs, poolExp := 0.0, 0.0
	for i, c := range counts {
		e := p[i] * float64(n)
		if e < 20 {
			poolObs += float64(c)
			poolExp += e
			continue
		}
		stat += (float64(c) - e) * (float64(c) - e) / e
		bins++
	}
	if poolExp > 0 {
		stat += (poolObs - poolExp) * (poolObs - poolExp) / poolExp
		bins++
	}
	return stat, bins - 1
}

func TestZipfProbabilities(t *testing.T) {
	for _, tt := range []struct {
		n int
		s float64
	}{{1, 0.9}, {5, 0}, {100, 0.5}, {1000, 0.9}, {1000, 1}, {50, 2.5}} {
		z := NewZipf(tt.n, tt.s)
		h := 0.0
		for i := 1; i <= tt.n; i++ {
			h += math.Pow(float64(i), -tt.s)
		}
		sum := 0.0
		for i := range tt.n {
			want := math.Pow(float64(i+1), -tt.s) / h
			if got := z.P(i); math.Abs(got-want) > 1e-12*math.Max(want, 1e-300)+1e-15 {
				t.Errorf("n=%d s=%v: P(%d) = %v, want %v", tt.n, tt.s, i, got, want)
			}
			sum += z.P(i)
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("n=%d s=%v: probabilities sum to %v", tt.n, tt.s, sum)
		}
	}
}

// TestZipfSample checks the empirical distribution of a large
// fixed-seed sample against the law, for exponents below, at and above
// 1 (math/rand's Zipf only covers s > 1).
func TestZipfSample(t *testing.T) {
	const draws = 200_000
	for _, tt := range []struct {
		n int
		s float64
	}{{1, 0.9}, {10, 0}, {2000, 0.6}, {2000, 0.9}, {500, 1}, {100, 1.8}, {1000, 40}} {
		z := NewZipf(tt.n, tt.s)
		r := rand.New(rand.NewPCG(1, uint64(tt.n)))
		counts := make([]int, tt.n)
		for range draws {
			i := z.Sample(r)
			if i < 0 || i >= tt.n {
				t.Fatalf("n=%d s=%v: rank %d out of range", tt.n, tt.s, i)
			}
			counts[i]++
		}
		p := make([]float64, tt.n)
		for i := range p {
			p[i] = z.P(i)
		}
		if tt.n == 1 || p[1] == 0 {
			if counts[0] != draws {
				t.Errorf("n=%d s=%v: rank 0 drawn %d times of %d, want all", tt.n, tt.s, counts[0], draws)
			}
			continue
		}
		stat, df := chiSquare(counts, p, draws)
		if crit := chiSquareCritical(df); stat > crit {
			t.Errorf("n=%d s=%v: chi-square %.1f with %d degrees of freedom, above %.1f", tt.n, tt.s, stat, df, crit)
		}
		// The head, where a load test's traffic is, rank by rank: within
		// four standard errors of a binomial count.
		for i := range min(tt.n, 5) {
			want := p[i] * draws
			if sd := math.Sqrt(want * (1 - p[i])); math.Abs(float64(counts[i])-want) > 4*sd+1e-9 {
				t.Errorf("n=%d s=%v: rank %d drawn %d times, want %.0f ± %.0f", tt.n, tt.s, i, counts[i], want, 4*sd)
			}
		}
	}
}

func TestNewZipfRefusesBadArguments(t *testing.T) {
	for _, tt := range []struct {
		n int
		s float64
	}{{0, 1}, {10, -0.1}, {10, math.NaN()}, {10, math.Inf(1)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewZipf(%d, %v) did not panic", tt.n, tt.s)
				}
			}()
			NewZipf(tt.n, tt.s)
		}()
	}
}

func TestSizeFixed(t *testing.T) {
	d := SizeDist{Kind: SizeFixed, Fixed: 4096}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		if got := d.Sample(r); got != 4096 {
			t.Fatalf("Sample = %d, want 4096", got)
		}
	}
	if d.Mean() != 4096 {
		t.Errorf("Mean = %v, want 4096", d.Mean())
	}
	if got := (SizeDist{}).Sample(r); got != 0 {
		t.Errorf("zero SizeDist: Sample = %d, want 0", got)
	}
}

func TestSizeWeighted(t *testing.T) {
	d := SizeDist{Kind: SizeWeighted, Sizes: []int64{1 << 10, 16 << 10, 0, 1 << 20}, Weights: []float64{5, 3, 0, 1}}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	const draws = 100_000
	r := rand.New(rand.NewPCG(3, 4))
	counts := make([]int, len(d.Sizes))
	sum := 0.0
	for range draws {
		x := d.Sample(r)
		i := slices.Index(d.Sizes, x)
		if i < 0 {
			t.Fatalf("drew %d, not one of %v", x, d.Sizes)
		}
		counts[i]++
		sum += float64(x)
	}
	if counts[2] != 0 {
		t.Errorf("a size of weight 0 was drawn %d times", counts[2])
	}
	p := []float64{5.0 / 9, 3.0 / 9, 0, 1.0 / 9}
	stat, df := chiSquare(slices.Delete(slices.Clone(counts), 2, 3), slices.Delete(slices.Clone(p), 2, 3), draws)
	if crit := chiSquareCritical(df); stat > crit {
		t.Errorf("chi-square %.1f with %d degrees of freedom, above %.1f (counts %v)", stat, df, crit, counts)
	}
	want := (5.0*(1<<10) + 3*(16<<10) + 1<<20) / 9
	if d.Mean() != want {
		t.Errorf("Mean = %v, want %v", d.Mean(), want)
	}
	if got := sum / draws; math.Abs(got-want) > 0.02*want {
		t.Errorf("empirical mean %.0f, want %.0f within 2%%", got, want)
	}
}

// TestSizeLognormal checks draws against the law: the median, the
// shares clamped at min and max, the mean, and Mean's closed form
// against a numerical integral.
func TestSizeLognormal(t *testing.T) {
	for _, d := range []SizeDist{
		{Kind: SizeLognormal, Median: 16 << 10, Sigma: 1.2, Min: 100, Max: 4 << 20},
		{Kind: SizeLognormal, Median: 64 << 10, Sigma: 0.5, Min: 1, Max: 64 << 20},
		{Kind: SizeLognormal, Median: 1000, Sigma: 2, Min: 500, Max: 3000},
		{Kind: SizeLognormal, Median: 1000, Sigma: 0, Min: 1, Max: 3000},
	} {
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		// The mean by the trapezoid rule over the standard normal z.
		const steps = 200_000
		numeric := 0.0
		for i := range steps + 1 {
			z := -12 + 24*float64(i)/steps
			x := math.Min(math.Max(float64(d.Median)*math.Exp(d.Sigma*z), float64(d.Min)), float64(d.Max))
			w := math.Exp(-z*z/2) / math.Sqrt(2*math.Pi) * 24 / steps
			if i == 0 || i == steps {
				w /= 2
			}
			numeric += w * x
		}
		if got := d.Mean(); math.Abs(got-numeric) > 1e-6*numeric {
			t.Errorf("%+v: Mean = %.3f, numerical integral %.3f", d, got, numeric)
		}

		const draws = 200_000
		r := rand.New(rand.NewPCG(5, uint64(d.Median)))
		xs := make([]int64, draws)
		sum := 0.0
		atMin, atMax := 0, 0
		for i := range xs {
			x := d.Sample(r)
			if x < d.Min || x > d.Max {
				t.Fatalf("%+v: drew %d, outside [min, max]", d, x)
			}
			atMin += b2i(x == d.Min)
			atMax += b2i(x == d.Max)
			xs[i] = x
			sum += float64(x)
		}
		slices.Sort(xs)
		if med := xs[draws/2]; math.Abs(float64(med-d.Median)) > 0.02*float64(d.Median) {
			t.Errorf("%+v: empirical median %d, want %d within 2%%", d, med, d.Median)
		}
		if got, want := sum/draws, d.Mean(); math.Abs(got-want) > 0.02*want {
			t.Errorf("%+v: empirical mean %.0f, Mean %.0f: more than 2%% apart", d, got, want)
		}
		if d.Sigma > 0 {
			mu, s := math.Log(float64(d.Median)), d.Sigma
			wantMin := phi((math.Log(float64(d.Min)+0.5) - mu) / s) // draws round to the nearest byte
			wantMax := 1 - phi((math.Log(float64(d.Max)-0.5)-mu)/s)
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"min", float64(atMin) / draws, wantMin}, {"max", float64(atMax) / draws, wantMax}} {
				// Three standard errors of a binomial share, plus a floor for
				// shares too small to see.
				tol := 3*math.Sqrt(c.want*(1-c.want)/draws) + 1e-4
				if math.Abs(c.got-c.want) > tol {
					t.Errorf("%+v: share clamped at %s %.5f, want %.5f ± %.5f", d, c.name, c.got, c.want, tol)
				}
			}
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSizeDistValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		d    SizeDist
		ok   bool
	}{
		{"fixed", SizeDist{Kind: SizeFixed, Fixed: 1}, true},
		{"negative fixed", SizeDist{Kind: SizeFixed, Fixed: -1}, false},
		{"no kind", SizeDist{}, false},
		{"lognormal", SizeDist{Kind: SizeLognormal, Median: 10, Sigma: 1, Min: 1, Max: 100}, true},
		{"lognormal without median", SizeDist{Kind: SizeLognormal, Sigma: 1, Min: 1, Max: 100}, false},
		{"negative sigma", SizeDist{Kind: SizeLognormal, Median: 10, Sigma: -1, Min: 1, Max: 100}, false},
		{"NaN sigma", SizeDist{Kind: SizeLognormal, Median: 10, Sigma: math.NaN(), Min: 1, Max: 100}, false},
		{"min above max", SizeDist{Kind: SizeLognormal, Median: 10, Sigma: 1, Min: 100, Max: 10}, false},
		{"median outside", SizeDist{Kind: SizeLognormal, Median: 1000, Sigma: 1, Min: 1, Max: 100}, false},
		{"weighted", SizeDist{Kind: SizeWeighted, Sizes: []int64{1, 2}, Weights: []float64{0, 1}}, true},
		{"mismatched", SizeDist{Kind: SizeWeighted, Sizes: []int64{1, 2}, Weights: []float64{1}}, false},
		{"empty", SizeDist{Kind: SizeWeighted}, false},
		{"negative weight", SizeDist{Kind: SizeWeighted, Sizes: []int64{1, 2}, Weights: []float64{2, -1}}, false},
		{"all zero", SizeDist{Kind: SizeWeighted, Sizes: []int64{1, 2}, Weights: []float64{0, 0}}, false},
	} {
		if err := tt.d.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
