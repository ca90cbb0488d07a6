// Package pki provides the cluster certificate authority and the mutual TLS
// configurations that origin and edge nodes use on their QUIC connections
// (ALPN "geocdn/1").
//
// A node's identity is the single URI SAN geocdn://<role>/<id> in a
// certificate issued by the cluster CA. Invariant: a handshake under
// ServerTLS or ClientTLS completes only when the peer's certificate chains
// to the cluster CA at the configured time and names exactly one identity
// of the expected role; host names and IP addresses are never consulted.
package pki
