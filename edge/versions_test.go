package edge

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/geocdn/geocdn/internal/wire"
)

// TestVersionTable checks the index's hash table against a map through
// random sets, adds and removes, small enough that runs collide and the
// table grows several times.
func TestVersionTable(t *testing.T) {
	var tab versionTable
	want := make(map[objKey]*version)
	rng := rand.New(rand.NewPCG(1, 2))
	nss := []*attrs{{ns: "default"}, {ns: "other"}}
	key := func() objKey { return objKey{nss[rng.IntN(2)].ns, fmt.Sprint(rng.IntN(3000))} }
	mk := func(k objKey) *version {
		a := nss[0]
		if k.ns != a.ns {
			a = nss[1]
		}
		return &version{key: k.key, attrs: a, lsn: rng.Uint64()}
	}
	check := func(step int) {
		t.Helper()
		if got := tab.len(); got != len(want) {
			t.Fatalf("step %d: len = %d, want %d", step, got, len(want))
		}
		n := 0
		for v := range tab.all() {
			n++
			if want[objKey{v.attrs.ns, v.key}] != v {
				t.Fatalf("step %d: all yields %s/%s, not the version set", step, v.attrs.ns, v.key)
			}
		}
		if n != len(want) {
			t.Fatalf("step %d: all yields %d versions, want %d", step, n, len(want))
		}
		for k, v := range want {
			if got := tab.get(k.ns, k.key); got != v {
				t.Fatalf("step %d: get(%s/%s) = %p, want %p", step, k.ns, k.key, got, v)
			}
		}
	}
	if tab.get("default", "x") != nil {
		t.Fatal("zero table: get found a version")
	}
	tab.remove("default", "x") // must not panic
	for step := range 20000 {
		k := key()
		switch r := rng.IntN(10); {
		case r < 5:
			v := mk(k)
			tab.set(v)
			want[k] = v
		case r < 6:
			if _, ok := want[k]; !ok {
				v := mk(k)
				tab.add(v)
				want[k] = v
			}
		default:
			tab.remove(k.ns, k.key)
			delete(want, k)
		}
		if got, w := tab.get(k.ns, k.key), want[k]; got != w {
			t.Fatalf("step %d: get(%s/%s) = %p, want %p", step, k.ns, k.key, got, w)
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	check(-1)
}

// TestVersionLogEntry checks that a version rebuilds the entry it was
// made from, and that attrs are shared between entries alike.
func TestVersionLogEntry(t *testing.T) {
	s := &store{}
	e := putEntry(7, "k", []byte("body"))
	e.SurrogateKeys = []string{"a", "b"}
	e.Replicas = []string{"e1"}
	e.Consistency, e.Bound = wire.Bounded, 5e9
	v := s.newVersion(&e)
	got := v.logEntry()
	if !reflect.DeepEqual(got, e) {
		t.Errorf("logEntry = %+v, want %+v", got, e)
	}
	e2 := e
	e2.Key, e2.LSN = "k2", 8
	e2.SurrogateKeys = []string{"a", "b"}
	if v2 := s.newVersion(&e2); v2.attrs != v.attrs {
		t.Error("equal attributes not shared")
	}
	e3 := e2
	e3.SurrogateKeys = []string{"ab"}
	if v3 := s.newVersion(&e3); v3.attrs == v.attrs {
		t.Error("different surrogate keys share attributes")
	}
	var none wire.LogEntry
	none.Key, none.Namespace = "z", "default"
	if got := s.newVersion(&none).logEntry(); !got.ModTime.IsZero() {
		t.Errorf("no ModTime rebuilt as %v", got.ModTime)
	}
}
