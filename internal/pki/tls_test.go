package pki

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// t0 is a fixed issue time; tests pass clocks explicitly rather than reading
// the real one.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA(now)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func mustIssue(t *testing.T, ca *CA, id Identity, now time.Time, validity time.Duration) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(id, now, validity)
	if err != nil {
		t.Fatalf("Issue(%v): %v", id, err)
	}
	return c
}

type handshakeResult struct {
	serverErr, clientErr     error
	serverState, clientState tls.ConnectionState
}

// handshake runs a TLS handshake over net.Pipe and then has the server send
// two bytes, so that a rejection by either side surfaces as an error on
// both: TLS 1.3 clients finish their handshake before the server has
// checked the client certificate.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	sc, cc := net.Pipe()
	srv, cli := tls.Server(sc, server), tls.Client(cc, client)
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := srv.Handshake()
		if err == nil {
			_, err = srv.Write([]byte("ok"))
		}
		res.serverState = srv.ConnectionState()
		res.serverErr = err
		// Closing the pipe, not the tls.Conn: tls.Conn.Close would wait up
		// to 5s for the peer to read its close_notify from the unbuffered
		// pipe.
		sc.Close()
	}()
	err := cli.Handshake()
	if err == nil {
		_, err = io.ReadFull(cli, make([]byte, 2))
	}
	res.clientState = cli.ConnectionState()
	res.clientErr = err
	cc.Close()
	<-done
	return res
}

var (
	edgeID   = Identity{Role: RoleEdge, ID: "fra-1"}
	originID = Identity{Role: RoleOrigin, ID: "o1"}
)

func TestHandshakeEdgeToOrigin(t *testing.T) {
	ca := mustCA(t, t0)
	originCert := mustIssue(t, ca, originID, t0, time.Hour)
	edgeCert := mustIssue(t, ca, edgeID, t0, time.Hour)
	now := fixed(t0.Add(time.Minute))

	res := handshake(t, ServerTLS(ca, originCert, RoleEdge, now), ClientTLS(ca, edgeCert, RoleOrigin, now))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server err %v, client err %v; want both nil", res.serverErr, res.clientErr)
	}
	if got := res.serverState.NegotiatedProtocol; got != ALPN {
		t.Errorf("server ALPN = %q, want %q", got, ALPN)
	}
	if got := res.serverState.Version; got != tls.VersionTLS13 {
		t.Errorf("version = %#x, want TLS 1.3", got)
	}
	if got, err := PeerIdentity(res.serverState); err != nil || got != edgeID {
		t.Errorf("server PeerIdentity = %v, %v; want %v", got, err, edgeID)
	}
	if got, err := PeerIdentity(res.clientState); err != nil || got != originID {
		t.Errorf("client PeerIdentity = %v, %v; want %v", got, err, originID)
	}
}

