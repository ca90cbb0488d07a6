package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// benchResults reads `go test -bench` output: for each benchmark line, its
// name (without the -GOMAXPROCS suffix) and its metrics by unit.
func benchResults(path string) (map[string]map[string]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		out[name] = m
	}
	return out, nil
}

// resyncTable prints the tables of `BENCH_ONLY=resync`: BenchmarkResync1M
// (origin), BenchmarkStoreOpen1M (edge) and BenchmarkScrubHits
// (internal/cluster), each from its `go test -bench -v` output.
func resyncTable(args []string) error {
	fs := flag.NewFlagSet("resynctable", flag.ExitOnError)
	resyncIn := fs.String("resync", "", "BenchmarkResync1M output")
	storeIn := fs.String("store", "", "BenchmarkStoreOpen1M output")
	scrubIn := fs.String("scrub", "", "BenchmarkScrubHits output")
	objects := fs.Int("objects", 1_000_000, "objects the benchmarks ran with")
	fs.Parse(args)
	var sb strings.Builder
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	n := float64(*objects)

	if *resyncIn != "" {
		r, err := benchResults(*resyncIn)
		if err != nil {
			return err
		}
		if len(r) == 0 {
			return fmt.Errorf("%s: no BenchmarkResync1M result", *resyncIn)
		}
		fmt.Fprintf(&sb, "Resync of one edge holding all %s objects of its origin (loopback QUIC, in-process):\n\n", thousands(n))
		sb.WriteString("| differences | bytes exchanged | of a full listing | round trips | resync (edge's measure) | Resync() call | entries exchanged | goal | met |\n")
		sb.WriteString("|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
		listing := 0.0
		for _, d := range []int{0, 100, 10_000} {
			m, ok := r[fmt.Sprintf("BenchmarkResync1M/resync/diffs=%d", d)]
			if !ok {
				continue
			}
			listing = m["listing-bytes"]
			goal, met := "report", "—"
			switch d {
			case 0:
				goal = "1 round trip, < 1 KiB"
				met = yes(m["round-trips"] == 1 && m["bytes"] < 1024)
			case 100:
				goal = "≤ 1% of a full listing, ≤ 5 s"
				met = yes(m["listing-%"] <= 1 && m["ns/op"] <= 5e9)
			}
			fmt.Fprintf(&sb, "| %s | %s B | %s | %.0f | %.0f ms | %.0f ms | %s | %s | %s |\n", thousands(float64(d)), thousands(m["bytes"]),
				percent(m["listing-%"]), m["round-trips"], m["edge-ms"], m["ns/op"]/1e6, thousands(m["entries"]), goal, met)
		}
		if listing > 0 {
			fmt.Fprintf(&sb, "\nA full listing of the catalog's tuples (namespace, key, LSN, digest in LeafTuples frames) is %s bytes (%.1f MiB).\n", thousands(listing), listing/(1<<20))
		}
		if m, ok := r["BenchmarkResync1M/snapshot"]; ok {
			sb.WriteString("\n| snapshot catch-up | entries | on the wire | catch-up (start → caught up and healthy) | edge's measure | entries/s |\n")
			sb.WriteString("|---|---:|---:|---:|---:|---:|\n")
			fmt.Fprintf(&sb, "| empty index, far behind the compacted log | %s | %.1f MB | %.1f s | %.1f s | %s |\n",
				thousands(m["entries"]), m["wire-MB"], m["catchup-ms"]/1e3, m["report-ms"]/1e3, thousands(m["entries/s"]))
		}
		if m, ok := r["BenchmarkResync1M/restart"]; ok {
			sb.WriteString("\n| edge restart | stop | start → index loaded | start → first 200 | start → lease held | restart (stop + first 200) | heap in use | edge's heap per object | goal | met |\n")
			sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
			restart := m["close-ms"] + m["serve-ms"]
			fmt.Fprintf(&sb, "| %s objects, one shared blob | %.0f ms | %.2f s | %.2f s | %.2f s | %.2f s | %.0f MiB | %.0f B | restart ≤ 5 s, ≤ 200 B/object | %s, %s |\n",
				thousands(n), m["close-ms"], m["open-ms"]/1e3, m["serve-ms"]/1e3, m["lease-ms"]/1e3, restart/1e3, m["heap-MiB"], m["B/object"],
				yes(restart <= 5000), yes(m["B/object"] <= 200))
		}
	}

	if *storeIn != "" {
		r, err := benchResults(*storeIn)
		if err != nil {
			return err
		}
		sb.WriteString("\nEdge store alone (BenchmarkStoreOpen1M): heap in use with the store open less before, per object, and the open's time:\n\n")
		sb.WriteString("| index | objects | heap | per object | open | goal ≤ 200 B/object |\n")
		sb.WriteString("|---|---:|---:|---:|---:|---|\n")
		for _, v := range []struct{ id, label string }{
			{"distinct", "one blob per object (as in production)"},
			{"distinct-noheaders", "the same, without the per-version response headers"},
			{"shared", "one blob for all"},
			{"empty", "empty (fixed cost)"},
		} {
			m, ok := r["BenchmarkStoreOpen1M/"+v.id]
			if !ok {
				continue
			}
			if v.id == "empty" {
				fmt.Fprintf(&sb, "| %s | 0 | %.1f MiB | — | %.2f s | — |\n", v.label, m["heap-MiB"], m["open-ms"]/1e3)
				continue
			}
			fmt.Fprintf(&sb, "| %s | %s | %.0f MiB | %.0f B | %.2f s | %s |\n", v.label, thousands(n), m["heap-MiB"], m["B/object"], m["open-ms"]/1e3, yes(m["B/object"] <= 200))
		}
	}

	if *scrubIn != "" {
		r, err := benchResults(*scrubIn)
		if err != nil {
			return err
		}
		sb.WriteString("\nHits with the edge's scrubber reading at its default rate (20 MiB/s = 20.97 MB/s) and idle, interleaved runs (BenchmarkScrubHits):\n\n")
		sb.WriteString("| hits | scrubber | req/s | p50 | p99 | p99.9 | p99 with / without (median of rounds) | scrub MB/s during the runs | whole pass MB/s |\n")
		sb.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, size := range []string{"hot-1KiB", "disk-64KiB"} {
			m, ok := r["BenchmarkScrubHits/"+size]
			if !ok {
				continue
			}
			for _, mode := range []string{"off", "on"} {
				ratio, rate, pass := "", "", ""
				if mode == "on" {
					ratio = fmt.Sprintf("%.2f", m["p99-ratio"])
					rate = fmt.Sprintf("%.2f", m["scrub-MB/s"])
					pass = fmt.Sprintf("%.2f", m["pass-MB/s"])
				}
				fmt.Fprintf(&sb, "| %s | %s | %s | %.0f µs | %.0f µs | %.0f µs | %s | %s | %s |\n", size, mode,
					thousands(m["req/s-"+mode]), m["p50-µs-"+mode], m["p99-µs-"+mode], m["p999-µs-"+mode], ratio, rate, pass)
			}
		}
	}
	if sb.Len() == 0 {
		return fmt.Errorf("no input: give -resync, -store or -scrub")
	}
	fmt.Print(sb.String())
	return nil
}

// thousands formats v rounded to an integer with commas between thousands.
func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// percent formats a percentage with two significant digits at least.
func percent(v float64) string {
	switch {
	case v == 0:
		return "0%"
	case v < 0.01:
		return strconv.FormatFloat(v, 'f', 6, 64) + "%"
	case v < 1:
		return strconv.FormatFloat(v, 'f', 3, 64) + "%"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "%"
}
