package placement

import (
	"cmp"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestGenerateCatalog(t *testing.T) {
	cfg := GenConfig{Objects: 5000, Regions: []string{"sa-east", "jp-east", "eu-west"}, Seed: 1, ZipfS: 0.9, TotalRate: 1000}
	cat := GenerateCatalog(cfg)
	if again := GenerateCatalog(cfg); !reflect.DeepEqual(cat, again) {
		t.Fatal("the same config gave two catalogs")
	}
	if other := GenerateCatalog(GenConfig{Objects: 5000, Seed: 2}); reflect.DeepEqual(cat.Objects[:10], other.Objects[:10]) {
		t.Error("another seed gave the same objects")
	}
	if got := len(cat.Objects); got != cfg.Objects {
		t.Fatalf("%d objects, want %d", got, cfg.Objects)
	}
	if got, want := len(cat.Classes), 4+2*len(cfg.Regions); got != want {
		t.Errorf("%d classes, want %d (4 global, 2 per region)", got, want)
	}
	match := newClassMatcher(cat.Classes)
	total, hits := 0.0, 0
	var small, large int
	var bytesVideo, bytesAll int64
	for _, o := range cat.Objects {
		if match.match("default", o.Key) < 0 {
			t.Fatalf("%s matches no class", o.Key)
		}
		total += o.Rate
		if o.Affinity != nil {
			hits++
		}
		if o.Size < 1e6 {
			small++
		}
		if o.Size > 100e6 {
			large++
		}
		bytesAll += o.Size
		if strings.HasPrefix(o.Key, "vod") {
			bytesVideo += o.Size
		}
	}
	if math.Abs(total-cfg.TotalRate) > 0.01*cfg.TotalRate {
		t.Errorf("rates sum to %.1f, want about %v", total, cfg.TotalRate)
	}
	if hits == 0 || hits > cfg.Objects/10 {
		t.Errorf("%d regional hits among %d objects, want a few percent", hits, cfg.Objects)
	}
	// A realistic mix: most objects are small, most bytes are video.
	if small < cfg.Objects/2 || large == 0 || bytesVideo < bytesAll/2 {
		t.Errorf("%d objects under 1 MB, %d over 100 MB, video %d of %d bytes", small, large, bytesVideo, bytesAll)
	}
	for _, c := range cat.Classes {
		if strings.HasPrefix(c.Name, "news-sa-east") && c.Affinity.factor("sa-east") <= c.Affinity.factor("jp-east") {
			t.Errorf("class %s: affinity %v does not favour its region", c.Name, c.Affinity)
		}
	}

	// Zipf: the slope of log(rate) against log(rank) is -s.
	rates := make([]float64, len(cat.Objects))
	for i, o := range cat.Objects {
		rates[i] = o.Rate
	}
	slices.SortFunc(rates, func(a, b float64) int { return cmp.Compare(b, a) })
	var sx, sy, sxx, sxy, n float64
	for r := 1; r <= len(rates); r *= 2 {
		x, y := math.Log(float64(r)), math.Log(rates[r-1])
		sx, sy, sxx, sxy, n = sx+x, sy+y, sxx+x*x, sxy+x*y, n+1
	}
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	if math.Abs(slope+cfg.ZipfS) > 0.02 {
		t.Errorf("log-log slope of rate against rank %.3f, want %.3f", slope, -cfg.ZipfS)
	}
}
