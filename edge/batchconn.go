package edge

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// batchConn is the TCP connection under a client's TLS connection. Until
// batch is called it passes writes straight through. After, it gathers
// writes while one is on the wire and sends them together: the HTTP/2
// server flushes a TLS record per response, and on a busy connection the
// write system call for each, not the encryption, is most of the cost
// of a small hit. Nothing waits for a batch to fill: a write finding the
// connection idle goes out at once; only writes made during another's
// system call are gathered, as a group commit does.
//
// HTTP/1.1 writes whole responses itself and keeps the pass-through.
type batchConn struct {
	net.Conn
	batching atomic.Bool

	mu      sync.Mutex
	drained sync.Cond // signalled when pending empties or err is set
	pending []byte
	spare   []byte
	writing bool      // a flusher goroutine owns the wire
	err     error     // the first write error; every later write gets it
	wdl     time.Time // the write deadline last set
}

const (
	// batchMaxPending bounds what a connection buffers before its writer
	// blocks, as a full socket buffer would block it: a client that does
	// not read costs at most twice this (the buffer being written, and
	// the next).
	batchMaxPending = 256 << 10
	// batchCloseGrace is how long Close lets buffered bytes reach a
	// client that has stopped reading (as crypto/tls allows its
	// close_notify).
	batchCloseGrace = 5 * time.Second
)

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	b.drained.L = &b.mu
	return b
}

// batch turns gathering on. Call it before handing the connection to a
// writer that may write from more than one goroutine or flush often.
func (b *batchConn) batch() { b.batching.Store(true) }

// NetConn returns the TCP connection.
func (b *batchConn) NetConn() net.Conn { return b.Conn }

func (b *batchConn) Write(p []byte) (int, error) {
	if !b.batching.Load() {
		return b.Conn.Write(p)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.pending) >= batchMaxPending {
		b.drained.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	b.pending = append(b.pending, p...)
	if !b.writing {
		b.writing = true
		go b.flush()
	}
	return len(p), nil
}

// flush writes what is pending until nothing is, then lets the next
// Write start another flusher.
func (b *batchConn) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending) > 0 && b.err == nil {
		out := b.pending
		b.pending = b.spare[:0]
		// Writers held at the bound may fill the emptied buffer while
		// this one is on the wire: at most twice the bound in all.
		b.drained.Broadcast()
		b.mu.Unlock()
		_, err := b.Conn.Write(out)
		b.mu.Lock()
		b.spare = out[:0]
		if err != nil {
			b.err = err
			b.pending = nil
		}
		b.drained.Broadcast()
	}
	b.writing = false
	b.drained.Broadcast()
}

// drain waits, with b.mu held, until what is buffered has been sent or
// has failed. It allows that at most batchCloseGrace, or the write
// deadline in force if sooner, so that a client that stopped reading
// cannot hold it.
//
// next is the deadline about to be set (zero: none): one in the future
// bounds the wait too, as it would a write in progress; one in the past
// does not, so that bytes written before it still go out.
func (b *batchConn) drain(next time.Time) {
	if !b.writing {
		return
	}
	now := time.Now()
	limit := now.Add(batchCloseGrace)
	if !b.wdl.IsZero() && b.wdl.Before(limit) {
		limit = b.wdl
	}
	if next.After(now) && next.Before(limit) {
		limit = next
	}
	if !limit.Equal(b.wdl) {
		b.Conn.SetWriteDeadline(limit)
	}
	for b.writing {
		b.drained.Wait()
	}
}

// SetWriteDeadline applies t to writes made after it, and to bytes
// already buffered when t is in the future. Bytes buffered before a
// deadline in the past are still sent, under the deadline they were
// written with: crypto/tls writes its close_notify and then sets a
// deadline of now, counting on the alert having gone out.
func (b *batchConn) SetWriteDeadline(t time.Time) error {
	if !b.batching.Load() {
		return b.Conn.SetWriteDeadline(t)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drain(t)
	b.wdl = t
	return b.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines; see SetWriteDeadline.
func (b *batchConn) SetDeadline(t time.Time) error {
	if err := b.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return b.SetWriteDeadline(t)
}

// Close sends what is buffered (see drain), then closes the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.drain(time.Time{})
	b.err = net.ErrClosed
	b.mu.Unlock()
	return b.Conn.Close()
}

// batchListener wraps every accepted connection in a batchConn.
type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newBatchConn(c), nil
}
