package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// IssueWeb issues a TLS server certificate for hosts (DNS names, a leading
// "*." wildcard label allowed, and IP addresses: say "localhost",
// "127.0.0.1", "::1"), signed by ca, valid from an hour before now for
// validity, for server authentication only, with an ECDSA P-256 key like
// the node certificates.
//
// It is for the development cluster's client-facing HTTPS and HTTP/3
// listeners: browsers and curl trust it when told to trust the CA, as in
// curl --cacert <ca dir>/ca.crt (CACertFile). That is a development
// convenience only: whoever trusts ca.crt trusts the holder of ca.key for
// every host name, since the CA carries no name constraints; production
// listeners use certificates from a public CA.
//
// Unlike Issue's node certificates it has no URI SAN, so it never carries a
// node identity: ServerTLS and ClientTLS reject it as a node certificate,
// and LoadCertificate refuses it.
func (ca *CA) IssueWeb(hosts []string, now time.Time, validity time.Duration) (tls.Certificate, error) {
	if ca.Key == nil {
		return tls.Certificate{}, errors.New("pki: ca has no private key; issuing needs " + CAKeyFile)
	}
	dnsNames, ips, err := splitHosts(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue("web host "+strings.Join(hosts, ", "), now, validity, func(c *x509.Certificate) {
		// Clients read only the SANs; the common name is for people
		// looking at the certificate in a browser or openssl.
		c.Subject = pkix.Name{CommonName: hosts[0]}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames, c.IPAddresses = dnsNames, ips
	})
}

// LoopbackHosts are this machine's own names: what a certificate for a
// listener on loopback covers.
var LoopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// Loopback makes a throwaway CA and a web certificate it issued for
// LoopbackHosts, valid for validity from now, and returns the certificate
// with a pool that trusts the CA: for tests and tools that serve HTTPS on
// loopback.
func Loopback(validity time.Duration) (tls.Certificate, *x509.CertPool, error) {
	now := time.Now()
	ca, err := NewCA(now)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert, err := ca.IssueWeb(LoopbackHosts, now, validity)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, ca.Pool, nil
}

// IssueWebFiles issues a web certificate with ca.IssueWeb and writes it to
// outDir/web-<name>.crt and outDir/web-<name>.key (PKCS #8, mode 0600),
// creating outDir with mode 0700 if missing. As with IssueFiles, existing
// files of those names are replaced, each atomically, so re-running it
// renews the certificate and a listener watching the files never reads a
// half-written one. name follows the rules of a node id (ValidID) because it
// becomes part of the file names.
func IssueWebFiles(ca *CA, name string, hosts []string, outDir string, now time.Time, validity time.Duration) (certPath, keyPath string, err error) {
	if ca == nil {
		return "", "", errors.New("pki: no ca to issue the web certificate")
	}
	if outDir == "" {
		return "", "", errors.New("pki: no output directory for the web certificate")
	}
	if err := checkWebName(name); err != nil {
		return "", "", err
	}
	cert, err := ca.IssueWeb(hosts, now, validity)
	if err != nil {
		return "", "", err
	}
	keyPEM, err := encodeKey(cert.PrivateKey.(crypto.Signer))
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return "", "", fmt.Errorf("pki: create certificate directory: %w", err)
	}
	base := filepath.Join(outDir, "web-"+name)
	certPath, keyPath = base+".crt", base+".key"
	// Key first, as in IssueFiles: a reader that sees the new certificate
	// then finds its key already in place.
	if err := replaceFile(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := replaceFile(certPath, encodeCert(cert.Leaf), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// checkWebName reports why name cannot name a web certificate's files.
func checkWebName(name string) error {
	if err := checkID(name); err != nil {
		// checkID speaks of node ids; the rule is the same, the thing is
		// not.
		return fmt.Errorf("pki: web certificate name %q: not a valid file name part (1-%d bytes of A-Z a-z 0-9 . _ -, not . or ..)", name, maxIDLen)
	}
	return nil
}

// splitHosts sorts hosts into DNS names and IP addresses, refusing what a
// client could never match: an empty host, a zone, a port or URL, or a
// malformed name.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("pki: web certificate needs at least one host name or IP address")
	}
	for _, h := range hosts {
		if ip, perr := netip.ParseAddr(h); perr == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("pki: web host %q: an IP address in a certificate cannot have a zone", h)
			}
			ips = append(ips, net.IP(ip.Unmap().AsSlice()))
			continue
		}
		if err := checkHostname(h); err != nil {
			return nil, nil, fmt.Errorf("pki: web host %q: %w", h, err)
		}
		dnsNames = append(dnsNames, strings.ToLower(h))
	}
	return dnsNames, ips, nil
}

// checkHostname accepts a DNS name of letters, digits, hyphens and
// underscores in dot-separated labels of at most 63 bytes, at most 253
// bytes in all, whose first label may be the wildcard "*".
func checkHostname(h string) error {
	if h == "" {
		return errors.New("empty host name")
	}
	if len(h) > 253 {
		return fmt.Errorf("host name is %d bytes, longer than 253", len(h))
	}
	for i, label := range strings.Split(h, ".") {
		if label == "*" && i == 0 && strings.Contains(h, ".") {
			continue
		}
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %d is %d bytes; want 1 to 63 (no leading, trailing or double dots)", i+1, len(label))
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return fmt.Errorf("%q is not allowed in a host name (want a DNS name or an IP address without brackets or port)", c)
			}
		}
	}
	return nil
}
