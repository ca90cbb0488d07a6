// Command mapserver is the benchmarks' baseline: a plain net/http server
// that answers GET /<path> with the bytes of the file <content>/<path>,
// all loaded into a map at start. It is what serving from RAM costs in Go
// with no cache logic at all, and the origin behind the nginx proxy_cache.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"
)

type object struct {
	body   []byte
	length []string // Content-Length, formatted once
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18100", "listen address")
	dir := flag.String("content", "", "directory whose files are served (required)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile, from start to SIGTERM, to this file")
	cacheControl := flag.String("cache-control", "", "Cache-Control field of every response (none if empty)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("mapserver: -content is required")
	}
	objects := map[string]object{}
	var total int64
	err := filepath.WalkDir(*dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(*dir, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objects["/"+filepath.ToSlash(rel)] = object{body: b, length: []string{strconv.Itoa(len(b))}}
		total += int64(len(b))
		return nil
	})
	if err != nil {
		log.Fatalf("mapserver: load %s: %v", *dir, err)
	}
	contentType := []string{"application/octet-stream"}
	var cc []string
	if *cacheControl != "" {
		cc = []string{*cacheControl}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		o, ok := objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		hd := w.Header()
		hd["Content-Type"] = contentType
		hd["Content-Length"] = o.length
		if cc != nil {
			hd["Cache-Control"] = cc
		}
		if r.Method == http.MethodGet {
			w.Write(o.body)
		}
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("mapserver: %v", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatalf("mapserver: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatalf("mapserver: %v", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	fmt.Printf("mapserver: %d objects, %d bytes, listening on %s\n", len(objects), total, ln.Addr())
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("mapserver: %v", err)
	}
}
