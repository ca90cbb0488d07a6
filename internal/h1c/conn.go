package h1c

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// minBodySpace is the least room a connection's buffer keeps after a
// head for the body: chunk lines must fit in it, and reads of a body
// land there, so the head's bytes (which Response.Get returns views of)
// stay put until the response is closed.
const minBodySpace = maxBodyLine

// Body framings (RFC 9112 section 6.3).
const (
	bodyNone    = iota // HEAD, 1xx, 204, 304: no body whatever the head says
	bodyLength         // Content-Length
	bodyChunked        // Transfer-Encoding: chunked
	bodyClose          // neither: the body ends when the server closes
)

// States of a chunked body.
const (
	chunkSize    = iota // expecting a chunk-size line
	chunkData           // in a chunk; remain bytes of it left
	chunkEnd            // expecting the CRLF after a chunk's data
	chunkTrailer        // after the last chunk, expecting trailer lines
)

// conn is one keep-alive connection. It is used by one request at a
// time, on the caller's goroutine, and handed between goroutines only
// through the client's pool, under its mutex.
//
// Nothing reads an idle connection, so bytes a broken server sends
// after a body that was already read whole are seen only by the next
// request, as the start of its answer (which then rarely parses).
// net/http's idle reader catches them earlier, at the price of the
// goroutine hand-offs this client exists to avoid.
type conn struct {
	nc     net.Conn
	client *Client // nil in tests: released connections are closed
	host   string  // the pool it belongs to

	wbuf []byte // the request head, rebuilt for every request

	// buf holds the response: its head in buf[:base], then body bytes
	// not yet consumed in buf[r:w]. Body reads refill buf[base:] only.
	buf        []byte
	base, r, w int
	h          head

	kind   int   // body framing
	cstate int   // chunked: where in the body
	remain int64 // length: body bytes left; chunked: bytes left in the chunk
	extra  int   // chunked: trailer bytes read, against maxHeadBytes
	done   bool  // the whole body, trailers included, has been read
	keep   bool  // the head allows another request on the connection
	err    error // sticky: once set, the connection is not reused

	reused      bool            // came from the idle pool
	nread       int             // bytes read for the current request
	ctx         context.Context // the current request's, for Err between reads
	hasDeadline bool            // a deadline is set on nc
	stop        func() bool     // stops the AfterFunc of a deadline-less context
	noIO        bool            // fill must not read: Close is salvaging buffered bytes
}

// errWouldBlock is fill's answer when noIO is set; it never escapes.
var errWouldBlock = errors.New("h1c: would block")

// aLongTimeAgo is a deadline already passed, to interrupt I/O.
var aLongTimeAgo = time.Unix(1, 0)

func newConn(nc net.Conn, cl *Client, host string, bufSize int) *conn {
	return &conn{
		nc:     nc,
		client: cl,
		host:   host,
		buf:    make([]byte, bufSize),
		wbuf:   make([]byte, 0, 512),
	}
}

// begin prepares the connection for a request under ctx: the
// context's deadline bounds all of its I/O, body included.
func (c *conn) begin(ctx context.Context) {
	c.ctx, c.nread, c.err = ctx, 0, nil
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
		c.hasDeadline = true
		return
	}
	if c.hasDeadline {
		c.nc.SetDeadline(time.Time{})
		c.hasDeadline = false
	}
	// Without a deadline, the only way to stop a blocked read on
	// cancellation is from another goroutine. It costs allocations,
	// so only contexts that can be cancelled but have no deadline pay.
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, c.interrupt)
	}
}

func (c *conn) interrupt() { c.nc.SetDeadline(aLongTimeAgo) }

// roundTrip writes the request and reads the response head.
func (c *conn) roundTrip(req *Request) error {
	c.wbuf = appendRequest(c.wbuf[:0], req)
	if _, err := c.nc.Write(c.wbuf); err != nil {
		return err
	}
	return c.readHead(req.Method == "HEAD")
}

