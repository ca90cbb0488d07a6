// Package router sends each client to its nearest healthy edge: it places
// the client with a GeoIP2 City database (internal/geoip), ranks the
// routable edges by the shared latency model (internal/geo), prefers among
// the equivalent ones those holding the object under the plan in force
// (followed from the origin's GET /v1/placement), and spreads the rest by
// rendezvous hashing on the key, so each object stays hot in few caches.
// It learns edges from the origin's GET /v1/edges and probes each edge's
// /healthz itself.
//
// The decision logic (Table, Router.Decide) does not depend on HTTP: the
// HTTP front end answers GET /{key} with a 302 to the chosen edge and GET
// /v1/route with the decision as JSON, and the DNS front end (dns.go,
// Config.DNSAddr) answers A and AAAA queries for the CDN's names with the
// chosen edge's addresses, placing the client by its EDNS Client Subnet
// when the query carries one.
//
// Key invariant: a decision only ever names an edge that the origin last
// reported up and whose last /healthz probe succeeded; with none, Decide
// returns ErrNoEdge (503), never a guess.
//
// Time: membership fetches and probes run on the injected clock
// (Config.Clock); decisions read no clock at all.
package router
