package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestReproducible regenerates the database and checks it is byte for byte
// the committed testdata/geoip-test.mmdb, so the file always matches the
// program and a rebuild never changes it.
func TestReproducible(t *testing.T) {
	out := filepath.Join(t.TempDir(), "geoip-test.mmdb")
	if err := run([]string{"-o", out}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "..", "testdata", "geoip-test.mmdb"))
	if err != nil {
		t.Fatalf("%v (run `go generate ./internal/geoip`)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("generated database (%d bytes) differs from testdata/geoip-test.mmdb (%d bytes); run `go generate ./internal/geoip` and commit the result", len(got), len(want))
	}
	again, err := build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Fatal("two builds in one process differ")
	}
}
