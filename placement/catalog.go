package placement

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/yamlx"
)

// ParseCatalog reads a catalog in the YAML format described in the package
// documentation. name labels errors, which are *InputError.
func ParseCatalog(name string, r io.Reader) (*Catalog, error) {
	f := yamlFile{yamlx.Doc{Name: name}}
	root, err := f.Parse(r)
	if err != nil {
		return nil, err
	}
	top, err := f.Fields("", root, "version", "classes", "objects")
	if err != nil {
		return nil, err
	}
	if err := f.version(top, root); err != nil {
		return nil, err
	}
	cat := &Catalog{}
	cn, ok := top["classes"]
	if !ok {
		return nil, f.Errorf(root.Line, "classes", "missing: a catalog needs at least one class (prefixes: [\"\"] covers every key)")
	}
	items, err := f.Seq("classes", cn)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, f.Errorf(cn.Line, "classes", "empty: a catalog needs at least one class")
	}
	names := map[string]int{}
	type nsPrefix struct{ ns, prefix string }
	prefixes := map[nsPrefix]string{}
	for i, it := range items {
		path := fmt.Sprintf("classes[%d]", i)
		fs, err := f.Fields(path, it, "name", "namespace", "prefixes", "affinity", "replicas", "bytes", "rate")
		if err != nil {
			return nil, err
		}
		c := Class{src: source{name, it.Line}}
		if c.Name, err = f.reqID(path, "name", it, fs); err != nil {
			return nil, err
		}
		if prev, dup := names[c.Name]; dup {
			return nil, f.Errorf(fs["name"].Line, path+".name", "class %q already defined on line %d", c.Name, prev)
		}
		names[c.Name] = fs["name"].Line
		if n, ok := fs["namespace"]; ok {
			if c.Namespace, err = f.namespace(path+".namespace", n, true); err != nil {
				return nil, err
			}
		}
		pn, ok := fs["prefixes"]
		if !ok {
			return nil, f.Errorf(it.Line, path+".prefixes", "missing (a list of key prefixes; [\"\"] covers every key)")
		}
		ps, err := f.Seq(path+".prefixes", pn)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			return nil, f.Errorf(pn.Line, path+".prefixes", "empty: the class would cover no key")
		}
		for j, p := range ps {
			pp := fmt.Sprintf("%s.prefixes[%d]", path, j)
			s, err := f.Str(pp, p)
			if err != nil {
				return nil, err
			}
			if err := validPrefix(s); err != nil {
				return nil, f.Wrap(p.Line, pp, err)
			}
			if other, dup := prefixes[nsPrefix{c.Namespace, s}]; dup {
				return nil, f.Errorf(p.Line, pp, "prefix %q already belongs to class %q", s, other)
			}
			prefixes[nsPrefix{c.Namespace, s}] = c.Name
			c.Prefixes = append(c.Prefixes, s)
		}
		if n, ok := fs["affinity"]; ok {
			if c.Affinity, err = f.affinity(path+".affinity", n); err != nil {
				return nil, err
			}
		}
		if n, ok := fs["replicas"]; ok {
			if c.Replicas, err = f.replicas(path+".replicas", n); err != nil {
				return nil, err
			}
		}
		if n, ok := fs["bytes"]; ok {
			if c.Bytes, err = f.Bytes(path+".bytes", n); err != nil {
				return nil, err
			}
		}
		if n, ok := fs["rate"]; ok {
			if c.Rate, err = f.rate(path+".rate", n); err != nil {
				return nil, err
			}
		}
		cat.Classes = append(cat.Classes, c)
	}
	match := newClassMatcher(cat.Classes)
	if on, ok := top["objects"]; ok {
		items, err := f.Seq("objects", on)
		if err != nil {
			return nil, err
		}
		type nsKey struct{ ns, key string }
		keys := make(map[nsKey]int, len(items))
		cat.Objects = make([]Object, 0, len(items))
		for i, it := range items {
			path := fmt.Sprintf("objects[%d]", i)
			fs, err := f.Fields(path, it, "namespace", "key", "size", "rate", "affinity", "replicas")
			if err != nil {
				return nil, err
			}
			o := Object{Namespace: objkey.DefaultNamespace, src: source{name, it.Line}}
			if n, ok := fs["namespace"]; ok {
				if o.Namespace, err = f.namespace(path+".namespace", n, false); err != nil {
					return nil, err
				}
			}
			kn, ok := fs["key"]
			if !ok {
				return nil, f.Errorf(it.Line, path+".key", "missing")
			}
			if o.Key, err = f.Str(path+".key", kn); err != nil {
				return nil, err
			}
			if err := objkey.Validate(o.Key); err != nil {
				return nil, f.Wrap(kn.Line, path+".key", err)
			}
			if prev, dup := keys[nsKey{o.Namespace, o.Key}]; dup {
				return nil, f.Errorf(kn.Line, path+".key", "%s:%s already listed on line %d", o.Namespace, o.Key, prev)
			}
			keys[nsKey{o.Namespace, o.Key}] = kn.Line
			if match.match(o.Namespace, o.Key) < 0 {
				return nil, f.Errorf(kn.Line, path+".key", "%q matches no class's prefixes (a class with prefixes: [\"\"] catches every key)", o.Key)
			}
			sn, ok := fs["size"]
			if !ok {
				return nil, f.Errorf(it.Line, path+".size", "missing")
			}
			if o.Size, err = f.Bytes(path+".size", sn); err != nil {
				return nil, err
			}
			if n, ok := fs["rate"]; ok {
				if o.Rate, err = f.rate(path+".rate", n); err != nil {
					return nil, err
				}
			}
			if n, ok := fs["affinity"]; ok {
				if o.Affinity, err = f.affinity(path+".affinity", n); err != nil {
					return nil, err
				}
			}
			if n, ok := fs["replicas"]; ok {
				if o.Replicas, err = f.replicas(path+".replicas", n); err != nil {
					return nil, err
				}
			}
			cat.Objects = append(cat.Objects, o)
		}
	}
	return cat, nil
}

