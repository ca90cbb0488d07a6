// Package httpcache implements the caching rules of an HTTP shared cache
// (RFC 9111), with the stale-while-revalidate and stale-if-error extensions
// (RFC 5861) and the Cache-Status response header field (RFC 9211).
//
// The package is pure logic: it stores nothing, performs no I/O and never
// reads the clock. Every function that depends on time takes the current
// time as an argument, so a caller (and its tests) controls it completely.
//
// # Model
//
// A response goes through four steps.
//
// Storing. [Storable] decides whether a response to a request may be stored
// at all (RFC 9111 §3). Only responses to GET are stored; HEAD responses
// are not (a cache may serve HEAD from a stored GET response). Partial
// content (206) and 304 responses are never stored. A response whose
// private directive names header fields is storable, but those fields must
// be removed first: store [StorableHeader] of the response header, which
// also drops hop-by-hop fields ([RemoveHopByHop]). A response without a
// Date field must be given one ([EnsureDate], RFC 9110 §6.6.1) before it is
// stored, because freshness and age are computed from it. The caller
// records when the request was sent and the response received ([Times]).
//
// Serving. For each request that matches a stored response's URI, the
// caller calls [Evaluate], which computes the response's age
// ([CurrentAge], §4.2.3) and freshness lifetime ([FreshnessLifetime],
// §4.2.1) and decides, as a [Decision], whether to serve it as is, serve it
// stale while revalidating in the background, revalidate it first, answer
// 504 to an only-if-cached request, or forward the request as if nothing
// were stored. Responses that vary ([VaryKey], §4.1) are selected by the
// caller with a secondary key; Evaluate checks the selection again.
//
// Revalidating. [ConditionalHeaders] gives the validators to send (§4.3.1).
// When the origin answers 304, [ValidatorsMatch] tells whether the 304
// applies to the stored response (§4.3.4) and [Freshen] merges its header
// fields into the stored ones (§3.2); the caller then replaces the stored
// Times with those of the revalidation exchange. When revalidation fails
// (5xx or no answer), [StaleIfErrorAllowed] tells whether the stale
// response may be served instead (RFC 5861 §4).
//
// Invalidating. A successful unsafe request invalidates the stored
// responses listed by [InvalidatedURLs] (§4.4).
//
// [CacheStatus] formats the Cache-Status member a cache adds to each
// response it handles (RFC 9211).
//
// # Choices
//
// Where RFC 9111 leaves a choice, this package makes the conservative one
// for a shared cache:
//
//   - A qualified no-cache (no-cache="Set-Cookie") is treated as an
//     unqualified one: the response is revalidated on every use (§5.2.2.4
//     allows this).
//   - A qualified private (private="Set-Cookie") lets the response be
//     stored without the named fields (§5.2.2.7); an unqualified private,
//     or one with an empty list, prevents storing.
//   - A repeated or malformed delta-seconds directive counts as zero, which
//     makes a response stale (§4.2.1). Values above 2^31 seconds are
//     clamped to [MaxDelta] (§1.2.2).
//   - Spaces around "=" in Cache-Control are tolerated, as browsers do.
//   - s-maxage carries the semantics of proxy-revalidate (§5.2.2.10), so by
//     default a response with s-maxage is never served stale, not even with
//     stale-while-revalidate or stale-if-error. [Options] can relax this.
//   - Request directives that force revalidation (no-cache, max-age,
//     min-fresh, Pragma: no-cache) and max-stale are ignored unless
//     [Options.HonorClientNoCache] is set, as most CDNs do. only-if-cached
//     and the request stale-if-error are always honored: they never send
//     more traffic to the origin.
package httpcache
