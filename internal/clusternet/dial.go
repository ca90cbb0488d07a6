package clusternet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/geocdn/geocdn/internal/pki"
)

// Dial connects to the origin at addr for connections of kind. When
// expectID is not empty the peer's certificate must name
// geocdn://origin/<expectID>; otherwise any origin of the cluster CA will
// do. It returns once the acceptor has taken the connection for kind, so a
// refusal by either side (a certificate, the kind, a full queue) is Dial's
// error, and is also logged at Warn. ctx and the handshake timeout bound
// the whole dial; Close ends it with net.ErrClosed.
func (n *Net) Dial(ctx context.Context, addr string, kind byte, expectID string) (net.Conn, error) {
	who := "origin"
	if expectID != "" {
		who += " " + expectID
	}
	if _, ok := n.kinds[kind]; !ok {
		return nil, fmt.Errorf("clusternet: dial %s at %s: unknown kind %d", who, addr, kind)
	}
	c, connected, err := n.dial(ctx, addr, kind, expectID)
	if err != nil {
		err = fmt.Errorf("clusternet: dial %s at %s: %w", who, addr, err)
		// Not reaching a peer at all is routine while it is down, and
		// the caller hears of it; only a peer that answers and then
		// refuses, or is refused, is worth a warning.
		level := slog.LevelDebug
		if connected && !errors.Is(err, net.ErrClosed) && !errors.Is(err, context.Canceled) {
			level = slog.LevelWarn
		}
		n.log.Log(context.Background(), level, "clusternet: dial failed", "addr", addr, "expect", expectID, "kind", kindName(kind), "err", err)
		return nil, err
	}
	peer, _ := PeerID(c)
	n.log.Debug("clusternet: dialled", "addr", addr, "peer", peer, "kind", kindName(kind))
	return c, nil
}

// dial is Dial without the logging; connected reports whether the TCP
// connection was made.
func (n *Net) dial(ctx context.Context, addr string, kind byte, expectID string) (c *tls.Conn, connected bool, err error) {
	if n.ctx.Err() != nil {
		return nil, false, net.ErrClosed
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(n.ctx, func() { cancel(net.ErrClosed) })()
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, n.handshakeTimeout,
		fmt.Errorf("no answer within the handshake timeout %v", n.handshakeTimeout))
	defer cancelTimeout()

	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, false, err
	}
	tuneTCP(raw)
	// HandshakeContext heeds ctx; the kind byte and its answer need the
	// same bound, so ctx ending fails any read or write in progress.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	c = tls.Client(raw, n.clientConfig(expectID))
	err = clientHandshake(ctx, c, kind)
	if !stop() && err == nil {
		err = context.Cause(ctx) // the deadline is set: c is unusable
	}
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			// The conn's error would be a bare "i/o timeout"; the cause
			// says which bound ran out, or that the Net was closed.
			err = context.Cause(ctx)
		}
		return nil, true, err
	}
	return c, true, nil
}

// clientHandshake runs the dialer's side of the handshake on c: TLS, the
// kind byte, and the acceptor's answer.
func clientHandshake(ctx context.Context, c *tls.Conn, kind byte) error {
	if err := c.HandshakeContext(ctx); err != nil {
		return err
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		return err
	}
	// The read also brings any TLS alert the acceptor sent about our
	// certificate, which TLS 1.3 checks only after our handshake is done.
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the peer closed the connection without answering")
		}
		return err
	}
	if st := status(b[0]); st != statusOK {
		return fmt.Errorf("peer refused: %w", refusal{st, kind})
	}
	return nil
}

// clientConfig returns the TLS configuration for dialing: n's, plus, when
// expectID is set, a check that the peer is that origin. The check runs
// inside the handshake so that the acceptor gets an alert and logs the
// refusal, rather than seeing a good handshake and then an EOF.
func (n *Net) clientConfig(expectID string) *tls.Config {
	if expectID == "" {
		return n.clientTLS
	}
	cfg := n.clientTLS.Clone()
	verify := cfg.VerifyConnection
	want := pki.Identity{Role: pki.RoleOrigin, ID: expectID}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verify(cs); err != nil {
			return err
		}
		// verify has checked that there is a leaf naming one identity.
		got, err := identityOf(cs.PeerCertificates[0])
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("certificate names %s", got)
		}
		return nil
	}
	return cfg
}

// PeerID returns the verified origin id of the peer of c, a connection
// returned by a Net's Dial or a Net listener's Accept.
func PeerID(c net.Conn) (string, error) {
	tc, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return "", fmt.Errorf("clusternet: %T is not a TLS connection", c)
	}
	id, err := pki.PeerIdentity(tc.ConnectionState())
	if err != nil {
		return "", fmt.Errorf("clusternet: %w", err)
	}
	if id.Role != pki.RoleOrigin {
		return "", fmt.Errorf("clusternet: peer %s is not an origin", id)
	}
	return id.ID, nil
}