func (f yamlFile) namespace(path string, n *yaml.Node, allowEmpty bool) (string, error) {
	s, err := f.Str(path, n)
	if err != nil {
		return "", err
	}
	if s == "" && allowEmpty {
		return "", nil
	}
	if err := objkey.ValidNamespace(s); err != nil {
		return "", f.Wrap(n.Line, path, err)
	}
	return s, nil
}

func (f yamlFile) replicas(path string, n *yaml.Node) (int, error) {
	v, err := f.Int(path, n)
	if err != nil {
		return 0, err
	}
	if v < 0 || v > 64 {
		return 0, f.Errorf(n.Line, path, "want 0 (from the rate) to 64, got %d", v)
	}
	return v, nil
}

func (f yamlFile) rate(path string, n *yaml.Node) (float64, error) {
	v, err := f.Num(path, n)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, f.Errorf(n.Line, path, "negative request rate %v", v)
	}
	return v, nil
}

// validPrefix accepts "" and any string that can begin a valid key: the
// prefix followed by one more byte must be a key objkey accepts, so a
// prefix with a leading slash or a ".." segment, which no key can start
// with, is refused rather than silently matching nothing.
func validPrefix(p string) error {
	if p == "" {
		return nil
	}
	return objkey.Validate(p + "x")
}

// classMatcher finds the class of a key: the class with the longest prefix
// of the key, among those of the key's namespace or of every namespace;
// at equal length, the class of the key's own namespace. One rule for the
// catalog and for Plan.ReplicasFor, so an object is placed with the class
// the origin will look it up under.
type classMatcher struct {
	entries []matchEntry // longest prefix first, namespaced before ""
}

type matchEntry struct {
	ns, prefix string
	class      int
}

// newClassMatcher indexes classes by their prefixes.
func newClassMatcher(classes []Class) classMatcher {
	var m classMatcher
	for i, c := range classes {
		for _, p := range c.Prefixes {
			m.entries = append(m.entries, matchEntry{c.Namespace, p, i})
		}
	}
	m.sort()
	return m
}

func (m *classMatcher) sort() {
	slices.SortStableFunc(m.entries, func(a, b matchEntry) int {
		if len(a.prefix) != len(b.prefix) {
			return len(b.prefix) - len(a.prefix)
		}
		if (a.ns == "") != (b.ns == "") {
			if a.ns == "" {
				return 1
			}
			return -1
		}
		return 0
	})
}

// match returns the index of the key's class, or -1.
func (m classMatcher) match(ns, key string) int {
	for _, e := range m.entries {
		if (e.ns == "" || e.ns == ns) && strings.HasPrefix(key, e.prefix) {
			return e.class
		}
	}
	return -1
}

// WriteCatalog writes cat in the format ParseCatalog reads, one object per
// line; header, when not empty, becomes comment lines at the top.
func WriteCatalog(w io.Writer, cat *Catalog, header string) error {
	bw := bufio.NewWriter(w)
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		if l != "" || header != "" {
			fmt.Fprintf(bw, "# %s\n", l)
		}
	}
	fmt.Fprintln(bw, "version: 1")
	fmt.Fprintln(bw, "classes:")
	for _, c := range cat.Classes {
		fmt.Fprintf(bw, "  - name: %s\n", yamlx.Scalar(c.Name))
		if c.Namespace != "" {
			fmt.Fprintf(bw, "    namespace: %s\n", yamlx.Scalar(c.Namespace))
		}
		ps := make([]string, len(c.Prefixes))
		for i, p := range c.Prefixes {
			ps[i] = yamlx.Scalar(p)
			if p == "" {
				ps[i] = `""`
			}
		}
		fmt.Fprintf(bw, "    prefixes: [%s]\n", strings.Join(ps, ", "))
		if len(c.Affinity) > 0 {
			fmt.Fprintf(bw, "    affinity: %s\n", affinityYAML(c.Affinity))
		}
		if c.Replicas > 0 {
			fmt.Fprintf(bw, "    replicas: %d\n", c.Replicas)
		}
		if c.Bytes > 0 {
			fmt.Fprintf(bw, "    bytes: %s\n", FormatBytes(c.Bytes))
		}
		if c.Rate > 0 {
			fmt.Fprintf(bw, "    rate: %s\n", formatRate(c.Rate))
		}
	}
	if len(cat.Objects) > 0 {
		fmt.Fprintln(bw, "objects:")
	}
	for _, o := range cat.Objects {
		bw.WriteString("  - {")
		if o.Namespace != "" && o.Namespace != objkey.DefaultNamespace {
			fmt.Fprintf(bw, "namespace: %s, ", yamlx.Scalar(o.Namespace))
		}
		fmt.Fprintf(bw, "key: %s, size: %s, rate: %s", yamlx.Scalar(o.Key), FormatBytes(o.Size), formatRate(o.Rate))
		if len(o.Affinity) > 0 {
			fmt.Fprintf(bw, ", affinity: %s", affinityYAML(o.Affinity))
		}
		if o.Replicas > 0 {
			fmt.Fprintf(bw, ", replicas: %d", o.Replicas)
		}
		bw.WriteString("}\n")
	}
	return bw.Flush()
}

func affinityYAML(a Affinity) string {
	regions := make([]string, 0, len(a))
	for r := range a {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	parts := make([]string, len(regions))
	for i, r := range regions {
		parts[i] = yamlx.Scalar(r) + ": " + strconv.FormatFloat(a[r], 'g', -1, 64)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// formatRate writes a rate with enough digits to read back exactly.
func formatRate(r float64) string {
	if r == math.Trunc(r) && math.Abs(r) < 1e15 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}
