package router

import (
	"strconv"

	"github.com/miekg/dns"
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

// dnsRcodes are the response codes the DNS metrics name; others count as
// "other".
var dnsRcodes = []int{
	dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
	dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers,
}

// dnsMetrics are the DNS front end's, by transport (dnsUDP, dnsTCP).
type dnsMetrics struct {
	responses [2][dns.RcodeBadVers + 1]prometheus.Counter // by rcode; nil: other
	other     [2]prometheus.Counter
	dropped   [2]prometheus.Counter
	truncated prometheus.Counter
	ecs       prometheus.Counter
}

func newDNSMetrics(reg *prometheus.Registry, s *dnsServer) *dnsMetrics {
	resp := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geocdn_router_dns_responses_total", Help: "DNS responses by transport (udp, tcp) and rcode.",
	}, []string{"transport", "rcode"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "geocdn_router_dns_dropped_total", Help: "DNS messages not answered: shorter than a header, or responses.",
	}, []string{"transport"})
	m := &dnsMetrics{
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_router_dns_truncated_total", Help: "UDP answers too large for the resolver's buffer, sent truncated (TC) so it asks over TCP.",
		}),
		ecs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "geocdn_router_dns_client_subnet_total", Help: "DNS decisions made for an EDNS Client Subnet address rather than the resolver's.",
		}),
	}
	for t, name := range []string{"udp", "tcp"} {
		for _, rc := range dnsRcodes {
			m.responses[t][rc] = resp.WithLabelValues(name, dns.RcodeToString[rc])
		}
		m.other[t] = resp.WithLabelValues(name, "other")
		m.dropped[t] = dropped.WithLabelValues(name)
	}
	reg.MustRegister(resp, dropped, m.truncated, m.ecs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_router_dns_edges", Help: "Routable edges DNS answers may name: those with an address.",
		}, func() float64 { return float64(s.current().table.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_router_dns_edges_without_address", Help: "Routable edges left out of DNS answers for want of an address (--dns-edge-addrs).",
		}, func() float64 { return float64(len(s.current().skipped)) }),
	)
	return m
}

func (m *dnsMetrics) respond(transport, rcode int) {
	if rcode >= 0 && rcode < len(m.responses[transport]) && m.responses[transport][rcode] != nil {
		m.responses[transport][rcode].Inc()
		return
	}
	m.other[transport].Inc()
}
