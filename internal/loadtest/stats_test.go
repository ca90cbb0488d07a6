package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

// approxRel reports whether got is within rel of want.
func approxRel(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

func TestRecorderPercentiles(t *testing.T) {
	var r Recorder
	// 1000 GETs from "lhr" taking 1..1000 ms, modelled 100 ms more; 1000
	// HEADs from "nyc" taking 2..2000 ms in steps of 2.
	for i := 1; i <= 1000; i++ {
		r.Record(Sample{
			Intended: time.Duration(i) * 10 * time.Millisecond,
			Latency:  time.Duration(i) * time.Millisecond,
			Modelled: time.Duration(i+100) * time.Millisecond,
			Region:   "lhr", Op: OpGet, Status: 200, Hit: i%4 != 0, Fill: i%4 == 0, Bytes: 100,
		})
		r.Record(Sample{
			Intended: time.Duration(i) * 10 * time.Millisecond,
			Latency:  time.Duration(2*i) * time.Millisecond,
			Region:   "nyc", Op: OpHead, Status: 200, Hit: true,
		})
	}
	rep := r.Report(RunInfo{Duration: 10 * time.Second})

	tests := []struct {
		name      string
		got, want float64
	}{
		{"lhr p50", rep.Regions[0].P50, 500},
		{"lhr p90", rep.Regions[0].P90, 900},
		{"lhr p99", rep.Regions[0].P99, 990},
		{"lhr p99.9", rep.Regions[0].P999, 999},
		{"lhr max", rep.Regions[0].Max, 1000},
		{"lhr mean", rep.Regions[0].Mean, 500.5},
		{"lhr modelled p50", rep.Regions[0].Modelled.P50, 600},
		{"lhr modelled p99", rep.Regions[0].Modelled.P99, 1090},
		{"nyc p50", rep.Regions[1].P50, 1000},
		{"nyc p99", rep.Regions[1].P99, 1980},
		// Overall: the union of 1..1000 and 2..2000 step 2. Its median
		// is the 1000th of 2000 values: 1..1000 and 2..2000 share 500
		// values ≤ 1000, so the 1000th smallest is 666 or 667.
		{"overall p50", rep.Overall.P50, 667},
		{"overall max", rep.Overall.Max, 2000},
		{"GET p99", rep.Ops[0].P99, 990},
		{"HEAD p50", rep.Ops[1].P50, 1000},
		{"lhr hit ratio", rep.Regions[0].HitRatio, 0.75},
		{"overall hit ratio", rep.Overall.HitRatio, 1750.0 / 2000},
		{"lhr rate", rep.Regions[0].Rate, 100},
		{"overall rate", rep.Overall.Rate, 200},
	}
	for _, tt := range tests {
		// HDR at 3 significant digits: within 0.1%, and one more
		// rank's worth for the merged overall figure.
		if !approxRel(tt.got, tt.want, 0.002) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if got := rep.Regions[1].Modelled; got != (Latency{}) {
		t.Errorf("nyc modelled = %+v, want zeros: no sample had a modelled latency", got)
	}
	if rep.Overall.Requests != 2000 || rep.Overall.Bytes != 100_000 {
		t.Errorf("overall requests, bytes = %d, %d, want 2000, 100000", rep.Overall.Requests, rep.Overall.Bytes)
	}
	if names := []string{rep.Ops[0].Name, rep.Ops[1].Name}; names[0] != "GET" || names[1] != "HEAD" {
		t.Errorf("ops = %v, want [GET HEAD]", names)
	}
}

func TestRecorderErrors(t *testing.T) {
	var r Recorder
	add := func(region string, class ErrorClass, n int) {
		for range n {
			r.Record(Sample{Region: region, Op: OpGet, Class: class, Latency: 5 * time.Second, Detail: "x"})
		}
	}
	add("lhr", "", 10)
	add("lhr", ClassTimeout, 3)
	add("lhr", Class5xx, 2)
	add("nyc", ClassConnect, 4)
	add("nyc", ClassOverload, 5)
	add("nyc", ClassCorrupt, maxBadKept+7)
	add("nyc", ClassStale, 2)

	rep := r.Report(RunInfo{})
	wantOverall := map[string]int64{"timeout": 3, "5xx": 2, "connect": 4, "overload": 5, "corrupt": maxBadKept + 7, "stale": 2}
	var total int64
	for c, n := range wantOverall {
		total += n
		if got := rep.Errors.ByClass[c]; got != n {
			t.Errorf("errors[%s] = %d, want %d", c, got, n)
		}
	}
	if rep.Errors.Total != total {
		t.Errorf("errors.total = %d, want %d", rep.Errors.Total, total)
	}
	if got := rep.Regions[0].Errors; got.Total != 5 || got.ByClass["timeout"] != 3 || got.ByClass["5xx"] != 2 {
		t.Errorf("lhr errors = %+v, want 3 timeout, 2 5xx", got)
	}
	if rep.Corrupt != maxBadKept+7 || len(rep.CorruptSamples) != maxBadKept {
		t.Errorf("corrupt = %d with %d kept, want %d with %d kept", rep.Corrupt, len(rep.CorruptSamples), maxBadKept+7, maxBadKept)
	}
	if rep.Stale != 2 || len(rep.StaleSamples) != 2 || rep.StaleSamples[0].Detail != "x" {
		t.Errorf("stale = %d, samples %+v, want 2 with detail x", rep.Stale, rep.StaleSamples)
	}
	// Overload samples were never sent: they count as requests and
	// errors but have no latency. Every other sample took 5 s.
	nyc := rep.Regions[1]
	if nyc.Requests != 4+5+maxBadKept+7+2 {
		t.Errorf("nyc requests = %d", nyc.Requests)
	}
	if !approxRel(nyc.P50, 5000, 0.001) {
		t.Errorf("nyc p50 = %v ms, want 5000: overload samples must not count as zero latency", nyc.P50)
	}
}

func TestRecorderTimeline(t *testing.T) {
	var r Recorder
	// Second 0: 100 requests of 10 ms; second 1: none; second 2: 50 of
	// 200 ms, 10 of them errors; one sample with a negative offset goes
	// to second 0.
	for i := range 100 {
		r.Record(Sample{Intended: time.Duration(i) * 10 * time.Millisecond, Latency: 10 * time.Millisecond, Region: "a", Op: OpGet, Hit: true, Bytes: 1})
	}
	for i := range 50 {
		s := Sample{Intended: 2*time.Second + time.Duration(i)*time.Millisecond, Latency: 200 * time.Millisecond, Region: "b", Op: OpGet, Fill: true}
		if i < 10 {
			s.Class, s.Fill = Class5xx, false
		}
		r.Record(s)
	}
	r.Record(Sample{Intended: -time.Second, Latency: 10 * time.Millisecond, Region: "a", Op: OpGet, Hit: true})

	rep := r.Report(RunInfo{Duration: 3500 * time.Millisecond})
	if len(rep.Timeline) != 4 {
		t.Fatalf("timeline has %d windows, want 4 (3.5 s rounded up)", len(rep.Timeline))
	}
	w0, w1, w2, w3 := rep.Timeline[0], rep.Timeline[1], rep.Timeline[2], rep.Timeline[3]
	if w0.Requests != 101 || w0.Hits != 101 || w0.HitRatio != 1 || w0.Rate != 101 || w0.Bytes != 100 {
		t.Errorf("window 0 = %+v, want 101 requests, all hits, 100 bytes", w0)
	}
	if w1.Requests != 0 || w1.P50 != 0 || w1.T != 1 {
		t.Errorf("window 1 = %+v, want empty at t=1", w1)
	}
	if w2.Requests != 50 || w2.Errors != 10 || w2.Fills != 40 || w2.HitRatio != 0 {
		t.Errorf("window 2 = %+v, want 50 requests, 10 errors, 40 fills", w2)
	}
	// The log histogram's quantiles are bucket upper bounds: at or
	// above the truth, by at most 1/32.
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"w0 p50", w0.P50, 10}, {"w0 p99", w0.P99, 10}, {"w2 p50", w2.P50, 200}, {"w2 p99", w2.P99, 200}} {
		if c.got < c.want || c.got > c.want*(1+1.0/32) {
			t.Errorf("%s = %v ms, want %v within +1/32", c.name, c.got, c.want)
		}
	}
	if w3.T != 3 || w3.Requests != 0 {
		t.Errorf("window 3 = %+v, want the empty half second at t=3", w3)
	}
}

func TestRecorderLogHistQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, scale := range []float64{10, 1e3, 1e5, 4e6} { // µs; 4e6 keeps the largest draw under histMax
		t.Run(fmt.Sprint(scale), func(t *testing.T) {
			var h logHist
			vals := make([]int64, 5000)
			for i := range vals {
				vals[i] = int64(rng.ExpFloat64() * scale)
				h.record(time.Duration(vals[i]) * time.Microsecond)
			}
			sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 1} {
				want := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.quantile(q).Microseconds()
				if got < want || float64(got) > float64(want)*(1+1.0/32)+1 {
					t.Errorf("q%v = %d µs, want %d µs (at most 1/32 above)", q, got, want)
				}
			}
		})
	}
}

func TestRecorderConcurrent(t *testing.T) {
	var r Recorder
	regions := []string{"lhr", "nyc", "sin", "syd"}
	ops := []Op{OpGet, OpHead, OpRange}
	const goroutines, each = 8, 2000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r.Record(Sample{
					Intended: time.Duration(i) * time.Millisecond,
					Latency:  time.Duration(1+i%50) * time.Millisecond,
					Region:   regions[(g+i)%len(regions)],
					Op:       ops[i%len(ops)],
					Hit:      i%2 == 0,
					Fill:     i%2 == 1,
					Bytes:    10,
				})
			}
		})
	}
	// Snapshots and a report mid-run must not race with Record.
	wg.Go(func() {
		for range 20 {
			r.Snapshot()
		}
		r.Report(RunInfo{})
	})
	wg.Wait()

	s := r.Snapshot()
	if s.Requests != goroutines*each || s.Bytes != 10*goroutines*each || s.Hits != goroutines*each/2 {
		t.Errorf("snapshot = %+v, want %d requests, half hits", s, goroutines*each)
	}
	rep := r.Report(RunInfo{})
	var sum int64
	for _, reg := range rep.Regions {
		sum += reg.Requests
	}
	var tl int64
	for _, w := range rep.Timeline {
		tl += w.Requests
	}
	if sum != goroutines*each || tl != goroutines*each {
		t.Errorf("regions sum to %d, timeline to %d, want %d", sum, tl, goroutines*each)
	}
}

