package edge

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// tcpPair is a connected loopback TCP pair: the server side wrapped in a
// batchConn with gathering on, and the client side.
func tcpPair(t *testing.T) (*batchConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := batchListener{ln}.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	if c == nil {
		t.Fatal("accept failed")
	}
	b := c.(*batchConn)
	b.batch()
	t.Cleanup(func() { b.Close(); client.Close() })
	return b, client
}

// Writes from several goroutines arrive whole and, per writer, in order;
// Close sends everything buffered before the connection ends.
func TestBatchConnKeepsWritesWholeAndInOrder(t *testing.T) {
	b, client := tcpPair(t)
	const writers, perWriter = 4, 500
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(client)
		got <- all
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWriter {
				// A record: writer, sequence number, a length and that
				// many bytes of the writer's letter.
				n := rng.IntN(3000)
				rec := append([]byte{byte('a' + w), byte(i >> 8), byte(i), byte(n >> 8), byte(n)}, bytes.Repeat([]byte{byte('a' + w)}, n)...)
				if _, err := b.Write(rec); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	all := <-got
	next := make([]int, writers)
	for len(all) > 0 {
		if len(all) < 5 {
			t.Fatalf("%d stray bytes at the end", len(all))
		}
		w := int(all[0] - 'a')
		seq := int(all[1])<<8 | int(all[2])
		n := int(all[3])<<8 | int(all[4])
		if w < 0 || w >= writers || len(all) < 5+n {
			t.Fatalf("torn record: writer byte %q, length %d, %d bytes left", all[0], n, len(all))
		}
		if seq != next[w] {
			t.Fatalf("writer %d: record %d arrived when %d was due", w, seq, next[w])
		}
		if !bytes.Equal(all[5:5+n], bytes.Repeat(all[:1], n)) {
			t.Fatalf("writer %d record %d: body interleaved with another write", w, seq)
		}
		next[w]++
		all = all[5+n:]
	}
	for w, n := range next {
		if n != perWriter {
			t.Errorf("writer %d: %d records arrived, want %d", w, n, perWriter)
		}
	}
}

// A client that stops reading blocks the writer once the buffer is full
// rather than growing it; a deadline in the future then fails the bytes
// in flight, and every later write returns the error.
func TestBatchConnBoundedWhenClientStopsReading(t *testing.T) {
	b, _ := tcpPair(t) // the client never reads
	chunk := make([]byte, 16<<10)
	blocked := make(chan error, 1)
	go func() {
		for {
			if _, err := b.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
	}()
	// Wait until the writer is held: the flusher is stuck in the kernel
	// and the buffer is at its bound.
	for {
		b.mu.Lock()
		full := len(b.pending) >= batchMaxPending
		if len(b.pending) > batchMaxPending+len(chunk) {
			t.Errorf("buffered %d bytes, bound %d", len(b.pending), batchMaxPending)
		}
		b.mu.Unlock()
		if full {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	err := <-blocked
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("held writer got %v, want a deadline error", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a later write got %v, want the same error", err)
	}
}

// A deadline in the past set after a write (as crypto/tls does after its
// close_notify) does not lose that write.
func TestBatchConnPastDeadlineKeepsBufferedBytes(t *testing.T) {
	b, client := tcpPair(t)
	for i := range 100 {
		msg := []byte{byte(i)}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if err := b.SetWriteDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1)
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if got[0] != byte(i) {
			t.Fatalf("write %d: read %d", i, got[0])
		}
		b.SetWriteDeadline(time.Time{})
	}
}
