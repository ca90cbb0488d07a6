package loadtest

import (
	"cmp"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/internal/yamlx"
)

// Defaults of the scenario fields a file may leave out (the README's "Scenario files"
// documents them all).
const (
	DefaultDemand       = "testdata/demand.csv"
	DefaultObjects      = 1000
	DefaultZipf         = 0.9
	DefaultSize         = 4 << 10
	DefaultConsistency  = "eventual"
	DefaultCacheControl = "public, max-age=60"
	DefaultMaxInFlight  = 10_000
	DefaultLognormalMin = 1
	DefaultLognormalMax = 64 << 20
)

// Limits past which a scenario is refused: more than a load generator
// sharing a small machine with the cluster can do, or memory the
// popularity table would need.
const (
	maxObjects     = 1_000_000
	maxRate        = 1_000_000 // per second
	maxConcurrency = 100_000
)

// validID is what a scenario name, an edge id or a region may be: they
// appear in file names, URLs and tables.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// LoadScenario reads the scenario file at path.
func LoadScenario(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseScenario(path, f)
}

// ParseScenario reads a scenario in the YAML format the README's "Scenario files"
// describes and fills in the defaults. name labels errors and becomes
// the Scenario's File; every error is a *yamlx.InputError naming the
// file, the line and the field.
func ParseScenario(name string, r io.Reader) (*Scenario, error) {
	p := parser{Doc: yamlx.Doc{Name: name}}
	root, err := p.Parse(r)
	if err != nil {
		return nil, err
	}
	return p.scenario(root)
}

// parser reads one scenario file.
type parser struct {
	yamlx.Doc
}

