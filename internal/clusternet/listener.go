package clusternet

import (
	"net"
	"sync"
)

// kindListener is the net.Listener of one kind: a bounded queue of
// admitted connections between the handshake goroutines and Accept.
//
// An acceptor answers the kind byte before it queues the connection, and
// must not promise a place it then cannot give; so a handshake first
// reserves a place (reserve), answers, and then fills it (deliver) or
// gives it back (release).
type kindListener struct {
	kind  byte
	addr  net.Addr
	conns chan net.Conn // capacity acceptQueue
	done  chan struct{} // closed by Close

	mu       sync.Mutex
	closed   bool
	reserved int // places promised but not yet filled
}

var _ net.Listener = (*kindListener)(nil)

func newKindListener(kind byte, addr net.Addr) *kindListener {
	return &kindListener{
		kind:  kind,
		addr:  addr,
		conns: make(chan net.Conn, acceptQueue),
		done:  make(chan struct{}),
	}
}

// Accept waits for a connection of l's kind. After Close it returns
// net.ErrClosed.
func (l *kindListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops l accepting and closes the connections waiting in its
// queue; connections of its kind are refused from now on. The cluster
// port and the other kinds are unaffected.
func (l *kindListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.done)
	// deliver refuses once closed, so nothing can arrive after this drain.
	for {
		select {
		case c := <-l.conns:
			c.Close()
		default:
			return nil
		}
	}
}

// Addr returns the cluster port's address, which every kind shares.
func (l *kindListener) Addr() net.Addr { return l.addr }

// reserve promises a place in the queue, unless l is closed or full.
func (l *kindListener) reserve() status {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return statusClosed
	case l.reserved+len(l.conns) >= cap(l.conns):
		// len only shrinks behind our back (Accept), so this errs safe.
		return statusBusy
	}
	l.reserved++
	return statusOK
}

// release gives back a place that reserve promised.
func (l *kindListener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved--
}

// deliver puts c in the place that reserve promised, or closes it if l has
// been closed since.
func (l *kindListener) deliver(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved--
	if l.closed {
		c.Close()
		return
	}
	l.conns <- c // never blocks: the place was reserved
}
