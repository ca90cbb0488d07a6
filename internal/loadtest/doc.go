// Package loadtest is `geocdn loadtest`: it runs a scenario (a YAML file,
// see ParseScenario) against a cluster and reports what its clients saw.
//
// A run draws virtual clients from demand points by region, gives each an
// address the router's GeoIP database places at its city, and sends reads
// on an open-loop schedule (or from a closed loop of clients) through the
// router or straight to an edge, with publishes, purges and fault events
// beside them. Every answer is verified: bodies against their ETag, byte
// ranges against the bytes published, versions against strong publishes
// already acknowledged. A Recorder keeps HDR histograms per region and
// operation and a per-second timeline; the Report is text, JSON (a stable
// schema) or one self-contained HTML page.
//
// Key invariants: latency counts from when a request was meant to start,
// never from when it was sent, so a stalled target cannot hide its queue;
// every load loop ends by itself, at the run's duration, and a cancelled
// context ends it early with the report of what ran.
package loadtest