func TestRecorderRecordDoesNotAllocate(t *testing.T) {
	var r Recorder
	s := Sample{Intended: 1500 * time.Millisecond, Latency: 3 * time.Millisecond, Modelled: 40 * time.Millisecond,
		Region: "lhr", Op: OpGet, Status: 200, Class: ClassTimeout, Hit: true, Bytes: 512, Key: "k"}
	r.Record(s) // the first sample of a region, op, class and second allocates
	if n := testing.AllocsPerRun(1000, func() { r.Record(s) }); n != 0 {
		t.Errorf("Record allocates %v times per sample, want 0", n)
	}
}

func TestRecorderSnapshot(t *testing.T) {
	r := NewRecorder()
	if s := r.Snapshot(); s != (Snapshot{}) {
		t.Errorf("empty snapshot = %+v, want zero", s)
	}
	for i := 1; i <= 100; i++ {
		s := Sample{Latency: time.Duration(i) * time.Millisecond, Region: "r", Op: OpGet, Hit: i <= 80, Fill: i > 80}
		if i == 100 {
			s.Class = ClassStale
		}
		r.Record(s)
	}
	s := r.Snapshot()
	if s.Requests != 100 || s.Errors != 1 || s.Stale != 1 || s.HitRatio != 0.8 {
		t.Errorf("snapshot = %+v, want 100 requests, 1 error (stale), hit ratio 0.8", s)
	}
	if !approxRel(float64(s.P50), float64(50*time.Millisecond), 0.001) || !approxRel(float64(s.P99), float64(99*time.Millisecond), 0.001) {
		t.Errorf("snapshot p50, p99 = %v, %v, want 50ms, 99ms", s.P50, s.P99)
	}
}

func BenchmarkRecorderRecord(b *testing.B) {
	var r Recorder
	regions := []string{"lhr", "nyc", "sin", "syd", "fra", "gru"}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(Sample{Intended: time.Duration(i) * time.Microsecond, Latency: time.Duration(i%5000) * time.Microsecond,
				Region: regions[i%len(regions)], Op: OpGet, Hit: true, Bytes: 1000})
			i++
		}
	})
}
