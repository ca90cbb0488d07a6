package ctxio

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestCloseCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	rc := CloseCancels(io.NopCloser(strings.NewReader("body")), cancel)
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != "body" {
		t.Fatalf("read %q, %v", b, err)
	}
	if ctx.Err() != nil {
		t.Fatal("context ended before Close")
	}
	rc.Close()
	if ctx.Err() == nil {
		t.Fatal("Close did not end the context")
	}
}
