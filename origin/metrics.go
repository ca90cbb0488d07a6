package origin

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	publishes    *prometheus.CounterVec
	publishBytes prometheus.Counter
	pushes       *prometheus.CounterVec
	pushBytes    prometheus.Counter
	fillBytes    prometheus.Counter
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
	}
	reg.MustRegister(m.publishes, m.publishBytes, m.pushes, m.pushBytes, m.fillBytes,
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
