package h1c

import (
	"errors"
	"io"
)

// Response is the answer to one request. The zero value is ready for
// Client.Do, and a Response may be used for request after request: that
// is what keeps a steady stream of requests from allocating.
//
// The []byte views it returns point into the connection's buffer and
// are valid until Close, Discard or the next Do with the Response;
// reading the body does not overwrite them. A Response is not safe for
// concurrent use.
type Response struct {
	// Status is the status code, 200 to 999; 1xx answers before the
	// final one are skipped.
	Status int
	// ContentLength is the Content-Length header's value, -1 when
	// there is none or the body is chunked. It describes the body a GET
	// would have, so it can be positive while the body of a HEAD, 204 or
	// 304 answer is empty.
	ContentLength int64

	c *conn
}

// ErrClosed is returned by reads of a Response that was closed.
var ErrClosed = errors.New("h1c: response closed")

var (
	_ io.Reader   = (*Response)(nil)
	_ io.WriterTo = (*Response)(nil)
	_ io.Closer   = (*Response)(nil)
)

// Get returns the value of the first header field named name (in any
// case), trimmed of surrounding whitespace, or nil when there is none.
func (r *Response) Get(name string) []byte {
	c := r.c
	if c == nil {
		return nil
	}
	for i := range c.h.nfields {
		f := &c.h.fields[i]
		if int(f.ne-f.ns) == len(name) && equalFold(c.buf[f.ns:f.ne], name) {
			return c.buf[f.vs:f.ve]
		}
	}
	return nil
}

// GetString is Get as a string, which the caller may keep.
func (r *Response) GetString(name string) string { return string(r.Get(name)) }

// NumFields returns the number of header fields of the head.
func (r *Response) NumFields() int {
	if r.c == nil {
		return 0
	}
	return r.c.h.nfields
}

// Field returns the i-th header field, in the order received,
// 0 ≤ i < NumFields().
func (r *Response) Field(i int) (name, value []byte) {
	f := &r.c.h.fields[:r.c.h.nfields][i]
	return r.c.buf[f.ns:f.ne], r.c.buf[f.vs:f.ve]
}

// Reason returns the reason phrase of the status line.
func (r *Response) Reason() []byte {
	if r.c == nil {
		return nil
	}
	return r.c.buf[r.c.h.rs:r.c.h.re]
}

// Read reads the body: the Content-Length bytes, the chunks of a
// chunked body decoded, up to the close for a body with neither, and
// nothing for HEAD, 1xx, 204 and 304 answers. A body cut short is
// io.ErrUnexpectedEOF; one that does not parse wraps ErrMalformed.
func (r *Response) Read(p []byte) (int, error) {
	if r.c == nil {
		return 0, ErrClosed
	}
	b, err := r.c.next()
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	r.c.consume(n)
	return n, nil
}

// WriteTo writes the rest of the body to w, straight from the
// connection's buffer, in pieces of up to Client.ReadBufferSize: no
// copy, no allocation. io.Copy uses it.
func (r *Response) WriteTo(w io.Writer) (int64, error) {
	if r.c == nil {
		return 0, ErrClosed
	}
	var total int64
	for {
		b, err := r.c.next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(b)
		r.c.consume(n)
		total += int64(n)
		if err == nil && n < len(b) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
}

// Discard reads the rest of the body, so that the connection can be
// reused, and then closes the response. It returns the error that cut
// the body short, if any.
func (r *Response) Discard() error {
	if r.c == nil {
		return nil
	}
	var err error
	for {
		b, e := r.c.next()
		if e != nil {
			if e != io.EOF {
				err = e
			}
			break
		}
		r.c.consume(len(b))
	}
	r.Close()
	return err
}

// Close ends the response. Its connection goes back to the pool when
// the body was read to its end, or is here already, and the answer
// allowed keep-alive; otherwise the connection is closed, so that an
// unread body costs a connection rather than a read of it. Close always
// returns nil, and a second Close does nothing.
func (r *Response) Close() error {
	if c := r.c; c != nil {
		r.c = nil
		c.release()
	}
	return nil
}
