package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// GenConfig describes a synthetic catalog. Zero fields take the defaults
// named in their comments.
type GenConfig struct {
	// Objects is the number of objects. Default 1,000.
	Objects int
	// Regions are demand regions; up to RegionalClasses of them get
	// classes of their own (regional news and video). None: only global
	// classes.
	Regions []string
	// RegionalClasses bounds the regions with classes of their own.
	// Default 8.
	RegionalClasses int
	// Seed makes the catalog reproducible.
	Seed uint64
	// ZipfS is the exponent of the popularity law, rate ∝ rank^-s. Web
	// and CDN request traces fit 0.6 to 1.0 (Breslau et al., "Web caching
	// and Zipf-like distributions", INFOCOM 1999). Default 0.8.
	ZipfS float64
	// TotalRate is the catalog's total request rate, req/s. Default 10,000.
	TotalRate float64
	// RegionalHits is the share of global objects that are hits in one
	// region (affinity 20 there), as a foreign series can be. Default 0.02.
	RegionalHits float64
}

// genClass is a kind of content: its share of objects and its sizes.
type genClass struct {
	prefix, ext string
	share       float64 // of objects
	median      float64 // bytes
	sigma       float64 // of ln(size)
	maxSize     float64
}

// genKinds are the kinds of content, with sizes log-normal around medians
// typical of CDN traffic: page assets of tens of kB, images of a few
// hundred kB, software of tens of MB and feature-length video files of a
// couple of GB; by count small objects dominate, by bytes video does. The
// last two are regional (their prefixes get the region appended).
func genKinds() (web, img, sw, vod, news, local genClass) {
	return genClass{"web/", "js", 0.45, 20e3, 1.2, 5e6},
		genClass{"img/", "jpg", 0.25, 150e3, 1.0, 20e6},
		genClass{"sw/", "bin", 0.05, 80e6, 1.3, 4e9},
		genClass{"vod/", "mp4", 0.10, 1.5e9, 0.6, 8e9},
		genClass{"news/", "html", 0.10, 40e3, 1.0, 5e6},
		genClass{"vod-local/", "mp4", 0.05, 1.2e9, 0.6, 8e9}
}

// GenerateCatalog builds a synthetic catalog: global classes web/, img/,
// sw/ and vod/, and per region news/<region>/ and vod-local/<region>/
// classes whose demand stays mostly in their region; popularity follows
// Zipf's law over a random ranking; a few global objects are hits in one
// region. The same config gives the same catalog.
func GenerateCatalog(cfg GenConfig) *Catalog {
	if cfg.Objects <= 0 {
		cfg.Objects = 1000
	}
	if cfg.RegionalClasses == 0 {
		cfg.RegionalClasses = 8
	}
	if cfg.ZipfS == 0 {
		cfg.ZipfS = 0.8
	}
	if cfg.TotalRate == 0 {
		cfg.TotalRate = 10_000
	}
	if cfg.RegionalHits == 0 {
		cfg.RegionalHits = 0.02
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	regions := cfg.Regions[:min(len(cfg.Regions), max(cfg.RegionalClasses, 0))]

	type kind struct {
		g     genClass
		class int
	}
	cat := &Catalog{}
	var kinds []kind
	add := func(name string, g genClass, prefix string, aff Affinity) {
		cat.Classes = append(cat.Classes, Class{Name: name, Prefixes: []string{prefix}, Affinity: aff})
		g.prefix = prefix
		kinds = append(kinds, kind{g, len(cat.Classes) - 1})
	}
	genWeb, genImg, genSW, genVOD, genNews, genLocal := genKinds()
	for _, g := range []genClass{genWeb, genImg, genSW, genVOD} {
		add(g.prefix[:len(g.prefix)-1], g, g.prefix, nil)
	}
	for _, r := range regions {
		// Regional news is read mostly at home; a regional series travels
		// a little further with its diaspora.
		ng, vg := genNews, genLocal
		ng.share /= float64(len(regions))
		vg.share /= float64(len(regions))
		add("news-"+r, ng, "news/"+r+"/", Affinity{r: 1, "*": 0.05})
		add("vod-local-"+r, vg, "vod-local/"+r+"/", Affinity{r: 1, "*": 0.02})
	}
	totalShare := 0.0
	for _, k := range kinds {
		totalShare += k.g.share
	}

	// Zipf rates over a random ranking, so popularity is independent of
	// the class and of the key.
	rank := rng.Perm(cfg.Objects)
	h := 0.0
	for i := 1; i <= cfg.Objects; i++ {
		h += math.Pow(float64(i), -cfg.ZipfS)
	}
	for i := range cfg.Objects {
		x := rng.Float64() * totalShare
		k := kinds[len(kinds)-1]
		for _, kk := range kinds {
			if x < kk.g.share {
				k = kk
				break
			}
			x -= kk.g.share
		}
		size := math.Min(k.g.maxSize, k.g.median*math.Exp(k.g.sigma*rng.NormFloat64()))
		o := Object{
			Key:  fmt.Sprintf("%s%06d.%s", k.g.prefix, i, k.g.ext),
			Size: sig3(math.Max(size, 100)),
			Rate: sig3f(cfg.TotalRate * math.Pow(float64(rank[i]+1), -cfg.ZipfS) / h),
		}
		if cat.Classes[k.class].Affinity == nil && len(cfg.Regions) > 0 && rng.Float64() < cfg.RegionalHits {
			o.Affinity = Affinity{cfg.Regions[rng.IntN(len(cfg.Regions))]: 20}
		}
		cat.Objects = append(cat.Objects, o)
	}
	return cat
}

// sig3 rounds to three significant digits, so generated sizes read well
// and FormatBytes writes them exactly.
func sig3(x float64) int64 {
	if x < 1000 {
		return int64(math.Round(x))
	}
	p := math.Pow(10, math.Floor(math.Log10(x))-2)
	return int64(math.Round(x/p) * p)
}

func sig3f(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 3, 64), 64)
	return v
}
