package aetree

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"
)

func tuple(i int, lsn uint64) Tuple {
	t := Tuple{Namespace: "default", Key: fmt.Sprintf("/obj/%d", i), LSN: lsn}
	t.Digest[0], t.Digest[1] = byte(i), byte(lsn)
	return t
}

func TestOrderIndependentAndRemovable(t *testing.T) {
	a, b := New(), New()
	var ts []Tuple
	for i := range 1000 {
		ts = append(ts, tuple(i, uint64(i+1)))
	}
	for _, tu := range ts {
		a.Add(tu)
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
	for _, tu := range ts {
		b.Add(tu)
	}
	if a.Root() != b.Root() || a.Root().IsZero() {
		t.Fatalf("same set, roots %x and %x", a.Root(), b.Root())
	}
	extra := tuple(5000, 7)
	b.Add(extra)
	if a.Root() == b.Root() {
		t.Fatal("one more tuple left the root unchanged")
	}
	b.Remove(extra)
	if a.Root() != b.Root() {
		t.Fatal("removing the extra tuple did not restore the root")
	}
	for _, tu := range ts {
		b.Remove(tu)
	}
	if !b.Root().IsZero() || b.Len() != 0 {
		t.Fatalf("empty set: root %x, len %d", b.Root(), b.Len())
	}
}

// Every field of the tuple counts: a different LSN or digest of the same
// key changes the root.
func TestEveryFieldCounts(t *testing.T) {
	base := tuple(1, 10)
	variants := []Tuple{base, base, base, base}
	variants[1].LSN++
	variants[2].Digest[31] ^= 1
	variants[3].Namespace = "other"
	roots := map[Hash]bool{}
	for _, v := range variants {
		tr := New()
		tr.Add(v)
		roots[tr.Root()] = true
	}
	if len(roots) != len(variants) {
		t.Fatalf("%d distinct roots for %d distinct tuples", len(roots), len(variants))
	}
}

// Descend finds exactly the leaves that hold differences, and asks only
// for children of nodes that differ.
func TestDescendFindsDifferingLeaves(t *testing.T) {
	for _, diffs := range []int{0, 1, 7, 100, 3000} {
		t.Run(fmt.Sprint(diffs), func(t *testing.T) {
			local, remote := New(), New()
			for i := range 20000 {
				local.Add(tuple(i, 1))
				remote.Add(tuple(i, 1))
			}
			want := map[uint32]bool{}
			for i := range diffs {
				// Changed, missing on one side, or extra on the other.
				switch i % 3 {
				case 0:
					remote.Remove(tuple(i, 1))
					remote.Add(tuple(i, 2))
				case 1:
					local.Remove(tuple(i, 1))
				case 2:
					remote.Add(tuple(100000+i, 1))
					want[Leaf("default", fmt.Sprintf("/obj/%d", 100000+i))] = true
					continue
				}
				want[Leaf("default", fmt.Sprintf("/obj/%d", i))] = true
			}
			calls, asked := 0, 0
			got, err := Descend(local, func(level int, idx []uint32) ([]Hash, error) {
				calls++
				asked += len(idx)
				return remote.Nodes(nil, level, idx)
			})
			if err != nil {
				t.Fatal(err)
			}
			wantList := make([]uint32, 0, len(want))
			for l := range want {
				wantList = append(wantList, l)
			}
			slices.Sort(wantList)
			if !slices.Equal(got, wantList) {
				t.Fatalf("got %d leaves, want %d", len(got), len(wantList))
			}
			if diffs == 0 && (calls != 1 || asked != 1) {
				t.Fatalf("equal trees took %d calls for %d nodes, want 1 for the root", calls, asked)
			}
			// Each differing leaf costs at most a node per level's fanout.
			if limit := 1 + len(want)*Fanout*Depth; asked > limit {
				t.Fatalf("asked for %d nodes, more than %d", asked, limit)
			}
		})
	}
}

func TestDiskKeys(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := map[uint32][]string{}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("objects"))
		if err != nil {
			return err
		}
		for i := range 3000 {
			tu := tuple(i, uint64(i))
			if err := b.Put(Key(tu.Namespace, tu.Key), []byte(tu.Key)); err != nil {
				return err
			}
			l := Leaf(tu.Namespace, tu.Key)
			want[l] = append(want[l], tu.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("objects"))
		n := 0
		if err := ScanLeaves(b, 0, Leaves, func(k, v []byte) error {
			ns, key, err := SplitKey(k)
			if err != nil || ns != "default" || key != string(v) {
				t.Errorf("key %q: %q %q %v", k, ns, key, err)
			}
			n++
			return nil
		}); err != nil {
			return err
		}
		if n != 3000 {
			t.Errorf("whole range: %d keys, want 3000", n)
		}
		for l, keys := range want {
			var got []string
			if err := ScanLeaves(b, l, l+1, func(_, v []byte) error { got = append(got, string(v)); return nil }); err != nil {
				return err
			}
			slices.Sort(got)
			slices.Sort(keys)
			if !slices.Equal(got, keys) {
				t.Errorf("leaf %d: got %v, want %v", l, got, keys)
			}
		}
		if err := ScanLeaves(b, 5, Leaves+1, func(_, _ []byte) error { return nil }); err == nil {
			t.Error("a range past the last leaf: no error")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSplitKeyRefusesDamage(t *testing.T) {
	good := Key("ns", "/a")
	wrongLeaf := append([]byte{good[0] ^ 1, good[1]}, good[2:]...)
	for _, k := range [][]byte{{0, 1}, {0, 1, 'a', 'b'}, wrongLeaf} {
		if _, _, err := SplitKey(k); err == nil {
			t.Errorf("key %q: no error", k)
		}
	}
	if ns, key, err := SplitKey(good); err != nil || ns != "ns" || key != "/a" {
		t.Errorf("good key: %q %q %v", ns, key, err)
	}
}

func BenchmarkAdd(b *testing.B) {
	tr := New()
	for i := 0; b.Loop(); i++ {
		tr.Add(tuple(i, uint64(i)))
	}
}
