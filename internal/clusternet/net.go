package clusternet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/geocdn/geocdn/internal/pki"
)

// Kinds of connection multiplexed on one port. The dialer sends the kind as
// the first byte after the TLS handshake.
const (
	KindRaft byte = 1 // raft RPCs (StreamLayer)
	KindBlob byte = 2 // blob streams between origins
	KindHTTP byte = 3 // admin HTTP requests forwarded to another origin
)

// kindName names a kind in logs and errors.
func kindName(kind byte) string {
	switch kind {
	case KindRaft:
		return "raft"
	case KindBlob:
		return "blob"
	case KindHTTP:
		return "http"
	}
	return fmt.Sprintf("kind %d", kind)
}

// DefaultHandshakeTimeout is Config.HandshakeTimeout's default.
const DefaultHandshakeTimeout = 10 * time.Second

// acceptQueue bounds the connections of one kind that have been admitted
// but not yet taken by Accept. Raft pools its connections and an HTTP
// server accepts in a loop, so the queue only fills when nobody accepts a
// kind; refusing then beats holding file descriptors without limit.
const acceptQueue = 16

// Config configures a Net.
type Config struct {
	// ID is this node's origin id; Cert must name geocdn://origin/<ID>.
	// Required.
	ID string
	// CA is the cluster CA; peers' certificates must chain to it.
	// Required.
	CA *pki.CA
	// Cert is this node's certificate, issued by CA. Required.
	Cert tls.Certificate
	// Listener is the bound TCP listener of the cluster port. Required.
	// The Net owns it from New on, even when New fails, and closes it.
	Listener net.Listener
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now, if set, is the clock for certificate validity. Default the real
	// clock.
	Now func() time.Time
	// HandshakeTimeout bounds the TLS handshake plus the kind byte and its
	// answer, on both sides: a peer that connects and says nothing is
	// dropped after it. Default DefaultHandshakeTimeout; at most a minute.
	HandshakeTimeout time.Duration
}

// withDefaults fills zero fields with their defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return c
}

// Validate reports every problem with c (after defaults) that can be seen
// without looking inside the certificate; New checks the certificate.
func (c Config) Validate() error {
	var errs []error
	if err := pki.ValidID(c.ID); err != nil {
		errs = append(errs, fmt.Errorf("id: %w", err))
	}
	if c.CA == nil {
		errs = append(errs, errors.New("ca: required"))
	}
	if len(c.Cert.Certificate) == 0 {
		errs = append(errs, errors.New("certificate: required"))
	}
	if c.Listener == nil {
		errs = append(errs, errors.New("listener: required"))
	}
	if c.HandshakeTimeout < 0 || c.HandshakeTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("handshake timeout: %v is outside 0..1m", c.HandshakeTimeout))
	}
	return errors.Join(errs...)
}