// appendRequest appends the request head; req has been validated.
func appendRequest(b []byte, req *Request) []byte {
	if req.Method == "" {
		b = append(b, "GET"...)
	} else {
		b = append(b, req.Method...)
	}
	b = append(b, ' ')
	switch {
	case req.TargetBytes != nil:
		b = append(b, req.TargetBytes...)
	case req.Target != "":
		b = append(b, req.Target...)
	default:
		b = append(b, '/')
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, req.Host...)
	b = append(b, "\r\n"...)
	for _, f := range req.Header {
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Value...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// readHead reads the final response head into buf, skipping 1xx
// answers, and sets up the body's framing.
func (c *conn) readHead(isHead bool) error {
	c.base, c.r, c.w = 0, 0, 0
	for interim := 0; ; interim++ {
		end, err := c.scanHead()
		if err != nil {
			return err
		}
		if _, err := parseHead(c.buf[:end], &c.h); err != nil {
			return err
		}
		if c.h.status >= 200 {
			c.base, c.r = end, end
			break
		}
		if c.h.status == 101 {
			return errSwitching
		}
		if interim == maxInterim {
			return errTooManyInterim
		}
		c.w = copy(c.buf, c.buf[end:c.w])
	}
	if len(c.buf)-c.base < minBodySpace {
		c.grow()
	}
	h := &c.h
	c.done, c.cstate, c.remain, c.extra = false, chunkSize, 0, 0
	switch {
	case isHead || h.status == 204 || h.status == 304:
		c.kind, c.done = bodyNone, true
	case h.chunked:
		c.kind = bodyChunked
	case h.contentLength >= 0:
		c.kind, c.remain, c.done = bodyLength, h.contentLength, h.contentLength == 0
	default:
		c.kind = bodyClose
	}
	c.keep = !h.close && (h.minor >= 1 || h.keepAlive) && c.kind != bodyClose
	return nil
}

// scanHead reads until buf holds a whole head and returns its length.
// It looks at each byte once, so a server trickling a head in costs
// linear time; parseHead then checks the head in one go.
func (c *conn) scanHead() (int, error) {
	line, scan := 0, 0
	for {
		for {
			i := bytes.IndexByte(c.buf[scan:c.w], '\n')
			if i < 0 {
				break
			}
			nl := scan + i
			if nl == line || nl == line+1 && c.buf[line] == '\r' {
				if nl >= maxHeadBytes {
					return 0, errHeadTooLarge
				}
				return nl + 1, nil
			}
			line, scan = nl+1, nl+1
		}
		scan = c.w
		if c.w >= maxHeadBytes {
			return 0, errHeadTooLarge
		}
		if c.w == len(c.buf) {
			c.grow()
		}
		if err := c.fill(); err != nil {
			if err == io.EOF && c.nread > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// grow makes room for the largest head and a body after it. Heads that
// large are rare; release shrinks the buffer back.
func (c *conn) grow() {
	b := make([]byte, maxHeadBytes+minBodySpace)
	copy(b, c.buf[:c.w])
	c.buf = b
}

// fill reads more into buf[w:], first moving unconsumed body bytes
// down to base when the buffer is full.
func (c *conn) fill() error {
	if c.noIO {
		return errWouldBlock
	}
	if c.r == c.w {
		c.r, c.w = c.base, c.base
	} else if c.w == len(c.buf) {
		c.w = c.base + copy(c.buf[c.base:], c.buf[c.r:c.w])
		c.r = c.base
	}
	if c.ctx != nil {
		// A context cancelled before its deadline is noticed here,
		// between reads (see Client.Do).
		if err := c.ctx.Err(); err != nil {
			return err
		}
	}
	for range 100 {
		n, err := c.nc.Read(c.buf[c.w:])
		c.w += n
		c.nread += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// fail records err as the connection's last: it will not be reused.
func (c *conn) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != errWouldBlock {
		c.err = err
	}
	return err
}

// next returns the next piece of body held in the buffer, reading if
// there is none, without consuming it; io.EOF at the end of the body.
func (c *conn) next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	for !c.done {
		switch c.kind {
		case bodyLength:
			if c.r == c.w {
				if err := c.fill(); err != nil {
					return nil, c.fail(err)
				}
			}
			return c.buf[c.r : c.r+int(min(int64(c.w-c.r), c.remain))], nil
		case bodyClose:
			if c.r == c.w {
				if err := c.fill(); err == io.EOF {
					c.done = true
					break
				} else if err != nil {
					return nil, c.fail(err)
				}
			}
			return c.buf[c.r:c.w], nil
		case bodyChunked:
			if c.cstate == chunkData {
				if c.r == c.w {
					if err := c.fill(); err != nil {
						return nil, c.fail(err)
					}
				}
				return c.buf[c.r : c.r+int(min(int64(c.w-c.r), c.remain))], nil
			}
			l, err := c.line()
			if err != nil {
				return nil, c.fail(err)
			}
			switch c.cstate {
			case chunkSize:
				n, ok := parseChunkSize(l)
				if !ok {
					return nil, c.fail(errChunkLine)
				}
				c.cstate, c.remain = chunkData, n
				if n == 0 {
					c.cstate = chunkTrailer
				}
			case chunkEnd:
				if len(l) != 0 {
					return nil, c.fail(errChunkEnd)
				}
				c.cstate = chunkSize
			case chunkTrailer:
				c.extra += len(l)
				if len(l) == 0 {
					c.done = true
				} else if c.extra > maxHeadBytes || !validTrailer(l) {
					return nil, c.fail(errTrailer)
				}
			}
		}
	}
	return nil, io.EOF
}

// consume marks n bytes of the piece next returned as read.
func (c *conn) consume(n int) {
	c.r += n
	switch c.kind {
	case bodyLength:
		c.remain -= int64(n)
		c.done = c.remain == 0
	case bodyChunked:
		if c.remain -= int64(n); c.remain == 0 {
			c.cstate = chunkEnd
		}
	}
}

// line returns the next line of a chunked body, without its line end.
func (c *conn) line() ([]byte, error) {
	for {
		i := bytes.IndexByte(c.buf[c.r:c.w], '\n')
		if i >= 0 && i < maxBodyLine {
			l := c.buf[c.r : c.r+i]
			c.r += i + 1
			return trimCR(l), nil
		}
		if i >= 0 || c.w-c.r >= maxBodyLine {
			if c.cstate == chunkTrailer {
				return nil, errTrailer
			}
			return nil, errChunkLine
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// release ends the current response: the connection goes back to the
// pool if its body was read whole, nothing came after it and the head
// allowed it; otherwise it is closed.
func (c *conn) release() {
	if !c.done && c.err == nil {
		// What is left of the body may be here already (a small body
		// the caller did not read, a chunked body's last chunk):
		// consume it without reading, to keep the connection.
		c.noIO = true
		for {
			p, err := c.next()
			if err != nil {
				break
			}
			c.consume(len(p))
		}
		c.noIO = false
	}
	if c.stop != nil {
		if !c.stop() {
			c.err = context.Canceled // interrupt may still set a deadline
		}
		c.stop = nil
	}
	c.ctx = nil
	if c.done && c.err == nil && c.keep && c.r == c.w && c.client != nil {
		c.client.put(c)
		return
	}
	c.nc.Close()
}
