package pki

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ALPN is the only application protocol nodes speak to each other over QUIC.
const ALPN = "geocdn/1"

// uriScheme is the scheme of every node identity URI.
const uriScheme = "geocdn"

// maxIDLen bounds a node id; it appears in file names, URIs and log lines.
const maxIDLen = 64

// Role is what a node does in the cluster. It is part of the node's
// certificate, so an edge cannot pass itself off as an origin.
type Role string

const (
	RoleOrigin Role = "origin"
	RoleEdge   Role = "edge"
)

// valid reports whether r is one of the defined roles.
func (r Role) valid() bool { return r == RoleOrigin || r == RoleEdge }

// Identity names a node: its role and its id. A certificate carries it as
// its single URI SAN, geocdn://<role>/<id>.
type Identity struct {
	Role Role
	ID   string
}

// URI returns the URI SAN form of i, geocdn://<role>/<id>.
func (i Identity) URI() *url.URL {
	return &url.URL{Scheme: uriScheme, Host: string(i.Role), Path: "/" + i.ID}
}

// String returns the URI SAN form of i, which is also how logs name a node.
func (i Identity) String() string { return i.URI().String() }

// validate reports why i could not be put in a certificate.
func (i Identity) validate() error {
	if !i.Role.valid() {
		return fmt.Errorf("pki: unknown role %q (want %q or %q)", i.Role, RoleOrigin, RoleEdge)
	}
	return ValidID(i.ID)
}

// ValidID reports whether id can name a node: 1 to 64 bytes of
// [A-Za-z0-9._-], and not "." or "..". The dot ids are refused because they
// are dot segments in the identity URI, which URI normalisation removes, and
// because a node id also becomes part of file names.
func ValidID(id string) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// checkID is ValidID without the package prefix, for callers that add their
// own context.
func checkID(id string) error {
	if id == "" {
		return errors.New("empty node id")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("node id is %d bytes, longer than %d", len(id), maxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("node id %q is a dot segment", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("node id %q has %q at byte %d (allowed: A-Z a-z 0-9 . _ -)", id, c, i)
		}
	}
	return nil
}

// ParseIdentity reads an identity from a certificate's URI SAN. It is strict:
// anything but exactly geocdn://origin/<id> or geocdn://edge/<id> with a
// valid id (no port, user, query, fragment, escapes or extra segments) is
// refused, so one identity has exactly one spelling.
func ParseIdentity(u *url.URL) (Identity, error) {
	if u == nil {
		return Identity{}, errors.New("pki: no identity URI")
	}
	if u.Scheme != uriScheme {
		return Identity{}, fmt.Errorf("pki: identity URI %q: scheme is not %q", u.Redacted(), uriScheme)
	}
	if u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawPath != "" {
		return Identity{}, fmt.Errorf("pki: identity URI %q: only geocdn://<role>/<id> is allowed", u.Redacted())
	}
	role := Role(u.Host)
	if !role.valid() {
		return Identity{}, fmt.Errorf("pki: identity URI %q: role %q is not %q or %q", u.Redacted(), u.Host, RoleOrigin, RoleEdge)
	}
	id, ok := strings.CutPrefix(u.Path, "/")
	if !ok || strings.Contains(id, "/") {
		return Identity{}, fmt.Errorf("pki: identity URI %q: path must be one segment, /<id>", u.Redacted())
	}
	if err := checkID(id); err != nil {
		return Identity{}, fmt.Errorf("pki: identity URI %q: %w", u.Redacted(), err)
	}
	ident := Identity{Role: role, ID: id}
	// The field checks above cover what url.URL can hold today; comparing
	// with the canonical spelling also catches anything it grows later.
	if got, want := u.String(), ident.String(); got != want {
		return Identity{}, fmt.Errorf("pki: identity URI %q is not in canonical form %q", got, want)
	}
	return ident, nil
}