// Net is one origin's end of the cluster network: it accepts connections
// on the cluster port, sorts them by kind, and dials other origins. Its
// methods are safe for concurrent use.
type Net struct {
	id               string
	ln               net.Listener
	log              *slog.Logger
	serverTLS        *tls.Config
	clientTLS        *tls.Config
	handshakeTimeout time.Duration
	kinds            map[byte]*kindListener // fixed in New

	ctx       context.Context // done when Close begins
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the accept loop and handshakes in flight
	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and this node's certificate and starts accepting on
// cfg.Listener; there is no separate Run. It refuses a certificate that
// does not name geocdn://origin/<cfg.ID>, that does not chain to cfg.CA, or
// that is not valid now for both client and server use. On error it closes
// cfg.Listener.
func New(cfg Config) (*Net, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, fmt.Errorf("clusternet config: %w", err)
	}
	if err := checkCert(cfg); err != nil {
		cfg.Listener.Close()
		return nil, fmt.Errorf("clusternet: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Net{
		id:               cfg.ID,
		ln:               cfg.Listener,
		log:              cfg.Logger,
		serverTLS:        pki.ServerTLS(cfg.CA, cfg.Cert, pki.RoleOrigin, cfg.Now),
		clientTLS:        pki.ClientTLS(cfg.CA, cfg.Cert, pki.RoleOrigin, cfg.Now),
		handshakeTimeout: cfg.HandshakeTimeout,
		kinds:            make(map[byte]*kindListener),
		ctx:              ctx,
		cancel:           cancel,
	}
	for _, k := range []byte{KindRaft, KindBlob, KindHTTP} {
		n.kinds[k] = newKindListener(k, cfg.Listener.Addr())
	}
	n.wg.Go(n.acceptLoop)
	return n, nil
}

// checkCert refuses a certificate that would make every handshake fail, so
// that a misconfigured node says so once at startup rather than on every
// connection.
func checkCert(cfg Config) error {
	leaf := cfg.Cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cfg.Cert.Certificate[0]); err != nil {
			return fmt.Errorf("certificate: %w", err)
		}
	}
	id, err := identityOf(leaf)
	if err != nil {
		return err
	}
	if want := (pki.Identity{Role: pki.RoleOrigin, ID: cfg.ID}); id != want {
		return fmt.Errorf("certificate names %s, but this node's id is %s (want %s)", id, cfg.ID, want)
	}
	// A node both accepts and dials, so it needs both usages.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: cfg.CA.Pool, CurrentTime: cfg.Now(), KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("certificate %s: %w", id, err)
		}
	}
	return nil
}

// identityOf reads the identity in a certificate's single URI SAN. It is
// pki.PeerIdentity for a certificate rather than a finished handshake:
// VerifyConnection callbacks run before the handshake is complete.
func identityOf(c *x509.Certificate) (pki.Identity, error) {
	if len(c.URIs) != 1 {
		return pki.Identity{}, fmt.Errorf("certificate %q has %d URI SANs, want exactly 1", c.Subject.CommonName, len(c.URIs))
	}
	return pki.ParseIdentity(c.URIs[0])
}

// Addr returns the address of the cluster port.
func (n *Net) Addr() net.Addr { return n.ln.Addr() }

// Listener returns the listener for connections of kind, which must be one
// of the Kind constants (it panics otherwise). Its Accept returns
// connections whose TLS handshake is done and whose kind byte has been
// read and answered; PeerID tells who is on the other end. Every call
// returns the same listener; once closed, by its Close or the Net's, it
// stays closed and connections of its kind are refused.
func (n *Net) Listener(kind byte) net.Listener {
	l, ok := n.kinds[kind]
	if !ok {
		panic(fmt.Sprintf("clusternet: no listener for unknown kind %d", kind))
	}
	return l
}

// Close stops accepting, closes the TCP listener and every kind listener,
// ends handshakes and dials in flight, and waits for the Net's goroutines.
// Connections already returned by Accept or Dial are the caller's and stay
// open. Later calls return the first call's result.
func (n *Net) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		if err := n.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			n.closeErr = fmt.Errorf("clusternet: close listener: %w", err)
		}
		for _, l := range n.kinds {
			l.Close()
		}
		n.wg.Wait()
	})
	return n.closeErr
}

// acceptLoop accepts TCP connections until Close and hands each to its own
// handshake goroutine, so that a slow or silent peer holds up nobody else.
func (n *Net) acceptLoop() {
	var delay time.Duration
	for {
		c, err := n.ln.Accept()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				n.log.Error("clusternet: listener closed behind the Net's back; no longer accepting", "addr", n.ln.Addr().String())
				return
			}
			// Errors such as running out of file descriptors pass; back off
			// as net/http does rather than spin. A retry delay, not a
			// timeout anyone observes, so the real clock.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			n.log.Warn("clusternet: accept", "addr", n.ln.Addr().String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-n.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		n.wg.Go(func() { n.serve(c) })
	}
}

