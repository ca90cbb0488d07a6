package edge

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

// metrics are the edge's Prometheus instruments, registered on a registry
// the caller owns so that several edges can run in one process (tests, the
// dev cluster). Every method is safe on a nil *metrics, which records
// nothing.
type metrics struct {
	hits           prometheus.Counter
	misses         prometheus.Counter
	servedBytes    prometheus.Counter
	fills          *prometheus.CounterVec
	fillsFrom      *prometheus.CounterVec
	fillBytes      prometheus.Counter
	fillDuration   prometheus.Histogram
	pushes         *prometheus.CounterVec
	purgedVersions prometheus.Counter
	watermark      prometheus.Gauge
	logLag         prometheus.Gauge
	resyncs        *prometheus.CounterVec
	resyncDiffs    *prometheus.CounterVec
	resyncBytes    prometheus.Counter
	resyncSeconds  prometheus.Gauge
	// scrubCorrupt counts blobs found corrupt and quarantined, by what
	// found them.
	scrubCorrupt *prometheus.CounterVec
}

// newMetrics registers the edge's instruments on reg.
func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_hits_total",
			Help: "Object requests answered from the local store.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_misses_total",
			Help: "Object requests answered after a fill from the origin.",
		}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_served_bytes_total",
			Help: "Body bytes of object responses (the Content-Length of 200 and 206 answers).",
		}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_fills_total",
			Help: "Fills from the origin by result: ok, not_found, error.",
		}, []string{"result"}),
		fillsFrom: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_fill_requests_total",
			Help: "Fill requests by where they went: follower (answered by the follower the edge fills from), follower_declined (left to the leader), leader.",
		}, []string{"to"}),
		fillBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_fill_bytes_total",
			Help: "Content bytes stored by successful fills.",
		}),
		fillDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "geocdn_edge_fill_duration_seconds",
			Help:    "Time to fill one object from the origin, whatever the result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1 ms to 16 s
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_pushes_total",
			Help: "Pushes offered by the origin by result: stored, have, bad_digest, disk_full, failed.",
		}, []string{"result"}),
		purgedVersions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_purged_total",
			Help: "Object versions evicted or marked stale by purges.",
		}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "geocdn_edge_watermark",
			Help: "Highest log sequence number the edge has applied.",
		}),
		logLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "geocdn_edge_log_lag",
			Help: "The origin's last reported LSN minus the edge's watermark.",
		}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_resyncs_total",
			Help: "Anti-entropy resyncs and snapshot catch-ups by outcome: in_sync, repaired, failed.",
		}, []string{"outcome"}),
		resyncDiffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_resync_differences_total",
			Help: "Differences resyncs found, by kind: missing, stale, extra, metadata, corrupt.",
		}, []string{"kind"}),
		resyncBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_edge_resync_bytes_total",
			Help: "Bytes resyncs exchanged with the origin, content aside.",
		}),
		resyncSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "geocdn_edge_last_resync_seconds",
			Help: "How long the latest resync took.",
		}),
		scrubCorrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_edge_scrub_corrupt_blobs_total",
			Help: "Stored blobs found not matching their digest and quarantined (filled again from the origin when next wanted), " +
				"by what found them: scrub (the background scrubber) or read (a read from disk into the hot tier).",
		}, []string{"by"}),
	}
	// Create the label values up front so dashboards see zeros, not gaps.
	for _, r := range []string{"ok", "not_found", "error"} {
		m.fills.WithLabelValues(r)
	}
	for _, r := range []string{"follower", "follower_declined", "leader"} {
		m.fillsFrom.WithLabelValues(r)
	}
	for _, r := range []string{"stored", "have", "bad_digest", "disk_full", "failed"} {
		m.pushes.WithLabelValues(r)
	}
	for _, r := range []string{"in_sync", "repaired", "failed"} {
		m.resyncs.WithLabelValues(r)
	}
	for _, r := range []string{"scrub", "read"} {
		m.scrubCorrupt.WithLabelValues(r)
	}
	reg.MustRegister(m.hits, m.misses, m.servedBytes, m.fills, m.fillsFrom, m.fillBytes,
		m.fillDuration, m.pushes, m.purgedVersions, m.watermark, m.logLag,
		m.resyncs, m.resyncDiffs, m.resyncBytes, m.resyncSeconds, m.scrubCorrupt)
	return m
}

