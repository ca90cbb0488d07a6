package wire

import (
	"errors"
	"net/netip"
	"testing"
)

func TestRTTReportValidate(t *testing.T) {
	ok := RTTReport{Networks: []RTTNetwork{{Network: netip.MustParsePrefix("198.51.100.0/24"), MedianMicros: 1}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid report refused: %v", err)
	}
	many := RTTReport{Networks: make([]RTTNetwork, MaxRTTNetworks+1)}
	for i := range many.Networks {
		many.Networks[i].Network = netip.MustParsePrefix("198.51.100.0/24")
	}
	for name, r := range map[string]RTTReport{
		"too many":    many,
		"unmasked":    {Networks: []RTTNetwork{{Network: netip.MustParsePrefix("198.51.100.9/24")}}},
		"too long v4": {Networks: []RTTNetwork{{Network: netip.MustParsePrefix("198.51.100.0/25")}}},
		"too long v6": {Networks: []RTTNetwork{{Network: netip.MustParsePrefix("2001:db8::/56")}}},
		"4in6":        {Networks: []RTTNetwork{{Network: netip.MustParsePrefix("::ffff:198.51.100.0/120")}}},
		"zero":        {Networks: []RTTNetwork{{}}},
	} {
		if err := r.Validate(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Validate = %v, want ErrMalformed", name, err)
		}
	}
}
