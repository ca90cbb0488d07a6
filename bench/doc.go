// Package bench holds geocdn's benchmarks that need a whole cluster or a
// comparison with other software: BenchmarkPush (push replication against a
// raw quic-go stream) lives here, the HTTP hit benchmark is driven by
// run.sh. See README.md; `make bench` runs everything.
package bench
