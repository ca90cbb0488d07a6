package edge

import (
	"math/rand/v2"
	"testing"

	"github.com/geocdn/geocdn/internal/wire"
)

// TestBlobTable checks the blob records' hash table against a map through
// random sets and deletes, small enough that runs collide and the table
// grows several times.
func TestBlobTable(t *testing.T) {
	var tab blobTable
	want := make(map[wire.Digest]*blob)
	rng := rand.New(rand.NewPCG(3, 4))
	digest := func() wire.Digest {
		var d wire.Digest
		n := rng.IntN(3000)
		d[0], d[1], d[31] = byte(n), byte(n>>8), byte(n%7)
		return d
	}
	check := func(step int) {
		t.Helper()
		if got := tab.len(); got != len(want) {
			t.Fatalf("step %d: len = %d, want %d", step, got, len(want))
		}
		n := 0
		for b := range tab.all() {
			n++
			if want[b.digest] != b {
				t.Fatalf("step %d: all yields %s, not the record set", step, shortHex(b.digest))
			}
		}
		if n != len(want) {
			t.Fatalf("step %d: all yields %d records, want %d", step, n, len(want))
		}
		for d, b := range want {
			if got := tab.get(d); got != b {
				t.Fatalf("step %d: get(%s) = %p, want %p", step, shortHex(d), got, b)
			}
		}
	}
	if tab.get(wire.Digest{}) != nil {
		t.Fatal("zero table: get found a record")
	}
	tab.delete(wire.Digest{}) // must not panic
	for step := range 20000 {
		d := digest()
		if rng.IntN(10) < 6 {
			b := &blob{digest: d, size: rng.Int64()}
			tab.set(b)
			want[d] = b
		} else {
			tab.delete(d)
			delete(want, d)
		}
		if got, w := tab.get(d), want[d]; got != w {
			t.Fatalf("step %d: get(%s) = %p, want %p", step, shortHex(d), got, w)
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	check(-1)
	for d := range want {
		tab.delete(d)
	}
	if tab.len() != 0 || tab.get(digest()) != nil {
		t.Fatalf("after deleting all: len = %d", tab.len())
	}
}
