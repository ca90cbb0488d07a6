package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// writes sends -count publishes (1 KiB each, distinct content) or purges
// (one key each) to an origin's admin API from -clients concurrent
// clients, and prints one JSON line: the operation, the count and the
// rate. Bounded by -count and -timeout; the first failure stops it.
//
// -op etcd-put instead puts -size bytes under a distinct key through an
// etcd member's JSON gateway (POST /v3/kv/put): the same client, the same
// HTTP/1.1 requests, against a proven raft store, for a side-by-side
// figure (bench/etcd.sh).
//
//	benchtool writes -origin URL -token-file F [-op publish|purge|etcd-put] [-count 20000] [-clients 64]
func writes(args []string) error {
	fs := flag.NewFlagSet("writes", flag.ExitOnError)
	origin := fs.String("origin", "", "origin admin URL")
	tokenFile := fs.String("token-file", "", "admin token file")
	op := fs.String("op", "publish", "publish, purge or etcd-put")
	count := fs.Int("count", 20000, "operations in all")
	clients := fs.Int("clients", 64, "concurrent clients")
	size := fs.Int("size", 1024, "bytes per publish")
	prefix := fs.String("prefix", "bench/writes", "key prefix")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Parse(args)
	etcd := *op == "etcd-put"
	if *origin == "" || (*tokenFile == "" && !etcd) || (*op != "publish" && *op != "purge" && !etcd) || *size < 16 {
		return fmt.Errorf("writes: -origin, -op publish|purge|etcd-put and (but for etcd-put) -token-file are required, -size at least 16")
	}
	var auth string
	if !etcd {
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		auth = "Bearer " + strings.TrimSpace(string(tok))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(*timeout)
	var (
		next   atomic.Int64
		ok     atomic.Int64
		failed atomic.Value
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range *clients {
		wg.Go(func() {
			body := bytes.Repeat([]byte("w"), *size)
			for {
				i := next.Add(1)
				if i > int64(*count) || failed.Load() != nil || time.Now().After(deadline) {
					return
				}
				var req *http.Request
				switch *op {
				case "publish":
					copy(body, fmt.Sprintf("%016d", i))
					req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/objects/%s/%d", *origin, *prefix, i), bytes.NewReader(body))
				case "purge":
					req, _ = http.NewRequest(http.MethodPost, *origin+"/v1/purge", strings.NewReader(fmt.Sprintf(`{"keys":["%s/%d"]}`, *prefix, i)))
					req.Header.Set("Content-Type", "application/json")
				case "etcd-put":
					copy(body, fmt.Sprintf("%016d", i))
					put, _ := json.Marshal(map[string][]byte{"key": fmt.Appendf(nil, "%s/%d", *prefix, i), "value": body})
					req, _ = http.NewRequest(http.MethodPost, *origin+"/v3/kv/put", bytes.NewReader(put))
					req.Header.Set("Content-Type", "application/json")
				}
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					failed.Store(fmt.Errorf("%s %d: %s", *op, i, resp.Status))
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	done := ok.Load()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"op": *op, "count": done, "clients": *clients, "seconds": elapsed.Seconds(), "per_second": float64(done) / elapsed.Seconds(),
	})
}
