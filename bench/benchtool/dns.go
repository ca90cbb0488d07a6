package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"

	"github.com/miekg/dns"
)

// dnsQueries writes dnsperf's -B input (each message preceded by its
// length, two bytes big-endian): A queries for -name, every one with an
// EDNS Client Subnet option. Half place the client in the test database's
// IPv4 cities (/24), 30% anywhere in IPv4 (/24, mostly not in the
// database), 20% in its IPv6 cities (/56).
//
//	benchtool dnsqueries -name cdn.test -out queries.bin [-count 8192]
func dnsQueries(args []string) error {
	fs := flag.NewFlagSet("dnsqueries", flag.ExitOnError)
	name := fs.String("name", "cdn.test", "name asked for")
	out := fs.String("out", "", "output file (required)")
	count := fs.Int("count", 8192, "queries (distinct subnets, at most)")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("dnsqueries: -out is required")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	var buf []byte
	for i := range *count {
		var ecs dns.EDNS0_SUBNET
		ecs.Code = dns.EDNS0SUBNET
		switch r := rng.Float64(); {
		case r < 0.5:
			third := []byte{192, 0, 2}
			if rng.IntN(2) == 1 {
				third = []byte{198, 51, 100}
			}
			ecs.Family, ecs.SourceNetmask = 1, 24
			ecs.Address = net.IPv4(third[0], third[1], third[2], 0).To4()
		case r < 0.8:
			ecs.Family, ecs.SourceNetmask = 1, 24
			ecs.Address = net.IPv4(byte(1+rng.IntN(223)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0).To4()
		default:
			a := make(net.IP, 16)
			copy(a, []byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(1 + rng.IntN(32)), byte(rng.IntN(256))})
			ecs.Family, ecs.SourceNetmask = 2, 56
			ecs.Address = a
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(*name), dns.TypeA)
		m.Id = uint16(i)
		m.RecursionDesired = false
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(1232)
		o.Option = append(o.Option, &ecs)
		m.Extra = append(m.Extra, o)
		b, err := m.Pack()
		if err != nil {
			return err
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(b)))
		buf = append(buf, b...)
	}
	return os.WriteFile(*out, buf, 0o644)
}