// opt reads the field key of fs into dst with read, if the field is there.
// Callers list a section's fields in one cmp.Or, which returns the first
// error: the later fields are read too, which costs nothing and keeps a
// section's reading in one place.
func opt[T any](fs map[string]*yaml.Node, key, path string, dst *T, read func(string, *yaml.Node) (T, error)) error {
	n, ok := fs[key]
	if !ok {
		return nil
	}
	v, err := read(yamlx.Join(path, key), n)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

func (p *parser) scenario(root *yaml.Node) (*Scenario, error) {
	top, err := p.Fields("", root, "name", "description", "duration", "seed",
		"target", "clients", "objects", "arrivals", "mix", "writes", "events")
	if err != nil {
		return nil, err
	}
	s := &Scenario{File: p.Name, Name: defaultName(p.Name)}
	var dur time.Duration
	if err := cmp.Or(
		opt(top, "name", "", &s.Name, p.id),
		opt(top, "description", "", &s.Description, p.Str),
		opt(top, "duration", "", &dur, p.positiveDuration),
		opt(top, "seed", "", &s.Seed, p.seed),
	); err != nil {
		return nil, err
	}
	if s.Target, err = p.target(top["target"]); err != nil {
		return nil, err
	}
	if s.Clients, err = p.clients(top["clients"]); err != nil {
		return nil, err
	}
	if s.Objects, err = p.objects(top["objects"], s.Name); err != nil {
		return nil, err
	}
	an, ok := top["arrivals"]
	if !ok {
		return nil, p.Errorf(root.Line, "arrivals", "missing (how requests start: phases of an open loop, or a closed loop's concurrency)")
	}
	if s.Arrivals, err = p.arrivals(an); err != nil {
		return nil, err
	}
	if s.Duration, err = p.duration(top["duration"], dur, an, s.Arrivals); err != nil {
		return nil, err
	}
	if s.Mix, err = p.mix(top["mix"]); err != nil {
		return nil, err
	}
	if n, ok := top["writes"]; ok {
		if s.Writes, err = p.writes(n, s); err != nil {
			return nil, err
		}
	}
	if n, ok := top["events"]; ok {
		if s.Events, err = p.events(n, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// defaultName is the scenario name a file gives by its own name: its
// base name without the extension, made a valid name.
func defaultName(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	b := []byte(base)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	name := strings.TrimLeft(string(b), "._-")
	if len(name) > 63 {
		name = name[:63]
	}
	if name == "" {
		return "scenario"
	}
	return name
}

func (p *parser) id(path string, n *yaml.Node) (string, error) {
	s, err := p.Str(path, n)
	if err != nil {
		return "", err
	}
	if !validID.MatchString(s) {
		return "", p.Errorf(n.Line, path, "%q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return s, nil
}

func (p *parser) seed(path string, n *yaml.Node) (uint64, error) {
	if n.Kind == yaml.ScalarNode {
		if v, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 10, 64); err == nil {
			return v, nil
		}
	}
	return 0, p.Errorf(n.Line, path, "want a whole number from 0 (random) to 2^64-1, got %s", yamlx.Describe(n))
}

func (p *parser) positiveDuration(path string, n *yaml.Node) (time.Duration, error) {
	d, err := p.Duration(path, n)
	if err == nil && d == 0 {
		err = p.Errorf(n.Line, path, "want a duration above 0, got %s", yamlx.Describe(n))
	}
	return d, err
}

func (p *parser) positiveInt(path string, n *yaml.Node) (int, error) {
	v, err := p.Int(path, n)
	if err == nil && v < 1 {
		err = p.Errorf(n.Line, path, "want at least 1, got %d", v)
	}
	return v, err
}

// weight reads a relative weight: a finite number ≥ 0.
func (p *parser) weight(path string, n *yaml.Node) (float64, error) {
	v, err := p.Num(path, n)
	if err == nil && v < 0 {
		err = p.Errorf(n.Line, path, "negative weight %v", v)
	}
	return v, err
}

// rate reads a rate: "200" or "200/s" per second, "12000/m" per minute,
// "10/h" per hour.
func (p *parser) rate(path string, n *yaml.Node) (float64, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, p.Errorf(n.Line, path, "want a rate like 200 or 200/s, got %s", yamlx.Describe(n))
	}
	v, ok := parseRate(n.Value)
	switch {
	case !ok:
		return 0, p.Errorf(n.Line, path, "want a rate like 200 or 200/s, got %q", n.Value)
	case v < 0:
		return 0, p.Errorf(n.Line, path, "negative rate %q", n.Value)
	case v > maxRate:
		return 0, p.Errorf(n.Line, path, "rate %q is above the %d/s a load generator can send", n.Value, maxRate)
	}
	return v, nil
}

// positiveRate is a rate above 0: a stream at rate 0 would do nothing.
func (p *parser) positiveRate(path string, n *yaml.Node) (float64, error) {
	v, err := p.rate(path, n)
	if err == nil && v == 0 {
		err = p.Errorf(n.Line, path, "want a rate above 0, got %q", n.Value)
	}
	return v, err
}

// parseRate reads a number of events per second, minute or hour as
// events per second.
func parseRate(s string) (float64, bool) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	div := 1.0
	switch strings.TrimSpace(unit) {
	case "", "s":
	case "m", "min":
		div = 60
	case "h":
		div = 3600
	default:
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(num), "_", ""), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v / div, true
}

// sizeString writes n for a message in the unit a scenario most likely
// used: IEC when n is a whole number of KiB or MiB, else SI.
func sizeString(n int64) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n > 0 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	case n < 1000:
		return strconv.FormatInt(n, 10) + "B"
	}
	return yamlx.FormatBytes(n)
}

// formatRate writes a rate for a message.
func formatRate(r float64) string {
	return strconv.FormatFloat(r, 'g', 6, 64) + "/s"
}

func (p *parser) consistency(path string, n *yaml.Node) (string, error) {
	s, err := p.Str(path, n)
	if err != nil {
		return "", err
	}
	c, bound, err := wire.ParseConsistency(s)
	if err != nil {
		return "", p.Errorf(n.Line, path, "%s", strings.TrimPrefix(err.Error(), "wire: "))
	}
	// Canonical, so code that compares with "strong" need not know the
	// other spellings the origin accepts ("Strong", "prefix").
	return wire.FormatConsistency(c, bound), nil
}

var validW = regexp.MustCompile(`^(0|[1-9][0-9]{0,3}|quorum|all)$`)

// w reads the origin's w= parameter: how many edges must apply a write
// before the origin acknowledges it.
func (p *parser) w(path string, n *yaml.Node) (string, error) {
	s, err := p.Str(path, n)
	if err != nil {
		return "", err
	}
	if !validW.MatchString(s) {
		return "", p.Errorf(n.Line, path, "want 0, a number of edges, quorum or all, got %q", s)
	}
	return s, nil
}

func (p *parser) key(path string, n *yaml.Node) (string, error) {
	s, err := p.Str(path, n)
	if err != nil {
		return "", err
	}
	if err := objkey.Validate(s); err != nil {
		return "", p.Wrap(n.Line, path, err)
	}
	return s, nil
}

// prefix reads a key prefix: a string that can begin a valid key.
func (p *parser) prefix(path string, n *yaml.Node) (string, error) {
	s, err := p.Str(path, n)
	if err != nil {
		return "", err
	}
	if err := objkey.Validate(s + "0"); err != nil {
		return "", p.Wrap(n.Line, path, err)
	}
	return s, nil
}

func (p *parser) target(n *yaml.Node) (Target, error) {
	t := Target{Kind: TargetRouter, SessionRequests: 1}
	if n == nil {
		return t, nil
	}
	const path = "target"
	if n.Kind == yaml.ScalarNode {
		switch id, ok := strings.CutPrefix(n.Value, "edge:"); {
		case n.Value == string(TargetRouter):
			return t, nil
		case ok && validID.MatchString(id):
			t.Kind, t.Edge = TargetEdge, id
			return t, nil
		}
		return t, p.Errorf(n.Line, path, "want router, edge:<id> or a mapping, got %s", yamlx.Describe(n))
	}
	fs, err := p.Fields(path, n, "kind", "edge", "keep_edge", "session_requests")
	if err != nil {
		return t, err
	}
	var kind string
	if err := cmp.Or(
		opt(fs, "kind", path, &kind, p.Str),
		opt(fs, "edge", path, &t.Edge, p.id),
		opt(fs, "keep_edge", path, &t.KeepEdge, p.Bool),
		opt(fs, "session_requests", path, &t.SessionRequests, p.positiveInt),
	); err != nil {
		return t, err
	}
	switch TargetKind(kind) {
	case "":
		if t.Edge != "" {
			t.Kind = TargetEdge
		}
	case TargetRouter, TargetEdge:
		t.Kind = TargetKind(kind)
	default:
		return t, p.Errorf(fs["kind"].Line, path+".kind", "unknown kind %q (want router or edge)", kind)
	}
	switch {
	case t.Kind == TargetEdge && t.Edge == "":
		return t, p.Errorf(n.Line, path+".edge", "missing: kind edge needs the id of the edge to send reads to")
	case t.Kind == TargetRouter && t.Edge != "":
		return t, p.Errorf(fs["edge"].Line, path+".edge", "only with kind: edge (the router chooses the edge)")
	case t.Kind == TargetEdge && t.KeepEdge:
		return t, p.Errorf(fs["keep_edge"].Line, path+".keep_edge", "only with kind: router (kind edge always keeps its edge)")
	}
	return t, nil
}

func (p *parser) clients(n *yaml.Node) (Clients, error) {
	c := Clients{Demand: DefaultDemand}
	if n == nil {
		return c, nil
	}
	const path = "clients"
	fs, err := p.Fields(path, n, "demand", "regions")
	if err != nil {
		return c, err
	}
	if err := opt(fs, "demand", path, &c.Demand, p.Str); err != nil {
		return c, err
	}
	if c.Demand == "" {
		return c, p.Errorf(fs["demand"].Line, path+".demand", "empty: want the path of a demand CSV")
	}
	rn, ok := fs["regions"]
	if !ok {
		return c, nil
	}
	rfs, err := p.Fields(path+".regions", rn)
	if err != nil {
		return c, err
	}
	c.Regions = make(map[string]float64, len(rfs))
	total := 0.0
	for i := 0; i+1 < len(rn.Content); i += 2 {
		region := rn.Content[i].Value
		rp := yamlx.Join(path+".regions", region)
		if !validID.MatchString(region) {
			return c, p.Errorf(rn.Content[i].Line, rp, "not a region name: want 1 to 63 letters, digits, '.', '_' or '-'")
		}
		w, err := p.weight(rp, rfs[region])
		if err != nil {
			return c, err
		}
		c.Regions[region] = w
		total += w
	}
	if !(total > 0) {
		return c, p.Errorf(rn.Line, path+".regions", "no region has a weight above 0: there would be no clients")
	}
	return c, nil
}

func (p *parser) objects(n *yaml.Node, name string) (Objects, error) {
	o := Objects{
		Count:        DefaultObjects,
		Prefix:       "loadtest/" + name + "/",
		Zipf:         DefaultZipf,
		Sizes:        SizeDist{Kind: SizeFixed, Fixed: DefaultSize},
		Consistency:  DefaultConsistency,
		Preload:      true,
		CacheControl: DefaultCacheControl,
	}
	if n == nil {
		return o, nil
	}
	const path = "objects"
	fs, err := p.Fields(path, n, "count", "prefix", "zipf", "sizes", "consistency", "preload", "cache_control")
	if err != nil {
		return o, err
	}
	if err := cmp.Or(
		opt(fs, "count", path, &o.Count, p.positiveInt),
		opt(fs, "prefix", path, &o.Prefix, p.prefix),
		opt(fs, "zipf", path, &o.Zipf, p.Num),
		opt(fs, "sizes", path, &o.Sizes, p.sizes),
		opt(fs, "consistency", path, &o.Consistency, p.consistency),
		opt(fs, "preload", path, &o.Preload, p.Bool),
		opt(fs, "cache_control", path, &o.CacheControl, p.Str),
	); err != nil {
		return o, err
	}
	if o.Count > maxObjects {
		return o, p.Errorf(fs["count"].Line, path+".count", "%d objects: at most %d", o.Count, maxObjects)
	}
	if o.Zipf < 0 {
		return o, p.Errorf(fs["zipf"].Line, path+".zipf", "want an exponent of at least 0 (0 is uniform), got %v", o.Zipf)
	}
	return o, nil
}

// sizes reads a size distribution: a size (fixed), or a mapping with one
// of fixed, lognormal or weighted.
func (p *parser) sizes(path string, n *yaml.Node) (SizeDist, error) {
	if n.Kind == yaml.ScalarNode {
		v, err := p.Bytes(path, n)
		return SizeDist{Kind: SizeFixed, Fixed: v}, err
	}
	fs, err := p.Fields(path, n, "fixed", "lognormal", "weighted")
	if err != nil {
		return SizeDist{}, err
	}
	if len(fs) != 1 {
		return SizeDist{}, p.Errorf(n.Line, path, "want one of fixed, lognormal or weighted")
	}
	switch {
	case fs["fixed"] != nil:
		v, err := p.Bytes(path+".fixed", fs["fixed"])
		return SizeDist{Kind: SizeFixed, Fixed: v}, err
	case fs["lognormal"] != nil:
		return p.lognormal(path+".lognormal", fs["lognormal"])
	}
	return p.weighted(path+".weighted", fs["weighted"])
}

func (p *parser) lognormal(path string, n *yaml.Node) (SizeDist, error) {
	d := SizeDist{Kind: SizeLognormal, Min: DefaultLognormalMin, Max: DefaultLognormalMax}
	fs, err := p.Fields(path, n, "median", "sigma", "min", "max")
	if err != nil {
		return d, err
	}
	if fs["median"] == nil {
		return d, p.Errorf(n.Line, path+".median", "missing (the median size, e.g. 16KiB)")
	}
	if fs["sigma"] == nil {
		return d, p.Errorf(n.Line, path+".sigma", "missing (the standard deviation of ln(size), e.g. 1.2)")
	}
	if err := cmp.Or(
		opt(fs, "median", path, &d.Median, p.Bytes),
		opt(fs, "sigma", path, &d.Sigma, p.Num),
		opt(fs, "min", path, &d.Min, p.Bytes),
		opt(fs, "max", path, &d.Max, p.Bytes),
	); err != nil {
		return d, err
	}
	line := func(f string) int {
		if fn := fs[f]; fn != nil {
			return fn.Line
		}
		return n.Line
	}
	switch {
	case d.Median == 0:
		return d, p.Errorf(line("median"), path+".median", "want a size above 0")
	case d.Sigma < 0:
		return d, p.Errorf(line("sigma"), path+".sigma", "want a spread of at least 0, got %v", d.Sigma)
	case d.Min > d.Max:
		return d, p.Errorf(line("min"), path+".min", "%s is above max (%s)", sizeString(d.Min), sizeString(d.Max))
	case d.Median < d.Min || d.Median > d.Max:
		return d, p.Errorf(line("median"), path+".median", "%s is outside [min, max] = [%s, %s]",
			sizeString(d.Median), sizeString(d.Min), sizeString(d.Max))
	}
	return d, nil
}

func (p *parser) weighted(path string, n *yaml.Node) (SizeDist, error) {
	d := SizeDist{Kind: SizeWeighted}
	items, err := p.Seq(path, n)
	if err != nil {
		return d, err
	}
	if len(items) == 0 {
		return d, p.Errorf(n.Line, path, "empty: want a list of {size, weight}")
	}
	total := 0.0
	for i, it := range items {
		ip := yamlx.Index(path, i)
		fs, err := p.Fields(ip, it, "size", "weight")
		if err != nil {
			return d, err
		}
		for _, f := range []string{"size", "weight"} {
			if fs[f] == nil {
				return d, p.Errorf(it.Line, ip+"."+f, "missing")
			}
		}
		var size int64
		var w float64
		if err := cmp.Or(
			opt(fs, "size", ip, &size, p.Bytes),
			opt(fs, "weight", ip, &w, p.weight),
		); err != nil {
			return d, err
		}
		d.Sizes = append(d.Sizes, size)
		d.Weights = append(d.Weights, w)
		total += w
	}
	if !(total > 0) {
		return d, p.Errorf(n.Line, path, "every weight is 0")
	}
	if math.IsInf(total, 0) {
		return d, p.Errorf(n.Line, path, "the weights add up to more than a float64 holds")
	}
	return d, nil
}

func (p *parser) arrivals(n *yaml.Node) (Arrivals, error) {
	a := Arrivals{Mode: Open, MaxInFlight: DefaultMaxInFlight}
	const path = "arrivals"
	fs, err := p.Fields(path, n, "mode", "phases", "concurrency", "max_in_flight")
	if err != nil {
		return a, err
	}
	var mode string
	if err := cmp.Or(
		opt(fs, "mode", path, &mode, p.Str),
		opt(fs, "concurrency", path, &a.Concurrency, p.positiveInt),
		opt(fs, "max_in_flight", path, &a.MaxInFlight, p.positiveInt),
	); err != nil {
		return a, err
	}
	switch ArrivalMode(mode) {
	case "", Open:
		if cn := fs["concurrency"]; cn != nil {
			return a, p.Errorf(cn.Line, path+".concurrency", "only with mode: closed (an open loop's phases set the rate)")
		}
		pn := fs["phases"]
		if pn == nil {
			return a, p.Errorf(n.Line, path+".phases", "missing: an open loop needs at least one phase ({rate: 200, for: 30s})")
		}
		if a.Phases, err = p.phases(path+".phases", pn); err != nil {
			return a, err
		}
	case Closed:
		a.Mode = Closed
		switch {
		case fs["phases"] != nil:
			return a, p.Errorf(fs["phases"].Line, path+".phases", "only with mode: open (a closed loop runs concurrency clients for the scenario's duration)")
		case fs["max_in_flight"] != nil:
			return a, p.Errorf(fs["max_in_flight"].Line, path+".max_in_flight", "only with mode: open (a closed loop has concurrency requests in flight)")
		case fs["concurrency"] == nil:
			return a, p.Errorf(n.Line, path+".concurrency", "missing: a closed loop needs its number of clients")
		case a.Concurrency > maxConcurrency:
			return a, p.Errorf(fs["concurrency"].Line, path+".concurrency", "%d clients: at most %d", a.Concurrency, maxConcurrency)
		}
	default:
		return a, p.Errorf(fs["mode"].Line, path+".mode", "unknown mode %q (want open or closed)", mode)
	}
	return a, nil
}

func (p *parser) phases(path string, n *yaml.Node) ([]Phase, error) {
	items, err := p.Seq(path, n)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, p.Errorf(n.Line, path, "empty: an open loop needs at least one phase ({rate: 200, for: 30s})")
	}
	var out []Phase
	var total time.Duration
	for i, it := range items {
		ip := yamlx.Index(path, i)
		fs, err := p.Fields(ip, it, "rate", "ramp", "from", "to", "for")
		if err != nil {
			return nil, err
		}
		ph := Phase{Line: it.Line}
		forms := 0
		for _, f := range []string{"rate", "ramp", "from"} {
			if fs[f] != nil {
				forms++
				if forms > 1 {
					return nil, p.Errorf(fs[f].Line, ip+"."+f, "give one of rate, ramp, or from and to")
				}
			}
		}
		switch {
		case forms == 0 && fs["to"] != nil:
			return nil, p.Errorf(it.Line, ip+".from", "missing: a ramp needs from and to")
		case forms == 0:
			return nil, p.Errorf(it.Line, ip, "give rate (constant), ramp (200..1000), or from and to")
		case fs["from"] != nil && fs["to"] == nil:
			return nil, p.Errorf(it.Line, ip+".to", "missing: a ramp needs from and to")
		case fs["from"] == nil && fs["to"] != nil:
			return nil, p.Errorf(fs["to"].Line, ip+".to", "only with from (a ramp from one rate to another)")
		}
		if fs["for"] == nil {
			return nil, p.Errorf(it.Line, ip+".for", "missing: how long the phase lasts, e.g. 30s")
		}
		if err := cmp.Or(
			opt(fs, "rate", ip, &ph.From, p.rate),
			opt(fs, "ramp", ip, &ph, p.ramp),
			opt(fs, "from", ip, &ph.From, p.rate),
			opt(fs, "to", ip, &ph.To, p.rate),
			opt(fs, "for", ip, &ph.Duration, p.positiveDuration),
		); err != nil {
			return nil, err
		}
		if fs["rate"] != nil {
			ph.To = ph.From
		}
		ph.Line = it.Line
		if total += ph.Duration; total > maxRun {
			return nil, p.Errorf(fs["for"].Line, ip+".for", "the phases last more than %s", maxRun)
		}
		out = append(out, ph)
	}
	return out, nil
}

