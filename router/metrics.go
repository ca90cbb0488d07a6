package router

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/geoip"
)

// metrics are resolved once so the request path never hashes label values.
type metrics struct {
	responses     map[int]prometheus.Counter
	otherResponse prometheus.Counter
	decisions     [geoip.SourceCity + 1]prometheus.Counter
	noEdge        prometheus.Counter
	pollErrors    prometheus.Counter
	probeFailures prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, r *Router) *metrics {
	resp := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geocdn_router_responses_total", Help: "HTTP responses by status code.",
	}, []string{"code"})
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geocdn_router_decisions_total", Help: "Routing decisions by how the client was located (city, country, continent, default, none).",
	}, []string{"location"})
	m := &metrics{
		responses:     make(map[int]prometheus.Counter),
		otherResponse: resp.WithLabelValues("other"),
		noEdge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_router_no_edge_total", Help: "Decisions that found no routable edge (503).",
		}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_router_edge_list_errors_total", Help: "Failed fetches of the origin's edge list.",
		}),
		probeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_router_probe_failures_total", Help: "Edge /healthz probes that failed.",
		}),
	}
	for _, c := range []int{200, 302, 400, 405, 503} {
		m.responses[c] = resp.WithLabelValues(strconv.Itoa(c))
	}
	for s := range m.decisions {
		m.decisions[s] = dec.WithLabelValues(geoip.Source(s).String())
	}
	reg.MustRegister(resp, dec, m.noEdge, m.pollErrors, m.probeFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_router_edges_known", Help: "Edges in the origin's last edge list.",
		}, func() float64 { n, _ := r.members.known(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_router_edges_routable", Help: "Edges decisions may name: up at the origin and answering probes.",
		}, func() float64 { return float64(r.table.Load().Len()) }),
	)
	return m
}

func (m *metrics) responded(code int) {
	if c, ok := m.responses[code]; ok {
		c.Inc()
		return
	}
	m.otherResponse.Inc()
}

func (m *metrics) decided(s geoip.Source, err error) {
	if err != nil {
		m.noEdge.Inc()
		return
	}
	if int(s) < len(m.decisions) {
		m.decisions[s].Inc()
	}
}
