package origin

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	publishes    *prometheus.CounterVec
	publishBytes prometheus.Counter
	pushes       *prometheus.CounterVec
	pushBytes    prometheus.Counter
	fillBytes    prometheus.Counter
	// scrubCorrupt counts corrupt blobs found by the scrubber, each again
	// on every pass that finds it still corrupt.
	scrubCorrupt prometheus.Counter
	// pushStreamsOpen counts, per edge, push streams from their opening
	// until the origin has ended both of their directions; it sits near
	// PushConcurrency while pushes flow and returns to 0 when they stop.
	// pushStreamsWaiting counts pushes waiting for the edge to let the
	// origin open a stream: persistently above 0, the edge is not
	// finishing the streams it was given (or is not reading at all).
	pushStreamsOpen, pushStreamsWaiting *edgeGauge
	// resyncs counts edge resync reports by outcome; resyncDiffs the
	// differences they found, by kind.
	resyncs     *prometheus.CounterVec
	resyncDiffs *prometheus.CounterVec
	// edgesLost counts edges declared lost (see recovery.go).
	edgesLost prometheus.Counter
}

// resyncDone records an edge's resync report.
func (m *metrics) resyncDone(s ResyncStatus) {
	m.resyncs.WithLabelValues(s.Outcome).Inc()
	for kind, n := range map[string]uint64{"missing": s.Missing, "stale": s.Stale, "extra": s.Extra, "metadata": s.Metadata, "corrupt": s.Corrupt} {
		m.resyncDiffs.WithLabelValues(kind).Add(float64(n))
	}
}

// edgeGauge is a gauge per edge that the origin can also read back (for
// tests and its own reports) without a Prometheus round trip.
type edgeGauge struct {
	vec *prometheus.GaugeVec
	mu  sync.Mutex
	n   map[string]int
}

func newEdgeGauge(name, help string) *edgeGauge {
	return &edgeGauge{
		vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"edge"}),
		n:   make(map[string]int),
	}
}

// add moves edge's value by d. The Prometheus value is set under the
// lock so that concurrent moves cannot leave it stale.
func (g *edgeGauge) add(edge string, d int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n[edge] += d
	g.vec.WithLabelValues(edge).Set(float64(g.n[edge]))
}

func (g *edgeGauge) value(edge string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n[edge]
}

func newMetrics(reg *prometheus.Registry, o *Origin) *metrics {
	m := &metrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_origin_publishes_total", Help: "Publishes by outcome.",
		}, []string{"outcome"}),
		publishBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_origin_publish_bytes_total", Help: "Bytes of published content committed.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_origin_pushes_total", Help: "Pushes to edges by result.",
		}, []string{"result"}),
		pushBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_origin_push_bytes_total", Help: "Content bytes sent in pushes.",
		}),
		fillBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_origin_fill_bytes_total", Help: "Content bytes sent to answer edge fills.",
		}),
		scrubCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_origin_scrub_corrupt_blobs_total",
			Help: "Blobs the scrubber found not matching their digest; one still corrupt is counted again each pass.",
		}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_origin_edge_resyncs_total", Help: "Edge anti-entropy resyncs reported, by outcome (in-sync, repaired, failed).",
		}, []string{"outcome"}),
		resyncDiffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "geocdn_origin_edge_resync_differences_total", Help: "Differences edge resyncs found, by kind (missing, stale, extra, metadata, corrupt).",
		}, []string{"kind"}),
		edgesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_origin_edges_lost_total",
			Help: "Edges declared lost (lease expired longer than --reassign-after), whose plan replicas were placed elsewhere.",
		}),
		pushStreamsOpen: newEdgeGauge("geocdn_origin_push_streams_open",
			"Push streams to the edge that the origin has opened and not yet ended in both directions."),
		pushStreamsWaiting: newEdgeGauge("geocdn_origin_push_streams_waiting",
			"Pushes waiting for the edge's QUIC stream credit to open a stream."),
	}
	reg.MustRegister(m.publishes, m.publishBytes, m.pushes, m.pushBytes, m.fillBytes,
		m.pushStreamsOpen.vec, m.pushStreamsWaiting.vec, m.scrubCorrupt,
		m.resyncs, m.resyncDiffs, m.edgesLost,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_edges_lost", Help: "Edges treated as lost now; their plan replicas are held elsewhere until they return.",
		}, func() float64 { return float64(len(o.LostEdges())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_placement_reassigned",
			Help: "1 while the placement plan in force differs from the operator's because edges are lost or returning, else 0.",
		}, func() float64 {
			if samePlacement(o.plan.Load(), o.BasePlan()) {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_log_first_lsn", Help: "First LSN the replication log still holds; older entries were compacted.",
		}, func() float64 { return float64(o.store.firstLSN()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "geocdn_origin_scrub_bytes_total", Help: "Blob bytes the scrubber read and hashed.",
		}, func() float64 { return float64(o.scrubber.Status().BytesRead) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_scrub_pass_progress",
			Help: "Fraction of the running scrub pass done, 0 to 1; 1 when idle after a full pass.",
		}, func() float64 { return o.scrubber.Status().Progress() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_last_lsn", Help: "LSN of the latest committed log entry.",
		}, func() float64 { return float64(o.store.lastLSN()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_origin_edges_up", Help: "Edges whose state is up.",
		}, func() float64 {
			n := 0
			now := o.clk.Now()
			for _, e := range o.edges.all() {
				if e.state(now, o.stateRule()) == EdgeUp {
					n++
				}
			}
			return float64(n)
		}),
	)
	return m
}

// PushStreamsOpen is the number of push streams to edge id the origin has
// opened and not yet ended in both directions (the
// geocdn_origin_push_streams_open gauge). It returns to 0 whenever no push
// to the edge is in flight.
func (o *Origin) PushStreamsOpen(id string) int { return o.metrics.pushStreamsOpen.value(id) }