// maxRun bounds a run's length, so that offsets and counts stay far
// from overflowing.
const maxRun = 7 * 24 * time.Hour

// ramp reads "A..B": a rate going linearly from A to B.
func (p *parser) ramp(path string, n *yaml.Node) (Phase, error) {
	if n.Kind == yaml.ScalarNode {
		a, b, ok := strings.Cut(n.Value, "..")
		from, okA := parseRate(a)
		to, okB := parseRate(b)
		if ok && okA && okB {
			switch {
			case from < 0 || to < 0:
				return Phase{}, p.Errorf(n.Line, path, "negative rate in %q", n.Value)
			case from > maxRate || to > maxRate:
				return Phase{}, p.Errorf(n.Line, path, "%q goes above the %d/s a load generator can send", n.Value, maxRate)
			}
			return Phase{From: from, To: to}, nil
		}
	}
	return Phase{}, p.Errorf(n.Line, path, "want a ramp like 200..1000 (requests per second), got %s", yamlx.Describe(n))
}

// duration works out the run's length from the duration field (d, 0 if
// absent) and the arrivals.
func (p *parser) duration(n *yaml.Node, d time.Duration, an *yaml.Node, a Arrivals) (time.Duration, error) {
	if a.Mode == Closed {
		if n == nil {
			return 0, p.Errorf(an.Line, "duration", "missing: a closed loop (arrivals.mode: closed) runs for the scenario's duration")
		}
		if d > maxRun {
			return 0, p.Errorf(n.Line, "duration", "%s is longer than %s", d, maxRun)
		}
		return d, nil
	}
	var phases time.Duration
	for _, ph := range a.Phases {
		phases += ph.Duration
	}
	if n == nil {
		return phases, nil
	}
	if d > phases {
		return 0, p.Errorf(n.Line, "duration", "%s is longer than the phases (%s): reads stop after the last one; add a phase with rate: 0 to run on without reads", d, phases)
	}
	return d, nil
}