// resyncDone records a resync's report.
func (m *metrics) resyncDone(r *wire.ResyncReport) {
	if m == nil {
		return
	}
	diffs := r.Missing + r.Stale + r.Extra + r.Metadata + r.Corrupt
	switch {
	case r.Error != "" || r.Failed > 0:
		m.resyncs.WithLabelValues("failed").Inc()
	case diffs > 0 || r.Snapshot:
		m.resyncs.WithLabelValues("repaired").Inc()
	default:
		m.resyncs.WithLabelValues("in_sync").Inc()
	}
	for kind, n := range map[string]uint64{"missing": r.Missing, "stale": r.Stale, "extra": r.Extra, "metadata": r.Metadata, "corrupt": r.Corrupt} {
		m.resyncDiffs.WithLabelValues(kind).Add(float64(n))
	}
	m.resyncBytes.Add(float64(r.Bytes))
	m.resyncSeconds.Set(float64(r.DurationMillis) / 1000)
}

func (m *metrics) hit() {
	if m != nil {
		m.hits.Inc()
	}
}

func (m *metrics) miss() {
	if m != nil {
		m.misses.Inc()
	}
}

// served counts body bytes sent to clients.
func (m *metrics) served(n int64) {
	if m != nil && n > 0 {
		m.servedBytes.Add(float64(n))
	}
}

// fillFrom counts a fill request by where it went.
func (m *metrics) fillFrom(to string) {
	if m != nil {
		m.fillsFrom.WithLabelValues(to).Inc()
	}
}

// fillDone records one fill: its outcome (nil, an error wrapping
// errNotFound, or any other error), the bytes stored when it succeeded,
// and how long it took.
func (m *metrics) fillDone(err error, bytes int64, took time.Duration) {
	if m == nil {
		return
	}
	switch {
	case err == nil:
		m.fills.WithLabelValues("ok").Inc()
		m.fillBytes.Add(float64(bytes))
	case errors.Is(err, errNotFound):
		m.fills.WithLabelValues("not_found").Inc()
	default:
		m.fills.WithLabelValues("error").Inc()
	}
	m.fillDuration.Observe(took.Seconds())
}

// push counts one push offer by result: stored, have, bad_digest,
// disk_full or failed.
func (m *metrics) push(result string) {
	if m != nil {
		m.pushes.WithLabelValues(result).Inc()
	}
}

func (m *metrics) purged(n int) {
	if m != nil {
		m.purgedVersions.Add(float64(n))
	}
}

func (m *metrics) setWatermark(wm uint64) {
	if m != nil {
		m.watermark.Set(float64(wm))
	}
}

// setLag records how many LSNs the edge is behind the origin.
func (m *metrics) setLag(lag uint64) {
	if m != nil {
		m.logLag.Set(float64(lag))
	}
}

// corrupt counts a blob found corrupt and quarantined; by is what found
// it, "scrub" or "read".
func (m *metrics) corrupt(by string) {
	if m != nil {
		m.scrubCorrupt.WithLabelValues(by).Inc()
	}
}

// registerScrubMetrics registers the scrubber's progress on reg, read from
// sc at each scrape.
func registerScrubMetrics(reg *prometheus.Registry, sc *scrub.Scrubber) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "geocdn_edge_scrub_bytes_total", Help: "Blob bytes the scrubber read and hashed.",
		}, func() float64 { return float64(sc.Status().BytesRead) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_edge_scrub_pass_progress",
			Help: "Fraction of the running scrub pass done, 0 to 1; 1 when idle after a full pass.",
		}, func() float64 { return sc.Status().Progress() }),
	)
}

// registerConnMetrics registers the client server's connection counts on
// reg, read from srv at each scrape: the server counts them anyway, and
// the accept loop, which refuses connections at MaxConns, then pays
// nothing more.
func registerConnMetrics(reg *prometheus.Registry, srv *h1.Server, listener string) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_edge_" + listener + "_open_connections",
			Help: "Client " + strings.ToUpper(listener) + " connections (TCP) open now, idle or serving.",
		}, func() float64 { return float64(srv.OpenConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "geocdn_edge_" + listener + "_connections_refused_total",
			Help: "Client " + strings.ToUpper(listener) + " connections refused because MaxConns were open.",
		}, func() float64 { return float64(srv.RefusedConns()) }),
	)
}
