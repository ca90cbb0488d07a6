package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ServerTLS returns the TLS configuration of a node that accepts
// connections from nodes of role accept: TLS 1.3 only, ALPN geocdn/1, and a
// client certificate issued by ca whose identity has role accept. now, if
// not nil, replaces the real clock for certificate validity checks (tests
// under testing/synctest pass time.Now, which the bubble fakes).
//
// The peer's IP address is deliberately not checked: nodes move and sit
// behind NAT; the certificate's identity is what counts, and the caller
// checks its ID against the one the peer announces.
func ServerTLS(ca *CA, cert tls.Certificate, accept Role, now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool,
		Time:         now,
		// crypto/tls has already verified the chain (also on resumption);
		// verifying again here is cheap and keeps one code path for both
		// sides. The role check is ours alone.
		VerifyConnection: verifyPeer(ca, x509.ExtKeyUsageClientAuth, accept, now),
	}
}

// ClientTLS returns the TLS configuration of a node that dials a node of
// role expect: TLS 1.3 only, ALPN geocdn/1, presenting cert, and requiring
// a server certificate issued by ca whose identity has role expect.
//
// Nodes are named by the URI SAN in their certificates, not by host name or
// IP address, and crypto/tls's built-in verification insists on matching
// one of those (quic-go even fills in ServerName from the dialled address).
// So the built-in check is switched off with InsecureSkipVerify and replaced
// by VerifyConnection, which performs the full chain verification against
// ca.Pool (server-auth usage, at the configured time) and then checks the
// role. Never use InsecureSkipVerify without such a replacement.
func ClientTLS(ca *CA, cert tls.Certificate, expect Role, now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{ALPN},
		// Always present cert, even when the server's list of acceptable
		// CAs does not include its issuer (crypto/tls would then send none):
		// the server's "signed by unknown authority" says what is wrong;
		// "client didn't provide a certificate" does not.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
		RootCAs:            ca.Pool,
		Time:               now,
		InsecureSkipVerify: true,
		VerifyConnection:   verifyPeer(ca, x509.ExtKeyUsageServerAuth, expect, now),
	}
}

// verifyPeer returns a VerifyConnection callback that accepts only a peer
// speaking ALPN whose certificate chains to ca for usage and names an
// identity of role want. crypto/tls calls it on every handshake, resumed
// ones included, and whatever InsecureSkipVerify says.
func verifyPeer(ca *CA, usage x509.ExtKeyUsage, want Role, now func() time.Time) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		// crypto/tls lets a handshake complete without ALPN when the peer
		// offers none; a node that does not speak geocdn/1 is not a node.
		if cs.NegotiatedProtocol != ALPN {
			return fmt.Errorf("pki: peer did not negotiate ALPN %q", ALPN)
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("pki: peer sent no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         ca.Pool,
			Intermediates: x509.NewCertPool(),
			KeyUsages:     []x509.ExtKeyUsage{usage},
		}
		if now != nil {
			opts.CurrentTime = now()
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("pki: peer certificate: %w", err)
		}
		id, err := identityOf(leaf)
		if err != nil {
			return err
		}
		if id.Role != want {
			return fmt.Errorf("pki: peer %s has role %q, want %q", id, id.Role, want)
		}
		return nil
	}
}

// PeerIdentity returns the identity in the peer's certificate. cs must come
// from a completed handshake under ServerTLS or ClientTLS: the server side
// reads the verified chain; the client side has none (InsecureSkipVerify
// leaves VerifiedChains empty) and reads the leaf that ClientTLS's
// VerifyConnection verified before the handshake could complete.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, errors.New("pki: handshake not complete")
	}
	var leaf *x509.Certificate
	switch {
	case len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0:
		leaf = cs.VerifiedChains[0][0]
	case len(cs.PeerCertificates) > 0:
		leaf = cs.PeerCertificates[0]
	default:
		return Identity{}, errors.New("pki: peer sent no certificate")
	}
	return identityOf(leaf)
}

// identityOf reads the identity from a certificate, which must carry
// exactly one URI SAN so that a node has exactly one identity.
func identityOf(c *x509.Certificate) (Identity, error) {
	if c == nil {
		return Identity{}, errors.New("pki: no certificate")
	}
	if len(c.URIs) != 1 {
		return Identity{}, fmt.Errorf("pki: certificate %q has %d URI SANs, want exactly 1", c.Subject.CommonName, len(c.URIs))
	}
	return ParseIdentity(c.URIs[0])
}