func (p *parser) mix(n *yaml.Node) (Mix, error) {
	if n == nil {
		return Mix{Get: 1}, nil
	}
	const path = "mix"
	fs, err := p.Fields(path, n, "get", "head", "conditional", "range")
	if err != nil {
		return Mix{}, err
	}
	var m Mix
	if err := cmp.Or(
		opt(fs, "get", path, &m.Get, p.weight),
		opt(fs, "head", path, &m.Head, p.weight),
		opt(fs, "conditional", path, &m.Conditional, p.weight),
		opt(fs, "range", path, &m.Range, p.weight),
	); err != nil {
		return Mix{}, err
	}
	if sum := m.Get + m.Head + m.Conditional + m.Range; !(sum > 0) || math.IsInf(sum, 0) {
		return Mix{}, p.Errorf(n.Line, path, "want at least one weight above 0 (and a finite sum)")
	}
	return m, nil
}

// within checks that what starts at at and lasts d (0: an instant) ends
// by the end of the run.
func (p *parser) within(s *Scenario, atNode *yaml.Node, atPath string, at time.Duration, forNode *yaml.Node, forPath string, d time.Duration) error {
	if at >= s.Duration {
		return p.Errorf(atNode.Line, atPath, "%s is not before the end of the run (%s)", at, s.Duration)
	}
	if at+d > s.Duration {
		return p.Errorf(forNode.Line, forPath, "ends at %s, after the end of the run (%s)", at+d, s.Duration)
	}
	return nil
}

