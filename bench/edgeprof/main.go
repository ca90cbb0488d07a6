// Command edgeprof profiles a geocdn edge's hit path under real load: it
// runs an origin and one edge in this process (internal/cluster, the same
// code as `geocdn origin` and `geocdn edge`), publishes every file of
// -content with w=all, then for each size directory runs wrk (a separate
// process, so not in the profile) against the edge while it records a CPU
// profile to <out>/cpu-<size>.prof.
//
// With -https ADDR the edge also serves TLS there, from a throwaway
// self-signed certificate, and the load is h2load over HTTP/2 (-h2load
// flags) instead of wrk, for profiling the HTTP/2 hit path.
//
//	edgeprof -content DIR -out DIR [-addr 127.0.0.1:18105] [-duration 10s] [-https 127.0.0.1:18106]
package main

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/internal/pki"
)

func main() {
	content := flag.String("content", "", "content directory: <size>/<nnnnn>.bin (required)")
	out := flag.String("out", "", "directory for the profiles (required)")
	addr := flag.String("addr", "127.0.0.1:18105", "edge HTTP address")
	sizes := flag.String("sizes", "1k,64k,1m", "size directories to load, in order")
	duration := flag.String("duration", "10s", "wrk -d of each run")
	lua := flag.String("lua", "bench/urls.lua", "wrk script")
	wrkArgs := flag.String("wrk", "-t2 -c64", "other wrk flags")
	httpsAddr := flag.String("https", "", "edge HTTPS address; when set, load HTTP/2 with h2load there")
	h2loadArgs := flag.String("h2load", "-c64 -t2 -m10", "other h2load flags (with -https)")
	flag.Parse()
	if *content == "" || *out == "" {
		log.Fatal("edgeprof: -content and -out are required")
	}
	dir, err := os.MkdirTemp(filepath.Dir(*content), "edgeprof-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := cluster.Config{
		Dir:    dir,
		Edges:  []cluster.EdgeSpec{{ID: "bench", Region: "local", HTTPAddr: *addr, HTTPSAddr: *httpsAddr}},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if *httpsAddr != "" {
		// A throwaway certificate, which h2load does not verify.
		cert, _, err := pki.Loopback(24 * time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		cfg.EdgeCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	c, err := cluster.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for e := c.Edges()[0]; e.Edge() == nil || !e.Edge().Healthy(); {
		if time.Now().After(deadline) {
			log.Fatal("edgeprof: edge not healthy after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, size := range strings.Split(*sizes, ",") {
		n, err := publishDir(c, *content, size)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("edgeprof: published %d objects of %s\n", n, size)
	}
	for _, size := range strings.Split(*sizes, ",") {
		n := countFiles(filepath.Join(*content, size))
		base := "http://" + *addr
		// Warm the hot tier as the benchmark does: every object, twice.
		for range 2 {
			for i := range n {
				resp, err := http.Get(fmt.Sprintf("%s/%s/%05d.bin", base, size, i))
				if err != nil {
					log.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		f, err := os.Create(filepath.Join(*out, "cpu-"+size+".prof"))
		if err != nil {
			log.Fatal(err)
		}
		args := append(strings.Fields(*wrkArgs), "-d"+*duration, "-s", *lua, base)
		cmd := exec.Command("wrk", args...)
		cmd.Env = append(os.Environ(), "BENCH_PREFIX=/"+size+"/", fmt.Sprintf("BENCH_COUNT=%d", n))
		if *httpsAddr != "" {
			urls := filepath.Join(*out, "urls-"+size+".txt")
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "https://%s/%s/%05d.bin\n", *httpsAddr, size, i)
			}
			if err := os.WriteFile(urls, []byte(b.String()), 0o644); err != nil {
				log.Fatal(err)
			}
			cmd = exec.Command("h2load", append(strings.Fields(*h2loadArgs), "-D", strings.TrimSuffix(*duration, "s"), "-i", urls)...)
		}
		var wout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &wout, &wout
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		err = cmd.Run()
		pprof.StopCPUProfile()
		f.Close()
		os.WriteFile(filepath.Join(*out, "wrk-"+size+".txt"), wout.Bytes(), 0o644)
		if err != nil {
			log.Fatalf("edgeprof: wrk: %v\n%s", err, wout.String())
		}
		for _, l := range strings.Split(wout.String(), "\n") {
			if strings.HasPrefix(l, "Requests/sec") || strings.HasPrefix(l, "finished in") {
				fmt.Printf("edgeprof: %s: %s (under the profiler)\n", size, strings.TrimSpace(l))
			}
		}
	}
}

func countFiles(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// publishDir publishes every file of content/size with w=all.
func publishDir(c *cluster.Cluster, content, size string) (int, error) {
	ents, err := os.ReadDir(filepath.Join(content, size))
	if err != nil {
		return 0, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(content, size, name))
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequest(http.MethodPut, c.OriginURL()+"/v1/objects/"+size+"/"+name+"?w=all", bytes.NewReader(b))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Cache-Control", "public, max-age=3600")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return 0, fmt.Errorf("publish %s/%s: %s %s", size, name, resp.Status, body)
		}
	}
	return len(names), nil
}
