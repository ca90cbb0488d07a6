// Command benchtool holds the helpers of bench/run.sh: it generates the
// benchmark content, publishes it to a geocdn origin, warms and checks the
// servers under test, and turns raw wrk and `go test -bench` output into
// markdown tables.
//
//	benchtool gen     -dir DIR [-count 1000]
//	benchtool publish -origin URL -token-file F -dir DIR [-w all]
//	benchtool wait    -url URL [-timeout 30s]
//	benchtool warm    -base URL -dir DIR [-header H -want V]
//	benchtool table   -dir OUT            (wrk-<server>-<size>-r<run>.txt)
//	benchtool pushtable -in push.txt
//	benchtool tcptable -in servehit-tcp.txt
//	benchtool resynctable [-resync F] [-store F] [-scrub F] [-objects N]
//	benchtool writes  -origin URL -token-file F [-op publish|purge] [-count N] [-clients 64]
//	benchtool webcert|warmtls|h3load|handshakes|tlstable (tls.go)
//	benchtool dnsqueries -name N -out F (dns.go)
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// sizes are the object sizes of the HTTP benchmark; Dir is the URL's first
// path segment.
var sizes = []struct {
	Name  string
	Dir   string
	Bytes int
}{
	{"1 KiB", "1k", 1 << 10},
	{"64 KiB", "64k", 64 << 10},
	{"1 MiB", "1m", 1 << 20},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool gen|publish|wait|warm|table|pushtable|tcptable|resynctable|writes|webcert|warmtls|h3load|handshakes|tlstable|dnsqueries [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"gen": gen, "publish": publish, "wait": wait, "warm": warm,
		"webcert": webCert, "warmtls": warmTLS, "h3load": h3load, "handshakes": handshakes, "tlstable": tlsTable,
		"table": table, "pushtable": pushTable, "tcptable": tcpTable, "resynctable": resyncTable,
		"writes": writes, "dnsqueries": dnsQueries,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "benchtool: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// objectPath is the relative path of object i of a size.
func objectPath(dir string, i int) string { return fmt.Sprintf("%s/%05d.bin", dir, i) }

// gen writes count objects of every size: incompressible bytes, the same
// on every run (seeded by size and index).
func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory")
	count := fs.Int("count", 1000, "objects per size")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("-dir is required")
	}
	for _, s := range sizes {
		if err := os.MkdirAll(filepath.Join(*dir, s.Dir), 0o755); err != nil {
			return err
		}
		buf := make([]byte, s.Bytes)
		for i := 0; i < *count; i++ {
			p := filepath.Join(*dir, objectPath(s.Dir, i))
			if fi, err := os.Stat(p); err == nil && fi.Size() == int64(s.Bytes) {
				continue
			}
			var seed [32]byte
			binary.LittleEndian.PutUint64(seed[0:], uint64(s.Bytes))
			binary.LittleEndian.PutUint64(seed[8:], uint64(i))
			rand.NewChaCha8(seed).Read(buf)
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// onlySizes, when set (-sizes), limits forEachObject to these size
// directories.
var onlySizes []string

func sizesFlag(fs *flag.FlagSet) {
	fs.Func("sizes", "comma-separated size directories (default: 1k,64k,1m)", func(v string) error {
		onlySizes = strings.Split(v, ",")
		return nil
	})
}

// forEachObject runs fn on every object with conc workers and returns the
// first error.
func forEachObject(count, conc int, fn func(size, rel string) error) error {
	type job struct{ size, rel string }
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := fn(j.size, j.rel); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, s := range sizes {
		if len(onlySizes) > 0 && !slices.Contains(onlySizes, s.Dir) {
			continue
		}
		for i := 0; i < count; i++ {
			mu.Lock()
			failed := firstErr != nil
			mu.Unlock()
			if failed {
				break
			}
			jobs <- job{s.Name, objectPath(s.Dir, i)}
		}
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// publish PUTs every object to a geocdn origin with w= (default all), so
// the edges hold them all when it returns.
func publish(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ExitOnError)
	origin := fs.String("origin", "", "origin admin URL")
	tokenFile := fs.String("token-file", "", "admin token file")
	dir := fs.String("dir", "", "content directory")
	count := fs.Int("count", 1000, "objects per size")
	w := fs.String("w", "all", "w= of each publish")
	conc := fs.Int("concurrency", 4, "publishes in flight")
	sizesFlag(fs)
	fs.Parse(args)
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	client := &http.Client{Timeout: time.Minute}
	var n atomic.Int64
	start := time.Now()
	err = forEachObject(*count, *conc, func(_, rel string) error {
		f, err := os.Open(filepath.Join(*dir, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPut, *origin+"/v1/objects/"+rel+"?w="+*w, f)
		if err != nil {
			return err
		}
		req.ContentLength = fi.Size()
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Cache-Control", "public, max-age=3600")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("publish %s: %w", rel, err)
		}
		defer resp.Body.Close()
		var res struct {
			Acked []string `json:"acked"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("publish %s: %s: %s", rel, resp.Status, bytes.TrimSpace(body))
		}
		if err := json.Unmarshal(body, &res); err != nil {
			return fmt.Errorf("publish %s: %w", rel, err)
		}
		if *w != "0" && len(res.Acked) == 0 {
			return fmt.Errorf("publish %s: no edge acknowledged: %s", rel, body)
		}
		n.Add(1)
		return nil
	})
	fmt.Printf("published %d objects with w=%s in %v\n", n.Load(), *w, time.Since(start).Round(time.Millisecond))
	return err
}

// wait polls url until it answers 200.
func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	url := fs.String("url", "", "URL to poll")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	fs.Parse(args)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(*timeout)
	for {
		resp, err := client.Get(*url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %s", resp.Status)
			}
			return fmt.Errorf("%s not ready after %v: %v", *url, *timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// warm fetches every object twice: the first pass fills whatever cache the
// server has and checks the bytes against the content directory; the
// second checks that header (if given) says want on every answer.
func warm(args []string) error {
	fs := flag.NewFlagSet("warm", flag.ExitOnError)
	base := fs.String("base", "", "server base URL")
	dir := fs.String("dir", "", "content directory")
	count := fs.Int("count", 1000, "objects per size")
	header := fs.String("header", "", "response header that tells a cache hit")
	want := fs.String("want", "HIT", "value of -header on a hit")
	conc := fs.Int("concurrency", 8, "requests in flight")
	sizesFlag(fs)
	fs.Parse(args)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}, Timeout: 30 * time.Second}
	get := func(rel string) (*http.Response, []byte, error) {
		resp, err := client.Get(*base + "/" + rel)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, nil, fmt.Errorf("GET %s: %s", rel, resp.Status)
		}
		return resp, b, nil
	}
	return warmPasses(get, *count, *conc, *dir, *header, *want, *base)
}

// warmPasses runs warm's two passes with get, which fetches one object:
// the first checks every object's bytes against dir, the second that
// header (if given) says want on every answer. what names the server in
// the summary line.
func warmPasses(get func(rel string) (*http.Response, []byte, error), count, conc int, dir, header, want, what string) error {
	err := forEachObject(count, conc, func(_, rel string) error {
		_, b, err := get(rel)
		if err != nil {
			return err
		}
		content, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(b, content) {
			return fmt.Errorf("GET %s: %d bytes that differ from the content (%d bytes)", rel, len(b), len(content))
		}
		return nil
	})
	if err != nil {
		return err
	}
	var hits, total atomic.Int64
	var notHit atomic.Value
	err = forEachObject(count, conc, func(_, rel string) error {
		resp, _, err := get(rel)
		if err != nil {
			return err
		}
		total.Add(1)
		if header == "" || resp.Header.Get(header) == want {
			hits.Add(1)
		} else {
			notHit.Store(fmt.Sprintf("%s: %s=%q", rel, header, resp.Header.Get(header)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if header == "" {
		fmt.Printf("warm %s: %d objects fetched twice, bytes checked\n", what, total.Load())
		return nil
	}
	fmt.Printf("warm %s: %d objects fetched twice, bytes checked, %d of %d answered %s: %s\n",
		what, total.Load(), hits.Load(), total.Load(), header, want)
	if hits.Load() != total.Load() {
		return fmt.Errorf("not every object is a hit after warming (e.g. %v)", notHit.Load())
	}
	return nil
}

// wrkResult is the RESULT line bench/urls.lua prints when wrk is done.
type wrkResult struct {
	Requests, DurationUS, Bytes float64
	P50, P90, P99, Max          float64 // µs
	Errors                      float64
}

func (r wrkResult) rps() float64 { return r.Requests / (r.DurationUS / 1e6) }

func parseWrk(path string) (wrkResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wrkResult{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "RESULT ") {
			continue
		}
		kv := map[string]float64{}
		for _, f := range strings.Fields(line)[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("%s: %s: %w", path, f, err)
			}
			kv[k] = x
		}
		r := wrkResult{
			Requests: kv["requests"], DurationUS: kv["duration_us"], Bytes: kv["bytes"],
			P50: kv["p50_us"], P90: kv["p90_us"], P99: kv["p99_us"], Max: kv["max_us"],
			Errors: kv["err_connect"] + kv["err_read"] + kv["err_write"] + kv["err_status"] + kv["err_timeout"],
		}
		if r.DurationUS <= 0 {
			return wrkResult{}, fmt.Errorf("%s: no duration", path)
		}
		return r, nil
	}
	return wrkResult{}, fmt.Errorf("%s: no RESULT line (did wrk run with bench/urls.lua?)", path)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// servers are the HTTP benchmark's servers, in table order.
var servers = []struct{ ID, Label string }{
	{"gomap", "Go net/http map"},
	{"nginx", "nginx proxy_cache"},
	{"ats", "Apache Traffic Server"},
	{"geocdn", "geocdn edge"},
	{"geocdnpull", "geocdn edge, pulled"},
}

// table prints the HTTP benchmark's markdown table from the wrk outputs
// wrk-<server>-<size>-r<run>.txt in -dir: medians over the runs, and
// ratios to the Go map server as the median of the per-run ratios (run r
// of every server at a size ran back to back, so they shared the
// machine's state of the moment).
func table(args []string) error {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	dir := fs.String("dir", "", "directory of wrk outputs")
	fs.Parse(args)
	files, err := filepath.Glob(filepath.Join(*dir, "wrk-*-r*.txt"))
	if err != nil {
		return err
	}
	cells := map[[2]string]map[int]wrkResult{} // (server, size) → run → result
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".txt"), "-")
		if len(parts) != 4 || !strings.HasPrefix(parts[3], "r") {
			continue
		}
		run, err := strconv.Atoi(parts[3][1:])
		if err != nil {
			continue
		}
		r, err := parseWrk(f)
		if err != nil {
			return err
		}
		k := [2]string{parts[1], parts[2]}
		if cells[k] == nil {
			cells[k] = map[int]wrkResult{}
		}
		cells[k][run] = r
	}
	if len(cells) == 0 {
		return fmt.Errorf("no wrk results in %s", *dir)
	}
	var b strings.Builder
	b.WriteString("| size | server | runs | req/s | MB/s | p50 | p99 | req/s vs Go map | req/s of each run | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, s := range sizes {
		base := cells[[2]string{"gomap", s.Dir}]
		for _, sv := range servers {
			c := cells[[2]string{sv.ID, s.Dir}]
			if c == nil {
				continue
			}
			runs := slices.Sorted(maps.Keys(c))
			var rps, p50, p99, ratios []float64
			var each []string
			var errs float64
			for _, run := range runs {
				r := c[run]
				rps = append(rps, r.rps())
				p50 = append(p50, r.P50)
				p99 = append(p99, r.P99)
				errs += r.Errors
				each = append(each, fmtInt(r.rps()))
				if br, ok := base[run]; ok {
					ratios = append(ratios, r.rps()/br.rps())
				}
			}
			m := median(rps)
			ratio := "—"
			if len(ratios) > 0 {
				ratio = fmt.Sprintf("%.2f", median(ratios))
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %.1f | %s | %s | %s | %s | %.0f |\n",
				s.Name, sv.Label, len(runs), fmtInt(m), m*float64(s.Bytes)/1e6,
				fmtLatency(median(p50)), fmtLatency(median(p99)), ratio, strings.Join(each, " / "), errs)
		}
	}
	fmt.Print(b.String())
	return nil
}

// fmtInt formats n rounded with thousands separators.
func fmtInt(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func fmtLatency(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}

// pushVariants are BenchmarkPush's variants, in table order.
var pushVariants = []struct{ ID, Label string }{
	{"geocdn", "geocdn push, commit → edge stored (sha256, fsync, rename, index)"},
	{"raw-discard", "raw quic-go stream → io.Discard"},
	{"raw-file-sha256", "raw quic-go stream → file + sha256"},
	{"raw-file-sha256-fsync", "raw quic-go stream → file + sha256 + fsync"},
}

// pushTable prints the push benchmark's table from `go test -v -bench
// Push` output: the metrics of the BenchmarkPush line (medians) and the
// per-round lines it logs.
func pushTable(args []string) error {
	fs := flag.NewFlagSet("pushtable", flag.ExitOnError)
	in := fs.String("in", "", "go test -bench output")
	fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	m := map[string]float64{}
	rounds := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.HasPrefix(f[0], "BenchmarkPush"):
			for i := 2; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					m[f[i+1]] = v
				}
			}
		case len(f) >= 6 && f[1] == "round":
			// push_bench_test.go:NN: round N VARIANT X MiB/s DURATION
			rounds[f[3]] = append(rounds[f[3]], f[4])
		}
	}
	if len(m) == 0 {
		return fmt.Errorf("%s: no BenchmarkPush result", *in)
	}
	// Ratios are medians of per-round ratios: the variants of a round ran
	// back to back.
	ratio := func(id, ref string) string {
		a, b := rounds[id], rounds[ref]
		var rs []float64
		for i := 0; i < len(a) && i < len(b); i++ {
			x, err1 := strconv.ParseFloat(a[i], 64)
			y, err2 := strconv.ParseFloat(b[i], 64)
			if err1 == nil && err2 == nil && y > 0 {
				rs = append(rs, x/y)
			}
		}
		if len(rs) == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f %%", 100*median(rs))
	}
	var sb strings.Builder
	sb.WriteString("| 256 MiB over loopback QUIC | MiB/s | time | vs raw → file+sha256+fsync | vs raw → io.Discard | MiB/s of each run |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---|\n")
	for _, v := range pushVariants {
		fmt.Fprintf(&sb, "| %s | %.0f | %.0f ms | %s | %s | %s |\n", v.Label, m[v.ID+"-MiB/s"], m[v.ID+"-ms"],
			ratio(v.ID, "raw-file-sha256-fsync"), ratio(v.ID, "raw-discard"), strings.Join(rounds[v.ID], " / "))
	}
	fmt.Fprintf(&sb, "\ngeocdn publish of 256 MiB with w=all (medians): upload to the origin %.0f ms; "+
		"last body byte → commit (sha256, fsync, catalog) %.0f ms; commit → edge stored %.0f ms; whole PUT %.0f ms.\n",
		m["upload-ms"], m["commit-ms"], m["geocdn-ms"], m["publish-ms"])
	fmt.Print(sb.String())
	return nil
}

// tcpTable prints BenchmarkServeHitTCP's results (medians over -count)
// as a table: edge and plain handler side by side per object.
func tcpTable(args []string) error {
	fs := flag.NewFlagSet("tcptable", flag.ExitOnError)
	in := fs.String("in", "", "go test -bench ServeHitTCP output")
	fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	vals := map[string]map[string][]float64{} // name → unit → values
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkServeHitTCP/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkServeHitTCP/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if vals[name] == nil {
			vals[name] = map[string][]float64{}
			names = append(names, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[name][f[i+1]] = append(vals[name][f[i+1]], v)
			}
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%s: no BenchmarkServeHitTCP results", *in)
	}
	handlers := []struct{ prefix, label string }{
		{"edge-pulled-", "geocdn edge, pulled object"},
		{"edge-tls-", "geocdn edge over TLS"},
		{"plain-tls-", "plain over TLS (net/http), w.Write from memory"},
		{"edge-", "geocdn edge"},
		{"plain-sendfile-", "plain, io.Copy from a file (sendfile)"},
		{"plain-", "plain, w.Write from memory"},
	}
	split := func(name string) (prefix, label, object string) {
		for _, h := range handlers {
			if o, ok := strings.CutPrefix(name, h.prefix); ok {
				return h.prefix, h.label, o
			}
		}
		return "", name, ""
	}
	var sb strings.Builder
	sb.WriteString("| object | handler | µs/response | MB/s | write syscalls/response | B/op | allocs/op | time vs plain w.Write |\n")
	sb.WriteString("|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range names {
		prefix, label, object := split(name)
		m := func(unit string) float64 { return median(vals[name][unit]) }
		// Over TLS, against the plain handler over TLS.
		base := "plain-"
		if strings.Contains(prefix, "tls-") {
			base = "plain-tls-"
		}
		ratio := "—"
		if p := vals[base+object]; prefix != base && prefix != "plain-" && p != nil {
			ratio = fmt.Sprintf("%.2f×", m("ns/op")/median(p["ns/op"]))
		}
		fmt.Fprintf(&sb, "| %s | %s | %.1f | %.0f | %.2f | %.0f | %.0f | %s |\n", object, label,
			m("ns/op")/1000, m("MB/s"), m("server-writes/op"), m("B/op"), m("allocs/op"), ratio)
	}
	fmt.Print(sb.String())
	return nil
}