func (p *parser) writes(n *yaml.Node, s *Scenario) ([]Write, error) {
	const path = "writes"
	items, err := p.Seq(path, n)
	if err != nil {
		return nil, err
	}
	var out []Write
	for i, it := range items {
		ip := yamlx.Index(path, i)
		fs, err := p.Fields(ip, it, "op", "rate", "at", "for", "w", "consistency", "by", "soft", "wait")
		if err != nil {
			return nil, err
		}
		w := Write{Line: it.Line}
		for _, f := range []string{"op", "rate"} {
			if fs[f] == nil {
				return nil, p.Errorf(it.Line, ip+"."+f, "missing")
			}
		}
		var op, by string
		if err := cmp.Or(
			opt(fs, "op", ip, &op, p.Str),
			opt(fs, "rate", ip, &w.Rate, p.positiveRate),
			opt(fs, "at", ip, &w.At, p.Duration),
			opt(fs, "for", ip, &w.For, p.positiveDuration),
			opt(fs, "w", ip, &w.W, p.w),
			opt(fs, "consistency", ip, &w.Consistency, p.consistency),
			opt(fs, "by", ip, &by, p.Str),
			opt(fs, "soft", ip, &w.Soft, p.Bool),
			opt(fs, "wait", ip, &w.Wait, p.Bool),
		); err != nil {
			return nil, err
		}
		w.Op = WriteOp(op)
		var only []string
		switch w.Op {
		case OpPublish:
			if w.Consistency == "" {
				w.Consistency = s.Objects.Consistency
			}
			only = []string{"by", "soft", "wait"}
		case OpPurge:
			if w.By, err = p.purgeBy(fs["by"], ip+".by", by, PurgeKey); err != nil {
				return nil, err
			}
			only = []string{"w", "consistency"}
		default:
			return nil, p.Errorf(fs["op"].Line, ip+".op", "unknown op %q (want publish or purge)", op)
		}
		for _, f := range only {
			if fs[f] != nil {
				return nil, p.Errorf(fs[f].Line, ip+"."+f, "not for op: %s", w.Op)
			}
		}
		if err := p.within(s, cmp.Or(fs["at"], it), ip+".at", w.At, fs["for"], ip+".for", w.For); err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// purgeBy checks a purge's selector kind; n is nil when it was not
// given, and def is then the answer (or "" when it is required).
func (p *parser) purgeBy(n *yaml.Node, path, by string, def PurgeBy) (PurgeBy, error) {
	switch PurgeBy(by) {
	case PurgeKey, PurgePrefix, PurgeTag:
		return PurgeBy(by), nil
	}
	if n == nil {
		return def, nil
	}
	return "", p.Errorf(n.Line, path, "unknown selector %q (want key, prefix or tag)", by)
}

var eventKinds = []EventKind{EventPublish, EventRepublish, EventFocus, EventPurge, EventKill, EventPause, EventRestart}

func (p *parser) events(n *yaml.Node, s *Scenario) ([]Event, error) {
	const path = "events"
	items, err := p.Seq(path, n)
	if err != nil {
		return nil, err
	}
	allowed := []string{"at"}
	for _, k := range eventKinds {
		allowed = append(allowed, string(k))
	}
	var out []Event
	// published maps the keys publish events create to the time they
	// do, so a flash crowd can be checked to read something that exists.
	published := map[string]time.Duration{}
	for i, it := range items {
		ip := yamlx.Index(path, i)
		fs, err := p.Fields(ip, it, allowed...)
		if err != nil {
			return nil, err
		}
		e := Event{Line: it.Line}
		for _, k := range eventKinds {
			if fs[string(k)] == nil {
				continue
			}
			if e.Kind != "" {
				return nil, p.Errorf(fs[string(k)].Line, ip+"."+string(k), "one event per item (this one is already %s)", e.Kind)
			}
			e.Kind = k
		}
		if e.Kind == "" {
			return nil, p.Errorf(it.Line, ip, "want one of publish, republish, focus, purge, kill, pause or restart")
		}
		if fs["at"] == nil {
			return nil, p.Errorf(it.Line, ip+".at", "missing: when, from the start of the run, e.g. 30s")
		}
		if e.At, err = p.Duration(ip+".at", fs["at"]); err != nil {
			return nil, err
		}
		if err := p.within(s, fs["at"], ip+".at", e.At, nil, "", 0); err != nil {
			return nil, err
		}
		body := fs[string(e.Kind)]
		bp := ip + "." + string(e.Kind)
		switch e.Kind {
		case EventPublish:
			err = p.publishEvent(bp, body, &e, s)
			if err == nil {
				if _, ok := published[e.Key]; !ok {
					published[e.Key] = e.At
				}
			}
		case EventRepublish:
			err = p.republishEvent(bp, body, &e, s)
		case EventFocus:
			err = p.focusEvent(bp, body, &e, s, published)
		case EventPurge:
			err = p.purgeEvent(bp, body, &e)
		case EventKill, EventRestart:
			err = p.edgeEvent(bp, body, &e, false)
		case EventPause:
			err = p.edgeEvent(bp, body, &e, true)
			if err == nil {
				err = p.within(s, fs["at"], ip+".at", e.At, body, bp+".for", e.For)
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out, nil
}

// required reports the first of names missing from fs.
func (p *parser) required(fs map[string]*yaml.Node, n *yaml.Node, path string, names ...string) error {
	for _, f := range names {
		if fs[f] == nil {
			return p.Errorf(n.Line, path+"."+f, "missing")
		}
	}
	return nil
}

func (p *parser) publishEvent(path string, n *yaml.Node, e *Event, s *Scenario) error {
	fs, err := p.Fields(path, n, "key", "size", "consistency", "w")
	if err != nil {
		return err
	}
	e.Consistency = s.Objects.Consistency
	return cmp.Or(
		p.required(fs, n, path, "key", "size"),
		opt(fs, "key", path, &e.Key, p.key),
		opt(fs, "size", path, &e.Size, p.Bytes),
		opt(fs, "consistency", path, &e.Consistency, p.consistency),
		opt(fs, "w", path, &e.W, p.w),
	)
}

func (p *parser) republishEvent(path string, n *yaml.Node, e *Event, s *Scenario) error {
	fs, err := p.Fields(path, n, "count", "rate", "consistency", "w")
	if err != nil {
		return err
	}
	e.Count = s.Objects.Count
	e.Consistency = s.Objects.Consistency
	if err := cmp.Or(
		p.required(fs, n, path, "rate"),
		opt(fs, "count", path, &e.Count, p.positiveInt),
		opt(fs, "rate", path, &e.Rate, p.positiveRate),
		opt(fs, "consistency", path, &e.Consistency, p.consistency),
		opt(fs, "w", path, &e.W, p.w),
	); err != nil {
		return err
	}
	if e.Count > s.Objects.Count {
		return p.Errorf(fs["count"].Line, path+".count", "%d is more than the run's %d objects", e.Count, s.Objects.Count)
	}
	// The last publish starts at At + (Count-1)/Rate.
	took := time.Duration(float64(e.Count-1) / e.Rate * float64(time.Second))
	if e.At+took >= s.Duration {
		return p.Errorf(fs["rate"].Line, path+".rate", "%d publishes at %s would run until %s, past the end of the run (%s)",
			e.Count, formatRate(e.Rate), (e.At + took).Round(time.Millisecond), s.Duration)
	}
	return nil
}

func (p *parser) focusEvent(path string, n *yaml.Node, e *Event, s *Scenario, published map[string]time.Duration) error {
	fs, err := p.Fields(path, n, "key", "share", "multiplier", "for")
	if err != nil {
		return err
	}
	e.Multiplier = 1
	if err := cmp.Or(
		p.required(fs, n, path, "key", "share", "for"),
		opt(fs, "key", path, &e.Key, p.key),
		opt(fs, "share", path, &e.Share, p.Num),
		opt(fs, "multiplier", path, &e.Multiplier, p.Num),
		opt(fs, "for", path, &e.For, p.positiveDuration),
	); err != nil {
		return err
	}
	switch {
	case !(e.Share > 0 && e.Share <= 1):
		return p.Errorf(fs["share"].Line, path+".share", "want a share of the reads in (0, 1], got %v", e.Share)
	case !(e.Multiplier > 0) || e.Multiplier > 1000:
		return p.Errorf(fs["multiplier"].Line, path+".multiplier", "want a factor in (0, 1000], got %v", e.Multiplier)
	}
	if at, ok := published[e.Key]; !(ok && at <= e.At) && !s.Objects.isKey(e.Key) {
		return p.Errorf(fs["key"].Line, path+".key", "%q is neither one of the run's objects (%s0 … %s%d) nor published by an earlier event",
			e.Key, s.Objects.Prefix, s.Objects.Prefix, s.Objects.Count-1)
	}
	return p.within(s, n, path, e.At, fs["for"], path+".for", e.For)
}

// isKey reports whether key is one of the run's generated keys.
func (o Objects) isKey(key string) bool {
	rest, ok := strings.CutPrefix(key, o.Prefix)
	if !ok || rest == "" || len(rest) > 1 && rest[0] == '0' {
		return false
	}
	i, err := strconv.Atoi(rest)
	return err == nil && i >= 0 && i < o.Count
}

func (p *parser) purgeEvent(path string, n *yaml.Node, e *Event) error {
	fs, err := p.Fields(path, n, "by", "value", "soft")
	if err != nil {
		return err
	}
	var by string
	if err := cmp.Or(
		p.required(fs, n, path, "by", "value"),
		opt(fs, "by", path, &by, p.Str),
		opt(fs, "soft", path, &e.Soft, p.Bool),
	); err != nil {
		return err
	}
	if e.By, err = p.purgeBy(fs["by"], path+".by", by, ""); err != nil {
		return err
	}
	vp := path + ".value"
	switch e.By {
	case PurgeKey:
		e.Value, err = p.key(vp, fs["value"])
	case PurgePrefix:
		e.Value, err = p.prefix(vp, fs["value"])
	case PurgeTag:
		e.Value, err = p.Str(vp, fs["value"])
		if err == nil && (e.Value == "" || strings.ContainsAny(e.Value, " \t\r\n,")) {
			err = p.Errorf(fs["value"].Line, vp, "want one tag (no spaces or commas), got %q", e.Value)
		}
	}
	return err
}

// edgeEvent reads the body of a kill, pause or restart: the edge's id,
// alone or as {edge: id}, and for a pause {edge: id, for: duration}.
func (p *parser) edgeEvent(path string, n *yaml.Node, e *Event, pause bool) error {
	if n.Kind == yaml.ScalarNode && !pause {
		if n.Tag == "!!null" || n.Value == "" {
			return p.Errorf(n.Line, path, "missing edge: want an edge id (%s: lhr)", e.Kind)
		}
		var err error
		e.Edge, err = p.id(path, n)
		return err
	}
	allowed := []string{"edge"}
	if pause {
		allowed = append(allowed, "for")
		if n.Kind != yaml.MappingNode {
			return p.Errorf(n.Line, path, "want {edge: <id>, for: <duration>}, got %s", yamlx.Describe(n))
		}
	}
	fs, err := p.Fields(path, n, allowed...)
	if err != nil {
		return err
	}
	return cmp.Or(
		p.required(fs, n, path, allowed...),
		opt(fs, "edge", path, &e.Edge, p.id),
		opt(fs, "for", path, &e.For, p.positiveDuration),
	)
}
