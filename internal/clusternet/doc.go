// Package clusternet is the network between origin nodes: one TCP port per
// node carrying every kind of origin-to-origin traffic (raft RPCs, blob
// streams, forwarded admin HTTP requests), each connection mutually
// authenticated with TLS 1.3 by the cluster CA. Nothing is ever sent in
// plaintext.
//
// # One port, several kinds
//
// New starts accepting on the listener it is given. After the TLS
// handshake the dialer sends one byte, the kind of the connection
// (KindRaft, KindBlob, KindHTTP), and the acceptor answers with one status
// byte before either side sends anything else:
//
//	dialer                         acceptor
//	TLS 1.3 handshake, ALPN geocdn/1, both certificates checked
//	kind (1 byte)          ->
//	                       <-      status (1 byte): 0 accepted, 1 unknown
//	                               kind, 2 queue full, 3 not accepting
//	application bytes, either way
//
// The answer exists because a TLS 1.3 client finishes its handshake before
// the server has checked the client's certificate: without it, Dial would
// return a connection that the acceptor is about to drop, and the TLS alert
// saying why (unknown CA, expired certificate) would surface only at the
// first Read. With it, Dial returns that alert as its error.
//
// An accepted connection waits in a bounded queue for Accept on the
// listener of its kind (Net.Listener); while the queue is full, new
// connections of that kind are refused rather than piling up.
// Net.StreamLayer adapts the raft kind to raft.NewNetworkTransport.
//
// # Identity
//
// A node's identity is the single URI SAN geocdn://origin/<id> of its
// certificate, issued by the cluster CA (package pki). New refuses a
// certificate that does not name this node's id as an origin, does not
// chain to the CA, or is not valid now. Both ends of every connection
// check that the peer's certificate chains to the CA, is valid now and
// names an origin; Dial can also insist on one origin id, which the
// dialing side checks inside the handshake, so the acceptor sees the
// refusal too. Addresses and host names are never trusted. PeerID reads
// the verified peer id from a connection of either side.
//
// # Logging
//
// Every refused connection is logged at Warn on the side that refuses it
// (the remote address, the peer's id once known, and the reason), and, when
// the other side is a Net, on that side too: a failed Dial logs its error
// at Warn as well as returning it. A dialer that refuses the acceptor's
// certificate can only say so with a TLS alert ("bad certificate"), so the
// acceptor's line names the alert and points at the dialer's log for the
// reason. Failures to reach a peer at all (connection refused, no route)
// are the caller's business and are logged at Debug only, as are
// successful connections.
package clusternet
