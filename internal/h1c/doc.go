// Package h1c is a minimal keep-alive HTTP/1.1 client, for generating
// load: the client must not be what limits the rate a server is
// measured at.
//
// Compared with net/http's Transport, a request does its I/O on the
// calling goroutine (no reader and writer goroutines to hand it over
// to), writes its head with one write, builds no header maps and,
// once the connections are open, allocates nothing: the Response is the
// caller's, to reuse, and its header values are views of the
// connection's buffer.
//
// The key invariant is that a connection is reused only when the
// previous exchange on it ended cleanly: the body was read to its end,
// nothing followed it, the server allowed keep-alive and no error was
// seen. Anything else closes it. Responses are parsed strictly, and one
// the client cannot frame unambiguously is an error wrapping
// ErrMalformed.
//
// Not supported: request bodies, TLS, proxies, HTTP/2, compression,
// redirects (3xx answers are returned as they are), pipelining.
package h1c
