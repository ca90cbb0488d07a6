package tlscert

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// loadPair reads and checks one pair. Every error names the file at fault
// and why, since it ends up in an operator's log.
func loadPair(p Pair, now time.Time) (*tls.Certificate, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil, fmt.Errorf("tlscert: pair %q, %q: certificate and key file must both be named", p.CertFile, p.KeyFile)
	}
	// The *PathErrors from ReadFile name the file.
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlscert: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlscert: read key: %w", err)
	}
	if err := checkCertPEM(certPEM); err != nil {
		return nil, fmt.Errorf("tlscert: %s: %w", p.CertFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Its errors say which input is wrong ("private key does not
		// match public key", "failed to find any PEM data in key input").
		return nil, fmt.Errorf("tlscert: certificate %s with key %s: %w", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		// X509KeyPair fills Leaf since Go 1.23 unless GODEBUG
		// x509keypairleaf=0; the SAN index needs it either way.
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlscert: %s: %w", p.CertFile, err)
		}
	}
	// Clients would refuse these; catching them here keeps the previous,
	// working certificate in service instead.
	if now.Before(cert.Leaf.NotBefore) {
		return nil, fmt.Errorf("tlscert: %s: certificate not valid before %s (now %s)",
			p.CertFile, cert.Leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("tlscert: %s: certificate expired at %s (now %s)",
			p.CertFile, cert.Leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// checkCertPEM catches what tls.X509KeyPair lets through: it stops quietly
// at the first block that does not decode, so a chain file caught half
// written would load as a leaf without its intermediates, which some
// clients then reject.
func checkCertPEM(data []byte) error {
	var certs, blocks int
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks++
		if b.Type == "CERTIFICATE" {
			certs++
		}
	}
	if certs == 0 {
		return errors.New("no PEM CERTIFICATE block")
	}
	if begun := bytes.Count(data, []byte("-----BEGIN ")); begun > blocks {
		return fmt.Errorf("%d of %d PEM blocks are truncated or malformed", begun-blocks, begun)
	}
	return nil
}

// fileStamp is what Watch compares to notice that a file changed. It is
// comparable with ==.
type fileStamp struct {
	missing bool // stat failed
	mtime   int64
	size    int64
	// dev and ino tell a renamed-over file from the old one even when
	// size and mtime (coarse on some file systems) agree; zero where the
	// platform has no inodes.
	dev, ino uint64
}

type pairStamp struct{ cert, key fileStamp }

func stampPair(p Pair) pairStamp {
	return pairStamp{cert: stampFile(p.CertFile), key: stampFile(p.KeyFile)}
}

// stampFile stats path, following symbolic links, so that a link swapped to
// a new target (as Kubernetes does with mounted secrets) counts as a change.
func stampFile(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	dev, ino := fileID(fi)
	return fileStamp{mtime: fi.ModTime().UnixNano(), size: fi.Size(), dev: dev, ino: ino}
}
