package placement

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// peakHeap samples the heap in use until stop is called and returns the
// largest value seen, in bytes: TotalAlloc says what a run allocates, this
// says how much it holds at once, which is what must fit in memory.
func peakHeap() (stop func() uint64) {
	var (
		mu   sync.Mutex
		peak uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapInuse)
		mu.Unlock()
	}
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		sample()
		return peak
	}
}

// BenchmarkSolve plans synthetic problems grown from the sample data
// (scaleProblem) with k = 3 for everything. The largest is the target of
// the placement issue: 1,000 edges × 10,000 demand points × 10,000
// objects, under 5 s and 1 GiB.
//
// "tight" gives every edge room for the largest class and 5% more, so
// content competes for space and the capacity phases run.
func BenchmarkSolve(b *testing.B) {
	for _, size := range []struct {
		edges, demand, objects int
		tight                  bool
	}{
		{100, 1000, 1000, false},
		{1000, 10000, 10000, false},
		{1000, 10000, 10000, true},
	} {
		name := fmt.Sprintf("edges=%d/demand=%d/objects=%d/k=3", size.edges, size.demand, size.objects)
		if size.tight {
			name += "/tight"
		}
		b.Run(name, func(b *testing.B) {
			p := scaleProblem(b, size.edges, size.demand, size.objects, 1)
			if size.tight {
				var largest int64
				for c := range p.Catalog.Classes {
					var n int64
					for _, o := range p.Catalog.Objects {
						if newClassMatcher(p.Catalog.Classes).match("default", o.Key) == c {
							n += o.Size
						}
					}
					largest = max(largest, n)
				}
				for i := range p.Topology.Edges {
					p.Topology.Edges[i].CapacityBytes = largest + largest/20
				}
			}
			cfg := Config{MinReplicas: 3, MaxReplicas: 3}
			runtime.GC()
			b.ReportAllocs()
			stop := peakHeap()
			var res *Result
			for b.Loop() {
				var err error
				if res, err = Solve(context.Background(), p, cfg); err != nil {
					b.Fatal(err)
				}
			}
			peak := stop()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(ms.Sys)/(1<<20), "sys-MiB")
			b.ReportMetric(float64(len(res.Units)), "sets")
			b.ReportMetric(res.MeanRTTMs, "mean-rtt-ms")
		})
	}
}

// BenchmarkReplan re-plans the target problem after 1% of the edges
// left, with at most 100 optional moves.
func BenchmarkReplan(b *testing.B) {
	p := scaleProblem(b, 1000, 10000, 10000, 1)
	cfg := Config{MinReplicas: 3, MaxReplicas: 3}
	res, err := Solve(context.Background(), p, cfg)
	if err != nil {
		b.Fatal(err)
	}
	q := p
	q.Topology = &Topology{Measured: p.Topology.Measured}
	for i, e := range p.Topology.Edges {
		if i%100 != 7 {
			q.Topology.Edges = append(q.Topology.Edges, e)
		}
	}
	cfg.MaxMoves = 100
	runtime.GC()
	b.ReportAllocs()
	stop := peakHeap()
	var out *Result
	for b.Loop() {
		if out, err = Replan(context.Background(), q, res.Plan, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(out.Moves.Forced), "forced-moves")
	b.ReportMetric(float64(out.Moves.Optional), "optional-moves")
}
