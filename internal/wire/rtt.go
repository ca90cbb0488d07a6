package wire

import (
	"net/netip"

	"github.com/quic-go/quic-go/quicvarint"
)

// MaxRTTNetworks bounds the networks of one RTTReport.
const MaxRTTNetworks = 1024

// RTTReport is an edge's measured round-trip times to its clients, per
// client network: the median of recent connections' RTTs (TCP's smoothed
// RTT, QUIC's) for the networks with the most traffic (internal/rttstat).
// Sent on the control stream when the edge connects and every report
// interval after; each replaces the last. The origin lists them in GET
// /v1/edges, where routers read them; nothing else depends on them.
//
// Layout: count | count × (family (1 byte: 4 or 6) | prefix bits (1 byte)
// | address (4 or 16 bytes) | median µs | samples × 16) (varints but for
// the bytes named).
type RTTReport struct {
	Networks []RTTNetwork
}

// RTTNetwork is one network's figure.
type RTTNetwork struct {
	// Network is a /24 (IPv4) or /48 (IPv6), masked.
	Network netip.Prefix
	// MedianMicros is the median RTT in microseconds.
	MedianMicros uint64
	// Samples16 is the (decayed) sample count behind it, times 16.
	Samples16 uint64
}

func (RTTReport) Type() FrameType { return FrameRTTReport }

func (r RTTReport) Len() int {
	n := varintLen(uint64(len(r.Networks)))
	for _, x := range r.Networks {
		n += 2 + x.Network.Addr().BitLen()/8 + varintLen(x.MedianMicros) + varintLen(x.Samples16)
	}
	return n
}

func (r RTTReport) Append(b []byte) []byte {
	b = quicvarint.Append(b, uint64(len(r.Networks)))
	for _, x := range r.Networks {
		a := x.Network.Addr()
		if a.Is4() {
			b = append(b, 4, byte(x.Network.Bits()))
			a4 := a.As4()
			b = append(b, a4[:]...)
		} else {
			b = append(b, 6, byte(x.Network.Bits()))
			a16 := a.As16()
			b = append(b, a16[:]...)
		}
		b = quicvarint.Append(b, x.MedianMicros)
		b = quicvarint.Append(b, x.Samples16)
	}
	return b
}

// Validate reports, as ErrMalformed, what a decoder would refuse: too
// many networks, invalid or unmasked prefixes, or a prefix longer than
// /24 (IPv4) or /48 (IPv6), the widest unit an edge reports.
func (r RTTReport) Validate() error {
	d := decoder{msg: "rtt report"}
	if len(r.Networks) > MaxRTTNetworks {
		d.failf("%d networks exceed %d", len(r.Networks), MaxRTTNetworks)
	}
	for _, x := range r.Networks {
		checkRTTNetwork(&d, x.Network)
	}
	return d.err
}

func checkRTTNetwork(d *decoder, p netip.Prefix) {
	maxBits := 48
	if p.Addr().Is4() {
		maxBits = 24
	}
	switch {
	case !p.IsValid() || p.Addr().Is4In6():
		d.failf("network %v: invalid", p)
	case p.Bits() > maxBits:
		d.failf("network %v: longer than /%d", p, maxBits)
	case p.Masked() != p:
		d.failf("network %v: bits set past the prefix", p)
	}
}

func parseRTTReport(b []byte) (RTTReport, error) {
	d := decoder{msg: "rtt report", b: b}
	n := d.count("networks", MaxRTTNetworks)
	r := RTTReport{Networks: make([]RTTNetwork, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		fam := d.uint8("family")
		bits := d.uint8("prefix bits")
		var a netip.Addr
		switch fam {
		case 4:
			if raw := d.bytes("address", 4); raw != nil {
				a = netip.AddrFrom4([4]byte(raw))
			}
		case 6:
			if raw := d.bytes("address", 16); raw != nil {
				a = netip.AddrFrom16([16]byte(raw))
			}
		default:
			d.failf("family %d: want 4 or 6", fam)
		}
		x := RTTNetwork{Network: netip.PrefixFrom(a, int(bits))}
		x.MedianMicros = d.varint("median")
		x.Samples16 = d.varint("samples")
		if d.err == nil {
			checkRTTNetwork(&d, x.Network)
		}
		r.Networks = append(r.Networks, x)
	}
	if err := d.finish(); err != nil {
		return RTTReport{}, err
	}
	return r, nil
}
