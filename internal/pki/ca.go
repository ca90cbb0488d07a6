package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// File names inside a CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

const (
	// CAValidity is how long a new cluster CA is valid. Rotating a CA means
	// re-issuing every node certificate, so it is long.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultLeafValidity is the validity IssueFiles gives node certificates.
	DefaultLeafValidity = 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so a node whose clock is a
	// little behind the issuer's still accepts a fresh certificate.
	backdate = time.Hour
)

// CA is the cluster certificate authority. Every node trusts Pool; only a
// node that issues certificates (the CLI, or a dev node) has Key.
type CA struct {
	Cert *x509.Certificate
	// Key signs node certificates; nil when only the certificate was loaded.
	Key  crypto.Signer
	Pool *x509.CertPool
}

// NewCA makes a CA in memory, for tests and for InitCA. now is passed in
// rather than read so that tests running under testing/synctest, whose clock
// starts in 2000, get a CA valid at their time.
func NewCA(now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate ca key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// The serial in the name tells CAs of different clusters apart in
		// error messages ("signed by unknown authority ...").
		Subject:               pkix.Name{CommonName: "geocdn cluster ca " + serial.Text(16)[:8]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Node certificates are signed directly by the CA; no intermediates.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse ca certificate: %w", err)
	}
	return newCA(cert, key), nil
}

func newCA(cert *x509.Certificate, key crypto.Signer) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool}
}

// InitCA creates a new CA in dir (created with mode 0700 if missing):
// dir/ca.crt and dir/ca.key (PKCS #8, mode 0600). It refuses to overwrite an
// existing CA, since that would orphan every certificate it issued.
func InitCA(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: create ca directory: %w", err)
	}
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("pki: %s already exists; refusing to overwrite the ca", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: %w", err)
		}
	}
	ca, err := NewCA(now)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return err
	}
	// O_EXCL closes the race with a concurrent InitCA that the Lstat
	// check above leaves open. The key is written first so that a CA
	// certificate never exists without its key.
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, encodeCert(ca.Cert), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// LoadCA reads dir/ca.crt and, if present, dir/ca.key. Nodes normally have
// only the certificate; the key is needed only to issue certificates.
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %w", err)
	}
	cert, err := decodeCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %s: %w", certPath, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("pki: load ca: %s: not a ca certificate", certPath)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("pki: load ca: %s: not a self-signed root: %w", certPath, err)
	}

	keyPath := filepath.Join(dir, CAKeyFile)
	keyPEM, err := readKeyFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return newCA(cert, nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %w", err)
	}
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load ca: %s: %w", keyPath, err)
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("pki: load ca: %s does not match %s", keyPath, certPath)
	}
	return newCA(cert, key), nil
}

// Issue makes a node certificate for id, signed by ca, valid from an hour
// before now (to tolerate clock skew) for validity. Its only name is the URI
// SAN id.URI(); it is good for both client and server authentication because
// a node both dials and accepts.
func (ca *CA) Issue(id Identity, now time.Time, validity time.Duration) (tls.Certificate, error) {
	if err := id.validate(); err != nil {
		return tls.Certificate{}, err
	}
	return ca.issue(id.String(), now, validity, func(c *x509.Certificate) {
		c.Subject = pkix.Name{CommonName: id.String()}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		c.URIs = []*url.URL{id.URI()}
	})
}

// issue signs a leaf certificate for a new ECDSA P-256 key, valid from
// now (backdated) for validity and never past the CA; shape sets what
// differs between kinds of leaf (subject, key usages, names). what names
// the certificate in errors.
func (ca *CA) issue(what string, now time.Time, validity time.Duration, shape func(*x509.Certificate)) (tls.Certificate, error) {
	if ca.Key == nil {
		return tls.Certificate{}, errors.New("pki: ca has no private key; issuing needs " + CAKeyFile)
	}
	if validity <= 0 {
		return tls.Certificate{}, fmt.Errorf("pki: certificate validity %v is not positive", validity)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		// A leaf outliving its CA would fail verification at an odd,
		// unannounced moment; better to say so now.
		return tls.Certificate{}, fmt.Errorf("pki: certificate would expire %s, after the ca (%s)",
			notAfter.UTC().Format(time.RFC3339), ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	shape(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create certificate for %s: %w", what, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: parse certificate for %s: %w", what, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueFiles loads the CA (with its key) from caDir, issues a certificate
// for id valid for DefaultLeafValidity, and writes it to
// outDir/<role>-<id>.crt and outDir/<role>-<id>.key (PKCS #8, mode 0600),
// creating outDir with mode 0700 if missing. Existing files of those names
// are replaced, each atomically, so re-running it renews a node's
// certificate.
func IssueFiles(caDir string, id Identity, outDir string, now time.Time) (certPath, keyPath string, err error) {
	if outDir == "" {
		return "", "", errors.New("pki: no output directory for the certificate")
	}
	if err := id.validate(); err != nil {
		return "", "", err
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		return "", "", err
	}
	cert, err := ca.Issue(id, now, DefaultLeafValidity)
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
	base := filepath.Join(outDir, string(id.Role)+"-"+id.ID)
	certPath, keyPath = base+".crt", base+".key"
	if err := replaceFile(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := replaceFile(certPath, encodeCert(cert.Leaf), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// LoadCertificate reads a node's PEM certificate and PKCS #8 key. It refuses
// a key file that other users can read, as ssh does, because the key is the
// node's identity.
func LoadCertificate(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load certificate: %w", err)
	}
	keyPEM, err := readKeyFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		// X509KeyPair fills Leaf unless GODEBUG x509keypairleaf=0.
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("pki: load certificate %s: %w", certFile, err)
		}
	}
	if _, err := identityOf(cert.Leaf); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: load certificate %s: %w", certFile, err)
	}
	return cert, nil
}

// readKeyFile reads a private key file, refusing one that group or others
// may access.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %#o lets other users read the private key; chmod 600 it", path, perm)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return buf.Bytes(), nil
}

func randomSerial() (*big.Int, error) {
	// 128 random bits: unique without coordination between issuers.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func decodeCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY (PKCS #8) block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// writeNew creates path with data, failing if it exists.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pki: %s already exists; refusing to overwrite the ca", path)
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeSyncClose(f, data); err != nil {
		os.Remove(path)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}

// replaceFile writes data to a temporary file next to path and renames it
// over path, so a reader never sees a half-written key or certificate and an
// existing file's looser mode is not inherited.
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmp := f.Name()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := writeSyncClose(f, data); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func writeSyncClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
