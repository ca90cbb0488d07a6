package placement

import (
	"fmt"
	"io"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/yamlx"
)

// validID is what an edge id, a class name or a region may be: it appears
// in certificates (geocdn://edge/<id>), URLs and tables.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ParseTopology reads a topology in the YAML format described in the
// package documentation. name labels errors, which are *InputError.
func ParseTopology(name string, r io.Reader) (*Topology, error) {
	f := yamlFile{yamlx.Doc{Name: name}}
	root, err := f.Parse(r)
	if err != nil {
		return nil, err
	}
	top, err := f.Fields("", root, "version", "regions", "rtt_ms", "edges")
	if err != nil {
		return nil, err
	}
	if err := f.version(top, root); err != nil {
		return nil, err
	}
	t := &Topology{}
	anchors := map[string]bool{}
	if n, ok := top["regions"]; ok {
		items, err := f.Seq("regions", n)
		if err != nil {
			return nil, err
		}
		t.Measured = &geo.Matrix{}
		for i, it := range items {
			path := fmt.Sprintf("regions[%d]", i)
			fs, err := f.Fields(path, it, "name", "lat", "lon")
			if err != nil {
				return nil, err
			}
			name, err := f.reqID(path, "name", it, fs)
			if err != nil {
				return nil, err
			}
			if anchors[name] {
				return nil, f.Errorf(fs["name"].Line, path+".name", "region %q given twice", name)
			}
			p, err := f.point(path, it, fs)
			if err != nil {
				return nil, err
			}
			anchors[name] = true
			t.Measured.SetAnchor(name, p)
		}
	}
	if n, ok := top["rtt_ms"]; ok {
		items, err := f.Seq("rtt_ms", n)
		if err != nil {
			return nil, err
		}
		if t.Measured == nil {
			return nil, f.Errorf(n.Line, "rtt_ms", "measured RTTs need regions: with the anchor of each region")
		}
		type dir struct{ a, b string }
		seen := map[dir]float64{}
		var order []dir
		for i, it := range items {
			path := fmt.Sprintf("rtt_ms[%d]", i)
			if it.Kind != yaml.SequenceNode || len(it.Content) != 3 {
				return nil, f.Errorf(it.Line, path, "want [from-region, to-region, milliseconds], got %s", yamlx.Describe(it))
			}
			a, err := f.Str(path+"[0]", it.Content[0])
			if err != nil {
				return nil, err
			}
			b, err := f.Str(path+"[1]", it.Content[1])
			if err != nil {
				return nil, err
			}
			ms, err := f.Num(path+"[2]", it.Content[2])
			if err != nil {
				return nil, err
			}
			for j, r := range []string{a, b} {
				if !anchors[r] {
					return nil, f.Errorf(it.Content[j].Line, fmt.Sprintf("%s[%d]", path, j), "region %q has no anchor under regions:", r)
				}
			}
			switch {
			case a == b:
				return nil, f.Errorf(it.Line, path, "a region's RTT to itself is not a measurement between regions")
			case ms <= 0 || ms > 10_000:
				return nil, f.Errorf(it.Content[2].Line, path+"[2]", "want milliseconds in (0, 10000], got %v", ms)
			}
			if _, dup := seen[dir{a, b}]; dup {
				return nil, f.Errorf(it.Line, path, "%s→%s given twice", a, b)
			}
			seen[dir{a, b}] = ms
			order = append(order, dir{a, b})
		}
		for _, d := range order {
			ms := seen[d]
			if back, ok := seen[dir{d.b, d.a}]; ok {
				ms = (ms + back) / 2 // both directions: the matrix is symmetric
			}
			t.Measured.Set(d.a, d.b, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	en, ok := top["edges"]
	if !ok {
		return nil, f.Errorf(root.Line, "edges", "missing: a topology needs at least one edge")
	}
	items, err := f.Seq("edges", en)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, f.Errorf(en.Line, "edges", "empty: a topology needs at least one edge")
	}
	ids := map[string]int{}
	// The first declaration of each fault domain, for refusing one spelled
	// like the id of an edge that declares none (see below).
	type declared struct {
		path string
		node *yaml.Node
	}
	domains := map[string]declared{}
	for i, it := range items {
		path := fmt.Sprintf("edges[%d]", i)
		fs, err := f.Fields(path, it, "id", "city", "region", "lat", "lon", "fault_domain", "capacity")
		if err != nil {
			return nil, err
		}
		var e Edge
		if e.ID, err = f.reqID(path, "id", it, fs); err != nil {
			return nil, err
		}
		if prev, dup := ids[e.ID]; dup {
			return nil, f.Errorf(fs["id"].Line, path+".id", "edge %q already defined on line %d", e.ID, prev)
		}
		ids[e.ID] = fs["id"].Line
		if e.Region, err = f.reqID(path, "region", it, fs); err != nil {
			return nil, err
		}
		p, err := f.point(path, it, fs)
		if err != nil {
			return nil, err
		}
		e.Lat, e.Lon = p.Lat, p.Lon
		// Without fault_domain the edge fails alone: FaultDomain stays
		// empty, which the optimiser keeps apart from every named domain.
		if n, ok := fs["fault_domain"]; ok {
			if e.FaultDomain, err = f.reqID(path, "fault_domain", it, fs); err != nil {
				return nil, err
			}
			if _, seen := domains[e.FaultDomain]; !seen {
				domains[e.FaultDomain] = declared{path + ".fault_domain", n}
			}
		}
		if n, ok := fs["capacity"]; ok {
			if e.CapacityBytes, err = f.Bytes(path+".capacity", n); err != nil {
				return nil, err
			}
		}
		if n, ok := fs["city"]; ok {
			if e.City, err = f.Str(path+".city", n); err != nil {
				return nil, err
			}
		}
		t.Edges = append(t.Edges, e)
	}
	// A domain named like an edge that declares none reads as "fails with
	// that edge", which it does not: that edge fails alone. Say so rather
	// than guess which was meant.
	for _, e := range t.Edges {
		if d, ok := domains[e.ID]; ok && e.FaultDomain == "" {
			return nil, f.Errorf(d.node.Line, d.path, "%q is also the id of edge %s (line %d), which has no fault_domain and so fails alone: to make the two fail together, give %s fault_domain: %s as well; otherwise give this domain another name",
				e.ID, e.ID, ids[e.ID], e.ID, e.ID)
		}
	}
	return t, nil
}

// version checks the version field: absent or 1.
func (f yamlFile) version(top map[string]*yaml.Node, root *yaml.Node) error {
	n, ok := top["version"]
	if !ok {
		return nil
	}
	v, err := f.Int("version", n)
	if err != nil {
		return err
	}
	if v != 1 {
		return f.Errorf(n.Line, "version", "version %d is not known (this build reads version 1)", v)
	}
	return nil
}

// reqID reads a required identifier field.
func (f yamlFile) reqID(path, field string, parent *yaml.Node, fs map[string]*yaml.Node) (string, error) {
	n, ok := fs[field]
	if !ok {
		return "", f.Errorf(parent.Line, yamlx.Join(path, field), "missing")
	}
	s, err := f.Str(yamlx.Join(path, field), n)
	if err != nil {
		return "", err
	}
	if !validID.MatchString(s) {
		return "", f.Errorf(n.Line, yamlx.Join(path, field), "%q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", s)
	}
	return s, nil
}

// point reads the required lat and lon fields.
func (f yamlFile) point(path string, parent *yaml.Node, fs map[string]*yaml.Node) (geo.Point, error) {
	var p geo.Point
	for _, c := range []struct {
		field string
		dst   *float64
		lim   float64
	}{{"lat", &p.Lat, 90}, {"lon", &p.Lon, 180}} {
		n, ok := fs[c.field]
		if !ok {
			return p, f.Errorf(parent.Line, yamlx.Join(path, c.field), "missing")
		}
		v, err := f.Num(yamlx.Join(path, c.field), n)
		if err != nil {
			return p, err
		}
		if v < -c.lim || v > c.lim {
			return p, f.Errorf(n.Line, yamlx.Join(path, c.field), "%v is outside [-%v, %v]", v, c.lim, c.lim)
		}
		*c.dst = v
	}
	return p, nil
}
