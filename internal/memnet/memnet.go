// Package memnet is an in-memory stream network: listeners and a dialer
// that connect through net.Pipe, for HTTP servers and clients inside a
// testing/synctest bubble, where real sockets would stall the bubble's
// clock.
//
// Key invariant: a Dial reaches exactly the listener registered under the
// same address on the same Network, or fails at once with a refusal; no
// connection ever leaves the process.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Addr is an address on a Network: any string, conventionally host:port so
// that URLs built from it parse.
type Addr string

// Network implements net.Addr.
func (Addr) Network() string  { return "memnet" }
func (a Addr) String() string { return string(a) }

// ErrRefused is returned by Dial when nothing listens on the address.
var ErrRefused = errors.New("memnet: connection refused")

// Network is a set of listeners. The zero value is ready to use.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*listener
}

// Listen registers a listener on addr, which must be host:port. A closed
// listener's address can be listened on again.
func (n *Network) Listen(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("memnet: listen %q: %w", addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listeners == nil {
		n.listeners = map[string]*listener{}
	}
	if _, busy := n.listeners[addr]; busy {
		return nil, fmt.Errorf("memnet: listen %s: address in use", addr)
	}
	l := &listener{net: n, addr: Addr(addr), conns: make(chan net.Conn), done: make(chan struct{})}
	n.listeners[addr] = l
	return l, nil
}

// Dial connects to the listener on addr. Its signature fits
// http.Transport.DialContext; network is ignored. It blocks until the
// listener accepts or ctx ends.
func (n *Network) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[addr]
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "memnet", Addr: Addr(addr), Err: ErrRefused}
	}
	c, s := net.Pipe()
	client := &conn{Conn: c, local: Addr("client"), remote: l.addr}
	server := &conn{Conn: s, local: l.addr, remote: Addr("client")}
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, &net.OpError{Op: "dial", Net: "memnet", Addr: Addr(addr), Err: ErrRefused}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type listener struct {
	net   *Network
	addr  Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		if l.net.listeners[string(l.addr)] == l {
			delete(l.net.listeners, string(l.addr))
		}
		l.net.mu.Unlock()
	})
	return nil
}

func (l *listener) Addr() net.Addr { return l.addr }

// conn names its ends, since net.Pipe's addresses all read "pipe" and
// servers log and compare remote addresses.
type conn struct {
	net.Conn
	local, remote net.Addr
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }
