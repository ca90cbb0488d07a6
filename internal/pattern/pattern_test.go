package pattern

import (
	"bytes"
	"io"
	"testing"
)

func TestReader(t *testing.T) {
	const n = 3*64<<10 + 123
	a, err := io.ReadAll(NewReader(n, 7))
	if err != nil || len(a) != n {
		t.Fatalf("read %d bytes, %v; want %d", len(a), err, n)
	}
	// Read in odd-sized pieces, the same bytes come out.
	var b bytes.Buffer
	r := NewReader(n, 7)
	buf := make([]byte, 1000)
	for {
		k, err := r.Read(buf)
		b.Write(buf[:k])
		if err == io.EOF {
			break
		}
	}
	if !bytes.Equal(a, b.Bytes()) {
		t.Error("the same reader gave different bytes read in other pieces")
	}
	if bytes.Equal(a[:64<<10], a[64<<10:128<<10]) {
		t.Error("two blocks of one body are equal")
	}
	c, _ := io.ReadAll(NewReader(n, 8))
	if bytes.Equal(a, c) {
		t.Error("two seeds gave the same body")
	}
}
