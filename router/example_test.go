package router_test

import (
	"fmt"
	"net/netip"

	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/router"
)

// A Table decides without HTTP, as a DNS front end would: locate the
// client, then ask.
func ExampleTable_Decide() {
	db, err := geoip.Open("../testdata/geoip-test.mmdb", geoip.Options{})
	if err != nil {
		panic(err)
	}
	defer db.Close()
	tab := router.NewTable([]router.Edge{
		{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13, PublicURL: "https://lhr.cdn.example", Healthy: true},
		{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69, PublicURL: "https://nrt.cdn.example", Healthy: true},
		{ID: "syd", Region: "ap-southeast", Lat: -33.87, Lon: 151.21, PublicURL: "https://syd.cdn.example", Healthy: false},
	}, router.TableOptions{})
	for _, ip := range []string{"192.0.2.17", "2001:db8:15::1", "198.51.100.177"} {
		d, err := tab.Decide(router.Query{Location: db.Locate(netip.MustParseAddr(ip)), Namespace: "default", Key: "index.html"})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-15s → %s (%s)\n", ip, d.Edge, d.Location.Record.City)
	}
	// Output:
	// 192.0.2.17      → lhr (London)
	// 2001:db8:15::1  → nrt (Tokyo)
	// 198.51.100.177  → nrt (Sydney)
}