// serve runs the acceptor's side of the handshake on raw and queues the
// connection for its kind's Accept, or drops it and says why.
func (n *Net) serve(raw net.Conn) {
	tuneTCP(raw)
	// Close ends the handshake by closing the connection under it.
	stop := context.AfterFunc(n.ctx, func() { raw.Close() })
	c, l, peer, err := n.admit(raw)
	if !stop() {
		// Close has begun and closed raw; whatever admit says is moot.
		if err == nil {
			l.release()
		}
		return
	}
	if err != nil {
		raw.Close()
		attrs := []any{"remote", raw.RemoteAddr().String()}
		if peer != "" {
			attrs = append(attrs, "peer", peer)
		}
		n.log.Warn("clusternet: refused a connection", append(attrs, "err", err)...)
		return
	}
	c.SetDeadline(time.Time{})
	n.log.Debug("clusternet: accepted", "remote", raw.RemoteAddr().String(), "peer", peer, "kind", kindName(l.kind))
	l.deliver(c)
}

// admit runs TLS, reads the kind byte and answers it. On success the
// connection holds a place in l's queue; peer is set once the handshake is
// done, even when err is not nil.
func (n *Net) admit(raw net.Conn) (c *tls.Conn, l *kindListener, peer string, err error) {
	// Real time, not Config.Now: the runtime enforces conn deadlines
	// against the real clock.
	raw.SetDeadline(time.Now().Add(n.handshakeTimeout))
	c = tls.Server(raw, n.serverTLS)
	if err := c.Handshake(); err != nil {
		return nil, nil, "", fmt.Errorf("tls handshake: %w", n.explain(err))
	}
	if peer, err = PeerID(c); err != nil {
		return nil, nil, "", err // ServerTLS has checked the identity; cannot happen
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, nil, peer, fmt.Errorf("read kind: %w", n.explain(err))
	}
	kind := b[0]
	st := statusUnknownKind
	if l = n.kinds[kind]; l != nil {
		st = l.reserve()
	}
	if _, err := c.Write([]byte{byte(st)}); err != nil {
		if st == statusOK {
			l.release()
		}
		return nil, nil, peer, fmt.Errorf("answer %s: %w", kindName(kind), n.explain(err))
	}
	if st != statusOK {
		return nil, nil, peer, refusal{st, kind}
	}
	return c, l, peer, nil
}

// explain adds to a handshake error what the bare crypto/tls or net error
// leaves the reader of a log line to guess.
func (n *Net) explain(err error) error {
	var op *net.OpError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("not done within the handshake timeout %v: %w", n.handshakeTimeout, err)
	case errors.As(err, &op) && op.Op == "remote error":
		// All a TLS peer can send is an alert; a Net that refuses our
		// certificate logs the real reason.
		return fmt.Errorf("%w (the peer refused this node's certificate or the handshake; its log says why)", err)
	}
	return err
}

// status is the acceptor's one-byte answer to the kind byte.
type status byte

const (
	statusOK          status = 0
	statusUnknownKind status = 1 // the acceptor has no such kind
	statusBusy        status = 2 // the kind's accept queue is full
	statusClosed      status = 3 // the kind's listener is closed
)

// refusal is an acceptor's answer other than statusOK: the reason it logs
// and the error the dialer's Dial returns.
type refusal struct {
	status status
	kind   byte
}

func (r refusal) Error() string {
	switch r.status {
	case statusUnknownKind:
		return fmt.Sprintf("unknown kind %d", r.kind)
	case statusBusy:
		return fmt.Sprintf("%s connections are not being accepted (%d already wait)", kindName(r.kind), acceptQueue)
	case statusClosed:
		return fmt.Sprintf("%s listener is closed", kindName(r.kind))
	}
	return fmt.Sprintf("unknown answer %d to %s", r.status, kindName(r.kind))
}

// tuneTCP sets the socket options of a cluster connection, dialled or
// accepted. NoDelay (Go's default, set here so it stays so): raft
// heartbeats and acks are small and latency-bound. Keepalive: a pooled
// raft connection to a peer that lost power would otherwise look alive
// until the next write timed out.
func tuneTCP(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetNoDelay(true)
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
}
