package origin

import (
	"github.com/geocdn/geocdn/internal/wire"
)

// NetworkRTT is an edge's measured round-trip time to one client network,
// a row of the rtt list of a GET /v1/edges row: the median over the
// edge's recent client connections from that network (TCP's smoothed RTT,
// QUIC's), and the decayed count of connections behind it. Routers prefer
// it to their distance model once Samples is large enough.
type NetworkRTT struct {
	// Network is a /24 (IPv4) or /48 (IPv6).
	Network  string  `json:"network"`
	MedianMs float64 `json:"median_ms"`
	Samples  float64 `json:"samples"`
}

// edgeMeasuredRTT records e's latest RTT report, replacing the last. The
// origin the edge is connected to (the cluster's leader) holds it; it is
// not replicated, since a new report follows within seconds of a
// reconnect.
func (o *Origin) edgeMeasuredRTT(e *edge, m wire.RTTReport) {
	rows := make([]NetworkRTT, 0, len(m.Networks))
	for _, n := range m.Networks {
		rows = append(rows, NetworkRTT{
			Network:  n.Network.String(),
			MedianMs: float64(n.MedianMicros) / 1000,
			Samples:  float64(n.Samples16) / 16,
		})
	}
	e.mu.Lock()
	e.rtt = rows
	e.mu.Unlock()
}
