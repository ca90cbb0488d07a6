package main

import (
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var failoverKills = flag.Int("geocdn.failoverkills", 0, "leader kills of TestFailoverTimes (make bench runs 20); 0 skips it")

// TestFailoverTimes measures failover as real processes, for make bench:
// three origins and two edges under a steady stream of publishes; the
// leader is killed (SIGKILL), and the time to the first publish
// acknowledged by the new leader, and until both edges follow it, is
// measured; the killed origin is restarted and catches up before the next
// kill. It prints a markdown table, and asserts nothing about the times.
func TestFailoverTimes(t *testing.T) {
	if *failoverKills <= 0 {
		t.Skip("a measurement, run by make bench (-geocdn.failoverkills=20)")
	}
	c := newCluster(t)
	nodes := c.startOrigins(3)
	c.origin = nodes[0].p
	edges := []*edgeNode{c.addEdge("iad", "us-east", 38.90, -77.04), c.addEdge("fra", "eu-central", 50.11, 8.68)}
	for _, e := range edges {
		c.startEdge(e)
	}
	c.waitAllUp()

	// Publishers: each sends the next publish as soon as one is answered,
	// through the origins in turn, and records when acknowledgements come
	// back for publishes sent after a given instant.
	var (
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		since   time.Time // publishes sent at or after this count
		firstOK time.Time
		seq     atomic.Int64
	)
	for g := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now()
				a, err := publishTo(c, nodes[(g+i)%len(nodes)], fmt.Sprintf("failover/%d", seq.Add(1)), []byte("x"), "w=0")
				if err != nil || a.status != 201 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mu.Lock()
				if !since.IsZero() && !sent.Before(since) && firstOK.IsZero() {
					firstOK = time.Now()
				}
				mu.Unlock()
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	var toAck, toEdges []time.Duration
	for k := range *failoverKills {
		var leader *originNode
		waitFor(t, "a leader", func() bool {
			for _, n := range nodes {
				if leader = leaderOf(c, nodes, n); leader != nil {
					return true
				}
			}
			return false
		})
		var survivor *originNode
		for _, n := range nodes {
			if n != leader {
				survivor = n
				break
			}
		}
		killed := time.Now()
		mu.Lock()
		since, firstOK = killed, time.Time{}
		mu.Unlock()
		leader.p.kill9(t)
		leader.p.wait(t)
		var newLeader string
		waitFor(t, "both edges following a new leader", func() bool {
			cs, ok := c.clusterStatus(survivor)
			if !ok || cs.Leader == "" || cs.Leader == leader.id {
				return false
			}
			st, ok := c.statusOf(survivor)
			if !ok {
				return false
			}
			following := 0
			for _, e := range st.Edges {
				if e.Origin == cs.Leader && e.State == "up" {
					following++
				}
			}
			newLeader = cs.Leader
			return following == len(edges)
		}, survivor.p)
		toEdges = append(toEdges, time.Since(killed))
		waitFor(t, "a publish acknowledged after the kill", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return !firstOK.IsZero()
		})
		mu.Lock()
		toAck = append(toAck, firstOK.Sub(killed))
		mu.Unlock()
		t.Logf("kill %d: %s killed, %s leads; first publish acknowledged after %v, both edges follow after %v",
			k+1, leader.id, newLeader, toAck[k].Round(time.Millisecond), toEdges[k].Round(time.Millisecond))
		c.startOriginNode(leader)
		waitFor(t, leader.id+" back and caught up", func() bool {
			cs, ok := c.clusterStatus(leader)
			if !ok {
				return false
			}
			for _, m := range cs.Members {
				if m.Error != "" || m.AppliedIndex < cs.Members[0].CommitIndex {
					return false
				}
			}
			return len(cs.Members) == 3
		}, leader.p)
	}
	p50 := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	fmt.Printf("| leader kills | first publish acknowledged, p50 | max | both edges following the new leader, p50 | max |\n")
	fmt.Printf("|---:|---:|---:|---:|---:|\n")
	fmt.Printf("| %d | %v | %v | %v | %v |\n", len(toAck), p50(toAck).Round(time.Millisecond), slices.Max(toAck).Round(time.Millisecond),
		p50(toEdges).Round(time.Millisecond), slices.Max(toEdges).Round(time.Millisecond))
}
