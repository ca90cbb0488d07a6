package edge

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/rttstat"
	"github.com/geocdn/geocdn/internal/wire"
)

const (
	// rttReportInterval is how often the edge sends its per-network RTT
	// medians to the origin (and once when a session starts).
	rttReportInterval = 10 * time.Second
	// rttReportNetworks is how many networks a report carries at most:
	// the ones with the most traffic.
	rttReportNetworks = 256
	// rttNetworks bounds the networks the edge keeps RTTs for.
	rttNetworks = 4096
	// rttHalfLife is how long a connection's RTT takes to count half.
	rttHalfLife = 10 * time.Minute
)

// clientRTT records the RTT of a client connection from remote, measured
// when it was accepted (TCP) or its handshake completed (QUIC).
func (e *Edge) clientRTT(remote net.Addr, rtt time.Duration) {
	var a netip.Addr
	switch ra := remote.(type) {
	case *net.TCPAddr:
		a, _ = netip.AddrFromSlice(ra.IP)
	case *net.UDPAddr:
		a, _ = netip.AddrFromSlice(ra.IP)
	default:
		ap, err := netip.ParseAddrPort(remote.String())
		if err != nil {
			return
		}
		a = ap.Addr()
	}
	e.rtts.Add(a, rtt, e.clk.Now())
}

// h3ConnContext is the HTTP/3 server's ConnContext: it records the QUIC
// connection's smoothed RTT once, when it is served if the handshake has
// measured one by then, else when it ends (a server's first samples come
// from the acknowledgements of its handshake flight, which may follow).
func (e *Edge) h3ConnContext(ctx context.Context, c *quic.Conn) context.Context {
	if rtt := c.ConnectionStats().SmoothedRTT; rtt > 0 {
		e.clientRTT(c.RemoteAddr(), rtt)
		return ctx
	}
	context.AfterFunc(c.Context(), func() {
		if rtt := c.ConnectionStats().SmoothedRTT; rtt > 0 {
			e.clientRTT(c.RemoteAddr(), rtt)
		}
	})
	return ctx
}

// rttListener samples the kernel's RTT of every TCP connection it
// accepts, and hands the connection on unwrapped (the HTTP/1.1 server
// needs the *net.TCPConn for sendfile).
type rttListener struct {
	net.Listener
	record func(net.Addr, time.Duration)
}

func (l rttListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		if rtt, ok := rttstat.TCPRTT(tc); ok {
			l.record(c.RemoteAddr(), rtt)
		}
	}
	return c, nil
}

// rttReport is what the edge's RTT table holds now, as the wire carries
// it.
func (e *Edge) rttReport() wire.RTTReport {
	ms := e.rtts.Medians(e.clk.Now(), 1, rttReportNetworks)
	r := wire.RTTReport{Networks: make([]wire.RTTNetwork, 0, len(ms))}
	for _, m := range ms {
		r.Networks = append(r.Networks, wire.RTTNetwork{
			Network:      m.Network,
			MedianMicros: wireCount(m.RTT.Microseconds()),
			Samples16:    wireCount(int64(m.Samples * 16)),
		})
	}
	return r
}

// reportRTT sends the edge's per-network RTT medians on the session's
// control stream at once and every rttReportInterval, when they changed.
// It returns nil when ctx ends, or send's error.
func (e *Edge) reportRTT(ctx context.Context, s *session) error {
	tk := e.clk.NewTicker(rttReportInterval)
	defer tk.Stop()
	var last wire.RTTReport
	sent := false
	for {
		r := e.rttReport()
		if !sent || !slices.Equal(r.Networks, last.Networks) {
			if err := r.Validate(); err != nil {
				e.log.Error("rtt report not sent", "err", err)
			} else if err := s.send(r); err != nil {
				return err
			}
			last, sent = r, true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C():
		}
	}
}
