package placement_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/geocdn/geocdn/placement"
)

func Example() {
	top, err := placement.ParseTopology("topology.yaml", strings.NewReader(`
version: 1
edges:
  - {id: gru, region: sa-east, lat: -23.55, lon: -46.63, fault_domain: grid-brazil}
  - {id: gig, region: sa-east, lat: -22.91, lon: -43.17, fault_domain: grid-brazil}
  - {id: mia, region: us-east, lat: 25.76, lon: -80.19, fault_domain: grid-us-eastern}
  - {id: iad, region: us-east, lat: 39.04, lon: -77.49, fault_domain: grid-us-eastern}
  - {id: lhr, region: eu-west, lat: 51.51, lon: -0.13, fault_domain: grid-gb}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	demand, err := placement.ParseDemand("demand.csv", strings.NewReader(`id,lat,lon,region,weight
sao-paulo,-23.55,-46.63,sa-east,22.0
rio,-22.91,-43.17,sa-east,13.5
new-york,40.71,-74.01,us-east,18.8
london,51.51,-0.13,eu-west,9.3
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	catalog, err := placement.ParseCatalog("catalog.yaml", strings.NewReader(`
version: 1
classes:
  - {name: global, prefixes: [""], replicas: 3}
  - {name: novelas, prefixes: [novelas/], affinity: {sa-east: 1, "*": 0.01}, replicas: 2}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := placement.Solve(context.Background(), placement.Problem{Topology: top, Demand: demand, Catalog: catalog}, placement.DefaultConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	// Global content goes where the demand is. Brazilian series get São
	// Paulo, and their second replica must be off Brazil's grid (gig is
	// nearer but fails with gru): Ashburn, nearest to what little demand
	// they have elsewhere.
	fmt.Println("index.html:", res.Plan.ReplicasFor("", "index.html"))
	fmt.Println("novelas/ep1.mp4:", res.Plan.ReplicasFor("", "novelas/ep1.mp4"))
	// Output:
	// index.html: [gru iad lhr]
	// novelas/ep1.mp4: [gru iad]
}
