// Package ctxio ties the lifetime of a context to a stream that outlives
// the call that opened it.
package ctxio

import (
	"context"
	"io"
)

// CloseCancels returns rc whose Close also calls cancel: a response body
// streamed to a client after the function that fetched it returned keeps
// the fetch's context (and its timeout) alive until the body is done.
func CloseCancels(rc io.ReadCloser, cancel context.CancelFunc) io.ReadCloser {
	return &cancelOnClose{ReadCloser: rc, cancel: cancel}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
