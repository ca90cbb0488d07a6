package clusternet_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/geocdn/geocdn/internal/clusternet"
	"github.com/geocdn/geocdn/internal/pki"
)

// Two origins of one cluster CA: o1 dials o2 for a blob stream, and each
// end learns the other's verified id.
func Example() {
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		log.Fatal(err)
	}
	start := func(id string) *clusternet.Net {
		cert, err := ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: id}, now, time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		n, err := clusternet.New(clusternet.Config{ID: id, CA: ca, Cert: cert, Listener: ln})
		if err != nil {
			log.Fatal(err)
		}
		return n
	}
	o1, o2 := start("o1"), start("o2")
	defer o1.Close()
	defer o2.Close()

	c, err := o1.Dial(context.Background(), o2.Addr().String(), clusternet.KindBlob, "o2")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	s, err := o2.Listener(clusternet.KindBlob).Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	dialled, _ := clusternet.PeerID(c)
	accepted, _ := clusternet.PeerID(s)
	fmt.Printf("o1 dialled %s; o2 accepted %s\n", dialled, accepted)
	// Output: o1 dialled o2; o2 accepted o1
}