func TestHandshakeRefused(t *testing.T) {
	ca := mustCA(t, t0)
	other := mustCA(t, t0)
	now := fixed(t0.Add(time.Minute))
	originCert := mustIssue(t, ca, originID, t0, time.Hour)
	edgeCert := mustIssue(t, ca, edgeID, t0, time.Hour)

	// Peers that skip our checks, to reach the other side's ALPN check.
	plainClient := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{edgeCert}}
	plainServer := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{originCert}, ClientAuth: tls.RequireAnyClientCert}

	tests := []struct {
		name           string
		server, client *tls.Config
		// side is the one that must detect the problem; wantErr is part of
		// its error.
		side    string
		wantErr string
	}{
		{
			name:    "client cert from another ca",
			server:  ServerTLS(ca, originCert, RoleEdge, now),
			client:  ClientTLS(ca, mustIssue(t, other, edgeID, t0, time.Hour), RoleOrigin, now),
			side:    "server",
			wantErr: "unknown authority",
		},
		{
			name:    "server cert from another ca",
			server:  ServerTLS(ca, mustIssue(t, other, originID, t0, time.Hour), RoleEdge, now),
			client:  ClientTLS(ca, edgeCert, RoleOrigin, now),
			side:    "client",
			wantErr: "unknown authority",
		},
		{
			name:    "edge presents origin cert",
			server:  ServerTLS(ca, originCert, RoleEdge, now),
			client:  ClientTLS(ca, mustIssue(t, ca, Identity{RoleOrigin, "fra-1"}, t0, time.Hour), RoleOrigin, now),
			side:    "server",
			wantErr: `role "origin", want "edge"`,
		},
		{
			name:    "server presents edge cert",
			server:  ServerTLS(ca, mustIssue(t, ca, Identity{RoleEdge, "o1"}, t0, time.Hour), RoleEdge, now),
			client:  ClientTLS(ca, edgeCert, RoleOrigin, now),
			side:    "client",
			wantErr: `role "edge", want "origin"`,
		},
		{
			name:    "client cert expired",
			server:  ServerTLS(ca, mustIssue(t, ca, originID, t0, 48*time.Hour), RoleEdge, fixed(t0.Add(2*time.Hour))),
			client:  ClientTLS(ca, edgeCert, RoleOrigin, fixed(t0.Add(2*time.Hour))),
			side:    "server",
			wantErr: "expired",
		},
		{
			name:    "server cert expired",
			server:  ServerTLS(ca, originCert, RoleEdge, fixed(t0.Add(2*time.Hour))),
			client:  ClientTLS(ca, mustIssue(t, ca, edgeID, t0, 48*time.Hour), RoleOrigin, fixed(t0.Add(2*time.Hour))),
			side:    "client",
			wantErr: "expired",
		},
		{
			name:    "cert not yet valid",
			server:  ServerTLS(ca, originCert, RoleEdge, fixed(t0.Add(-2*time.Hour))),
			client:  ClientTLS(ca, edgeCert, RoleOrigin, fixed(t0.Add(-2*time.Hour))),
			side:    "client",
			wantErr: "not yet valid",
		},
		{
			name:    "client offers no alpn",
			server:  ServerTLS(ca, originCert, RoleEdge, now),
			client:  plainClient,
			side:    "server",
			wantErr: "ALPN",
		},
		{
			name:    "server selects no alpn",
			server:  plainServer,
			client:  ClientTLS(ca, edgeCert, RoleOrigin, now),
			side:    "client",
			wantErr: "ALPN",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server, tt.client)
			if res.serverErr == nil || res.clientErr == nil {
				t.Fatalf("server err %v, client err %v; want both to fail", res.serverErr, res.clientErr)
			}
			err := res.serverErr
			if tt.side == "client" {
				err = res.clientErr
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s err = %q, want it to contain %q", tt.side, err, tt.wantErr)
			}
		})
	}
}

func TestClientTLSVerifiesWithoutHostname(t *testing.T) {
	// ClientTLS must not depend on ServerName: quic-go sets it to the
	// dialled host, which never matches a URI-only certificate.
	ca := mustCA(t, t0)
	now := fixed(t0)
	client := ClientTLS(ca, mustIssue(t, ca, edgeID, t0, time.Hour), RoleOrigin, now)
	client.ServerName = "203.0.113.7"
	res := handshake(t, ServerTLS(ca, mustIssue(t, ca, originID, t0, time.Hour), RoleEdge, now), client)
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("server err %v, client err %v; want both nil", res.serverErr, res.clientErr)
	}
}

// TestHandshakeInSynctest checks that the injected clock reaches certificate
// verification: inside the bubble the clock starts in 2000 and time.Sleep
// advances it instantly.
func TestHandshakeInSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca := mustCA(t, time.Now())
		originCert := mustIssue(t, ca, originID, time.Now(), time.Hour)
		edgeCert := mustIssue(t, ca, edgeID, time.Now(), time.Hour)
		server := ServerTLS(ca, originCert, RoleEdge, time.Now)
		client := ClientTLS(ca, edgeCert, RoleOrigin, time.Now)

		if res := handshake(t, server, client); res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("fresh: server err %v, client err %v; want both nil", res.serverErr, res.clientErr)
		}
		time.Sleep(2 * time.Hour)
		res := handshake(t, server, client)
		if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), "expired") {
			t.Errorf("after expiry: client err = %v, want certificate expired", res.clientErr)
		}
	})
}

func TestPeerIdentityIncomplete(t *testing.T) {
	if _, err := PeerIdentity(tls.ConnectionState{}); err == nil {
		t.Error("PeerIdentity(zero state) = nil error, want error")
	}
}
