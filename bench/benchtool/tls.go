package main

// The helpers of run.sh's TLS part (run_tls): the edge and nginx over TLS
// with the same certificate and cipher, HTTP/3 next to HTTP/2 from one Go
// client, and TLS handshakes per second.
//
//	benchtool webcert    -ca DIR -out DIR [-hosts 127.0.0.1,localhost]
//	benchtool warmtls    -base URL -ca CA.crt -dir DIR [-proto h1|h2|h3] [-header H -want V]
//	benchtool h3load     -url-list FILE -ca CA.crt [-proto h2|h3] [-conns 64] [-streams 10] [-duration 10s]
//	benchtool handshakes -addr HOST:PORT -ca CA.crt [-mode full|resumed] [-conns 64] [-duration 10s]
//	benchtool tlstable   -dir OUT
//
// h3load and handshakes print a RESULT line of key=value fields that
// tlstable reads back, as bench/urls.lua does for wrk.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/geocdn/geocdn/internal/pki"
)

// webCert issues the web certificate the edge and nginx both serve, from
// the benchmark's development CA.
func webCert(args []string) error {
	fs := flag.NewFlagSet("webcert", flag.ExitOnError)
	caDir := fs.String("ca", "", "CA directory (geocdn ca init)")
	out := fs.String("out", "", "output directory for web-bench.crt and web-bench.key")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "comma-separated names and addresses the certificate is for")
	fs.Parse(args)
	if *caDir == "" || *out == "" {
		return errors.New("-ca and -out are required")
	}
	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	crt, key, err := pki.IssueWebFiles(ca, "bench", strings.Split(*hosts, ","), *out, time.Now(), 30*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Println(crt, key)
	return nil
}

// clientTLS is the client side of every TLS benchmark: TLS 1.3 only,
// trusting the CA in caFile. curve "x25519" pins the key exchange to
// X25519, the group OpenSSL 3.0 (nginx, h2load) agrees on; Go's default
// would be the hybrid X25519MLKEM768 with a Go server, a different and
// costlier exchange than nginx gets.
func clientTLS(caFile, curve string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	switch curve {
	case "x25519":
		conf.CurvePreferences = []tls.CurveID{tls.X25519}
	case "default":
	default:
		return nil, fmt.Errorf("-curve %q: want x25519 or default", curve)
	}
	return conf, nil
}

// tlsFields describes a negotiated connection as RESULT fields.
func tlsFields(st *tls.ConnectionState) string {
	if st == nil {
		return "tls=none"
	}
	return fmt.Sprintf("tls=%s cipher=%s curve=%s alpn=%s",
		strings.ReplaceAll(tls.VersionName(st.Version), " ", ""), tls.CipherSuiteName(st.CipherSuite),
		st.CurveID, orNone(st.NegotiatedProtocol))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// httpsClient returns an HTTP client speaking proto (h1, h2 or h3) only,
// over its own connections, and a function that closes them.
func httpsClient(proto string, conf *tls.Config, maxConns int, timeout time.Duration, dials *atomic.Int64) (*http.Client, func(), error) {
	switch proto {
	case "h1", "h2":
		var p http.Protocols
		p.SetHTTP1(proto == "h1")
		p.SetHTTP2(proto == "h2")
		d := &net.Dialer{Timeout: 5 * time.Second}
		t := &http.Transport{
			TLSClientConfig:     conf.Clone(),
			Protocols:           &p,
			MaxIdleConnsPerHost: maxConns,
			DisableCompression:  true,
			TLSHandshakeTimeout: 5 * time.Second,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if dials != nil {
					dials.Add(1)
				}
				return d.DialContext(ctx, network, addr)
			},
		}
		return &http.Client{Transport: t, Timeout: timeout}, t.CloseIdleConnections, nil
	case "h3":
		// One http3.Transport holds one QUIC connection per host, on a UDP
		// socket of its own.
		t := &http3.Transport{
			TLSClientConfig:    conf.Clone(),
			DisableCompression: true,
			QUICConfig:         &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: time.Minute},
			Dial: func(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				if dials != nil {
					dials.Add(1)
				}
				// DialAddrEarly's socket is closed with its connection.
				return quic.DialAddrEarly(ctx, addr, tc, qc)
			},
		}
		return &http.Client{Transport: t, Timeout: timeout}, func() { t.Close() }, nil
	}
	return nil, nil, fmt.Errorf("-proto %q: want h1, h2 or h3", proto)
}

// protoMajor is the HTTP major version proto must answer with.
var protoMajor = map[string]int{"h1": 1, "h2": 2, "h3": 3}

// warmTLS is warm over TLS: every object fetched twice over proto, the
// bytes compared with the content directory, and the second pass's header
// (if given) must say want. Every answer must come over proto.
func warmTLS(args []string) error {
	fs := flag.NewFlagSet("warmtls", flag.ExitOnError)
	base := fs.String("base", "", "server base URL (https://host:port)")
	caFile := fs.String("ca", "", "CA certificate (PEM)")
	proto := fs.String("proto", "h1", "h1 (HTTP/1.1 over TLS), h2 or h3")
	dir := fs.String("dir", "", "content directory")
	count := fs.Int("count", 1000, "objects per size")
	header := fs.String("header", "", "response header that tells a cache hit")
	want := fs.String("want", "HIT", "value of -header on a hit")
	conc := fs.Int("concurrency", 8, "requests in flight")
	sizesFlag(fs)
	fs.Parse(args)
	conf, err := clientTLS(*caFile, "x25519")
	if err != nil {
		return err
	}
	client, closeConns, err := httpsClient(*proto, conf, *conc, 30*time.Second, nil)
	if err != nil {
		return err
	}
	defer closeConns()
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
		if resp.ProtoMajor != protoMajor[*proto] {
			return nil, nil, fmt.Errorf("GET %s: answered over %s, want %s", rel, resp.Proto, *proto)
		}
		return resp, b, nil
	}
	return warmPasses(get, *count, *conc, *dir, *header, *want, *base+" over "+*proto)
}

// readLines reads the non-empty lines of path.
func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no lines", path)
	}
	return out, nil
}

// newHist is a latency histogram in µs, up to a minute, 3 significant
// digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// window is a measurement: started at Start after warm-up, ending at End.
// A sample counts if it completed inside it.
type window struct{ Start, End time.Time }

func (w window) has(t time.Time) bool { return !t.Before(w.Start) && !t.After(w.End) }

// clientCPU returns a channel that receives, at w.End, the CPU time this
// process (the load generator) used during w, as a percentage of one
// core: what the client took from the cores it shares with the server.
func (w window) clientCPU() <-chan float64 {
	ch := make(chan float64, 1)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	go func() {
		time.Sleep(time.Until(w.Start))
		c0 := cpu()
		time.Sleep(time.Until(w.End))
		ch <- 100 * float64(cpu()-c0) / float64(w.End.Sub(w.Start))
	}()
	return ch
}

// h3load is a closed-loop load generator for HTTP/2 or HTTP/3 over the
// same Go client code: -conns connections (a Transport each, so each is
// really its own connection), -streams requests in flight on each, each
// worker cycling through the URL list from its own offset. Requests that
// complete inside the measured window (after -warmup, for -duration) are
// counted and their latency, request sent to last body byte, recorded.
// Bounded by -duration and -max-requests; a request that takes longer
// than -timeout is an error.
func h3load(args []string) error {
	fs := flag.NewFlagSet("h3load", flag.ExitOnError)
	list := fs.String("url-list", "", "file of https:// URLs, one a line, all of one server")
	proto := fs.String("proto", "h3", "h2 or h3")
	conns := fs.Int("conns", 64, "connections")
	streams := fs.Int("streams", 10, "requests in flight per connection")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "time on the same connections before measuring")
	caFile := fs.String("ca", "", "CA certificate (PEM) of the server's")
	curve := fs.String("curve", "x25519", "key exchange: x25519 or default (Go's)")
	maxReq := fs.Int64("max-requests", 50_000_000, "stop after this many requests in all")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	fs.Parse(args)
	if *proto != "h2" && *proto != "h3" {
		return fmt.Errorf("-proto %q: want h2 or h3", *proto)
	}
	if *conns < 1 || *streams < 1 || *duration <= 0 {
		return errors.New("-conns and -streams must be positive, -duration too")
	}
	urls, err := readLines(*list)
	if err != nil {
		return err
	}
	if err := sameHost(urls); err != nil {
		return err
	}
	conf, err := clientTLS(*caFile, *curve)
	if err != nil {
		return err
	}
	var dials atomic.Int64
	clients := make([]*http.Client, *conns)
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	// Open every connection with one request before the clock starts:
	// otherwise the first requests on a connection race to dial.
	var state *tls.ConnectionState
	for i := range clients {
		c, closeConns, err := httpsClient(*proto, conf, 1, *timeout, &dials)
		if err != nil {
			return err
		}
		closers = append(closers, closeConns)
		clients[i] = c
		resp, err := c.Get(urls[i%len(urls)])
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != protoMajor[*proto] {
			return fmt.Errorf("connection %d: %s over %s, want 200 over %s", i, resp.Status, resp.Proto, *proto)
		}
		state = resp.TLS
	}

	now := time.Now()
	w := window{Start: now.Add(*warmup), End: now.Add(*warmup + *duration)}
	cpuc := w.clientCPU()
	var issued atomic.Int64
	all := make([]*loopStats, *conns**streams)
	var wg sync.WaitGroup
	for i := range all {
		st := &loopStats{hist: newHist()}
		all[i] = st
		client := clients[i / *streams]
		next := i * len(urls) / len(all)
		wg.Go(func() {
			for time.Now().Before(w.End) && issued.Add(1) <= *maxReq {
				u := urls[next%len(urls)]
				next++
				start := time.Now()
				resp, err := client.Get(u)
				var n int64
				if err == nil {
					n, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case err != nil:
					case resp.StatusCode != http.StatusOK:
						err = fmt.Errorf("GET %s: %s", u, resp.Status)
					case resp.ContentLength >= 0 && n != resp.ContentLength:
						err = fmt.Errorf("GET %s: %d bytes of %d", u, n, resp.ContentLength)
					}
				}
				end := time.Now()
				if err != nil {
					st.fail(err)
					continue
				}
				if w.has(end) {
					st.n++
					st.bytes += n
					st.hist.RecordValue(max(1, end.Sub(start).Microseconds()))
				}
			}
		})
	}
	wg.Wait()
	clientCPU := <-cpuc
	sum := mergeStats(all)
	h, requests, nbytes, nerrs, firstErr := sum.hist, sum.n, sum.bytes, sum.errors, sum.firstErr
	secs := duration.Seconds()
	fmt.Printf("h3load: %s to %s, %d connections × %d streams, %v warm-up, %v measured\n",
		*proto, urls[0], *conns, *streams, *warmup, *duration)
	fmt.Printf("  %d requests, %.0f req/s, %.1f MB/s of body; latency p50 %s, p99 %s, max %s; %d errors; %d connections dialed; client CPU %.0f %%\n",
		requests, float64(requests)/secs, float64(nbytes)/secs/1e6,
		fmtLatency(float64(h.ValueAtQuantile(50))), fmtLatency(float64(h.ValueAtQuantile(99))),
		fmtLatency(float64(h.Max())), nerrs, dials.Load(), clientCPU)
	if firstErr != nil {
		fmt.Printf("  first error: %v\n", firstErr)
	}
	fmt.Printf("RESULT proto=%s conns=%d streams=%d requests=%d duration_us=%d bytes=%d mean_us=%.0f p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d dials=%d client_cpu_pct=%.0f %s\n",
		*proto, *conns, *streams, requests, duration.Microseconds(), nbytes, h.Mean(),
		h.ValueAtQuantile(50), h.ValueAtQuantile(90), h.ValueAtQuantile(99), h.Max(), nerrs, dials.Load(), clientCPU, tlsFields(state))
	return nil
}

// loopStats is what one load loop of h3load or handshakes counted; each
// loop has its own, merged when all are done.
type loopStats struct {
	hist              *hdrhistogram.Histogram
	n, bytes, resumed int64 // requests or handshakes; body bytes; resumed handshakes
	errors            int64
	firstErr          error
}

// fail counts err, keeping the first.
func (st *loopStats) fail(err error) {
	st.errors++
	if st.firstErr == nil {
		st.firstErr = err
	}
}

// mergeStats adds up the loops' counts and histograms.
func mergeStats(all []*loopStats) loopStats {
	sum := loopStats{hist: newHist()}
	for _, st := range all {
		sum.hist.Merge(st.hist)
		sum.n += st.n
		sum.bytes += st.bytes
		sum.resumed += st.resumed
		sum.errors += st.errors
		if sum.firstErr == nil {
			sum.firstErr = st.firstErr
		}
	}
	return sum
}

// handshakes measures TLS handshakes per second: -conns loops, each
// dialing TCP, handshaking (TLS 1.3, ALPN http/1.1), sending one HEAD
// request with Connection: close and reading the answer to the server's
// close. The request makes every server send its TLS 1.3 session tickets
// (they follow the handshake) before the client closes, and having the
// server close first keeps TIME_WAIT off the client's ports; both modes do
// it, so they differ in the handshake only. -mode resumed shares one
// session cache among the loops, filled by a first handshake, and counts
// the handshakes that resumed. Handshakes that complete inside the
// measured window (after -warmup, for -duration) count.
func handshakes(args []string) error {
	fs := flag.NewFlagSet("handshakes", flag.ExitOnError)
	addr := fs.String("addr", "", "server host:port")
	caFile := fs.String("ca", "", "CA certificate (PEM) of the server's")
	mode := fs.String("mode", "full", "full or resumed")
	conns := fs.Int("conns", 64, "handshake loops in parallel")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", time.Second, "time before measuring")
	path := fs.String("path", "/1k/00000.bin", "path of the HEAD request after each handshake")
	curve := fs.String("curve", "x25519", "key exchange: x25519 or default (Go's)")
	maxHS := fs.Int64("max", 10_000_000, "stop after this many handshakes in all")
	fs.Parse(args)
	if *mode != "full" && *mode != "resumed" {
		return fmt.Errorf("-mode %q: want full or resumed", *mode)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	conf, err := clientTLS(*caFile, *curve)
	if err != nil {
		return err
	}
	conf.ServerName = host
	conf.NextProtos = []string{"http/1.1"}
	if *mode == "resumed" {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	}
	req := []byte("HEAD " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\nConnection: close\r\n\r\n")
	first, _, err := handshakeOnce(*addr, conf, req)
	if err != nil {
		return fmt.Errorf("first handshake: %w", err)
	}
	if *mode == "resumed" {
		// The first one filled the cache; the second must resume.
		st, _, err := handshakeOnce(*addr, conf, req)
		if err != nil {
			return fmt.Errorf("second handshake: %w", err)
		}
		if !st.DidResume {
			return errors.New("the second handshake did not resume: no session ticket from the server?")
		}
	}

	now := time.Now()
	w := window{Start: now.Add(*warmup), End: now.Add(*warmup + *duration)}
	cpuc := w.clientCPU()
	var issued atomic.Int64
	all := make([]*loopStats, *conns)
	var wg sync.WaitGroup
	for i := range all {
		st := &loopStats{hist: newHist()}
		all[i] = st
		wg.Go(func() {
			for time.Now().Before(w.End) && issued.Add(1) <= *maxHS {
				cs, took, err := handshakeOnce(*addr, conf, req)
				end := time.Now()
				if err != nil {
					st.fail(err)
					continue
				}
				if w.has(end) {
					st.n++
					if cs.DidResume {
						st.resumed++
					}
					st.hist.RecordValue(max(1, took.Microseconds()))
				}
			}
		})
	}
	wg.Wait()
	clientCPU := <-cpuc
	sum := mergeStats(all)
	h, ok, resumed, nerrs, firstErr := sum.hist, sum.n, sum.resumed, sum.errors, sum.firstErr
	secs := duration.Seconds()
	fmt.Printf("handshakes: %s to %s, %d loops, %v warm-up, %v measured\n", *mode, *addr, *conns, *warmup, *duration)
	fmt.Printf("  %d handshakes, %.0f/s, %d resumed; handshake p50 %s, p99 %s; %d errors; client CPU %.0f %%\n",
		ok, float64(ok)/secs, resumed, fmtLatency(float64(h.ValueAtQuantile(50))),
		fmtLatency(float64(h.ValueAtQuantile(99))), nerrs, clientCPU)
	if firstErr != nil {
		fmt.Printf("  first error: %v\n", firstErr)
	}
	fmt.Printf("RESULT mode=%s conns=%d handshakes=%d resumed=%d duration_us=%d p50_us=%d p99_us=%d errors=%d client_cpu_pct=%.0f %s\n",
		*mode, *conns, ok, resumed, duration.Microseconds(), h.ValueAtQuantile(50), h.ValueAtQuantile(99),
		nerrs, clientCPU, tlsFields(&first))
	return nil
}

// handshakeOnce dials addr, handshakes, sends req and reads the answer
// to EOF. took is TCP connect plus handshake.
func handshakeOnce(addr string, conf *tls.Config, req []byte) (tls.ConnectionState, time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return tls.ConnectionState{}, 0, err
	}
	tc := tls.Client(c, conf)
	defer tc.Close()
	tc.SetDeadline(start.Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return tls.ConnectionState{}, 0, err
	}
	took := time.Since(start)
	st := tc.ConnectionState()
	if _, err := tc.Write(req); err != nil {
		return st, took, err
	}
	b, err := io.ReadAll(io.LimitReader(tc, 64<<10))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return st, took, err
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
		line, _, _ := bytes.Cut(b, []byte("\r\n"))
		return st, took, fmt.Errorf("HEAD answered %q", line)
	}
	return st, took, nil
}

// ---------------------------------------------------------------- tables

// h2loadResult is what tlstable reads from an h2load output.
type h2loadResult struct {
	RPS                   float64
	Succeeded, Failed     float64
	Errored, Timeout      float64
	MeanUS, MaxUS         float64
	Protocol, Cipher, Key string
	ALPN                  string
}

// parseDurationUS reads h2load's durations: 235us, 17.48ms, 1.05s.
func parseDurationUS(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			return x * u.us, err
		}
	}
	return 0, fmt.Errorf("duration %q: no unit", s)
}

func parseH2load(path string) (h2loadResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return h2loadResult{}, err
	}
	var r h2loadResult
	var haveFinished, haveRequests, haveLatency bool
	num := func(s string) float64 { x, _ := strconv.ParseFloat(strings.Trim(s, ","), 64); return x }
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "finished in ") && len(f) >= 5:
			// finished in 10.00s, 41234.50 req/s, 44.12MB/s
			r.RPS = num(f[3])
			haveFinished = true
		case strings.HasPrefix(line, "requests: "):
			// requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
			for i := 1; i+1 < len(f); i++ {
				switch strings.Trim(f[i+1], ",") {
				case "succeeded":
					r.Succeeded = num(f[i])
				case "failed":
					r.Failed = num(f[i])
				case "errored":
					r.Errored = num(f[i])
				case "timeout":
					r.Timeout = num(f[i])
				}
			}
			haveRequests = true
		case strings.HasPrefix(line, "time for request:") && len(f) >= 7:
			// time for request: min max mean sd +/-sd
			if r.MaxUS, err = parseDurationUS(f[4]); err != nil {
				return r, fmt.Errorf("%s: %w", path, err)
			}
			if r.MeanUS, err = parseDurationUS(f[5]); err != nil {
				return r, fmt.Errorf("%s: %w", path, err)
			}
			haveLatency = true
		case strings.HasPrefix(line, "TLS Protocol:"):
			r.Protocol = strings.TrimSpace(strings.TrimPrefix(line, "TLS Protocol:"))
		case strings.HasPrefix(line, "Cipher:"):
			r.Cipher = strings.TrimSpace(strings.TrimPrefix(line, "Cipher:"))
		case strings.HasPrefix(line, "Server Temp Key:"):
			r.Key = strings.TrimSpace(strings.TrimPrefix(line, "Server Temp Key:"))
		case strings.HasPrefix(line, "Application protocol:"):
			r.ALPN = strings.TrimSpace(strings.TrimPrefix(line, "Application protocol:"))
		}
	}
	if !haveFinished || !haveRequests || !haveLatency {
		return r, fmt.Errorf("%s: not a complete h2load output", path)
	}
	return r, nil
}

// parseResult reads the RESULT line of an h3load or handshakes output.
func parseResult(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for l := range strings.Lines(string(b)) {
		if !strings.HasPrefix(l, "RESULT ") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(l)[1:] {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		return kv, nil
	}
	return nil, fmt.Errorf("%s: no RESULT line", path)
}

func fnum(kv map[string]string, k string) float64 {
	x, _ := strconv.ParseFloat(kv[k], 64)
	return x
}

// runFiles maps the files matching prefix-<a>-<b>…-r<run>.txt in dir to
// their name fields (without prefix and run) and run.
func runFiles(dir, prefix string, fields int) (map[string]map[int]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, prefix+"-*-r*.txt"))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int]string{}
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".txt"), "-")
		if len(parts) != fields+2 || !strings.HasPrefix(parts[len(parts)-1], "r") {
			continue
		}
		run, err := strconv.Atoi(parts[len(parts)-1][1:])
		if err != nil {
			continue
		}
		k := strings.Join(parts[1:len(parts)-1], "-")
		if out[k] == nil {
			out[k] = map[int]string{}
		}
		out[k][run] = f
	}
	return out, nil
}

// tlsServers are the TLS part's servers, in table order.
var tlsServers = []struct{ ID, Label string }{
	{"nginx", "nginx proxy_cache"},
	{"geocdn", "geocdn edge"},
}

// tlsTable prints the TLS part's tables from the outputs in -dir:
// h2load-<server>-<size>-<h1|h2>-r<run>.txt,
// h3load-<size>-<h2|h3>-r<run>.txt and
// handshakes-<server>-<full|resumed>-r<run>.txt. Ratios are medians of
// per-run ratios, as in table.
func tlsTable(args []string) error {
	fs := flag.NewFlagSet("tlstable", flag.ExitOnError)
	dir := fs.String("dir", "", "directory of the TLS part's outputs")
	fs.Parse(args)
	var b strings.Builder
	// negotiated collects, per server and client, the distinct TLS
	// parameters seen, for the footnotes and the cipher check.
	negotiated := map[string][]string{}
	note := func(server, params string) {
		if !slices.Contains(negotiated[server], params) {
			negotiated[server] = append(negotiated[server], params)
		}
	}
	ciphers := map[string][]string{}
	noteCipher := func(server, c string) {
		if !slices.Contains(ciphers[server], c) {
			ciphers[server] = append(ciphers[server], c)
		}
	}

	// 1. h2load
	h2files, err := runFiles(*dir, "h2load", 3)
	if err != nil {
		return err
	}
	var t1 strings.Builder
	if len(h2files) > 0 {
		t1.WriteString("**HTTP/1.1 and HTTP/2 hits over TLS (h2load, medians of the runs)**\n\n")
		t1.WriteString("| size | protocol | server | runs | req/s (median) | MB/s | mean latency | max latency | geocdn / nginx | req/s of each run | failed |\n")
		t1.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
		res := map[string]map[int]h2loadResult{}
		for k, runs := range h2files {
			res[k] = map[int]h2loadResult{}
			for run, f := range runs {
				r, err := parseH2load(f)
				if err != nil {
					return err
				}
				res[k][run] = r
			}
		}
		for _, s := range sizes {
			for _, p := range []struct{ ID, Label, ALPN string }{{"h1", "HTTP/1.1", "http/1.1"}, {"h2", "HTTP/2", "h2"}} {
				base := res["nginx-"+s.Dir+"-"+p.ID]
				for _, sv := range tlsServers {
					c := res[sv.ID+"-"+s.Dir+"-"+p.ID]
					if c == nil {
						continue
					}
					runs := slices.Sorted(maps.Keys(c))
					var rps, mean, ratios []float64
					var each []string
					var maxUS, failed float64
					for _, run := range runs {
						r := c[run]
						rps = append(rps, r.RPS)
						mean = append(mean, r.MeanUS)
						maxUS = max(maxUS, r.MaxUS)
						failed += r.Failed
						each = append(each, fmtInt(r.RPS))
						if br, ok := base[run]; ok && br.RPS > 0 {
							ratios = append(ratios, r.RPS/br.RPS)
						}
						if r.ALPN != p.ALPN {
							return fmt.Errorf("%s: h2load spoke %q, want %q", h2files[sv.ID+"-"+s.Dir+"-"+p.ID][run], r.ALPN, p.ALPN)
						}
						note(sv.ID, fmt.Sprintf("%s, %s, %s", r.Protocol, r.Cipher, r.Key))
						noteCipher(sv.ID, r.Cipher)
					}
					ratio := "—"
					if sv.ID != "nginx" && len(ratios) > 0 {
						ratio = fmt.Sprintf("%.2f", median(ratios))
					}
					m := median(rps)
					fmt.Fprintf(&t1, "| %s | %s | %s | %d | %s | %.1f | %s | %s | %s | %s | %.0f |\n",
						s.Name, p.Label, sv.Label, len(runs), fmtInt(m), m*float64(s.Bytes)/1e6,
						fmtLatency(median(mean)), fmtLatency(maxUS), ratio, strings.Join(each, " / "), failed)
				}
			}
		}
		var foot []string
		for _, sv := range tlsServers {
			if n := negotiated[sv.ID]; n != nil {
				foot = append(foot, sv.Label+": "+strings.Join(n, "; "))
			}
		}
		fmt.Fprintf(&t1, "\nNegotiated with h2load (TLS version, cipher, key exchange): %s.\n", strings.Join(foot, "; "))
	}

	// 2. h3load: HTTP/3 next to HTTP/2
	h3files, err := runFiles(*dir, "h3load", 2)
	if err != nil {
		return err
	}
	var t2 strings.Builder
	if len(h3files) > 0 {
		res := map[string]map[int]map[string]string{}
		var conns, streams, durUS string
		var params []string
		for k, runs := range h3files {
			res[k] = map[int]map[string]string{}
			for run, f := range runs {
				kv, err := parseResult(f)
				if err != nil {
					return err
				}
				res[k][run] = kv
				conns, streams, durUS = kv["conns"], kv["streams"], kv["duration_us"]
				p := fmt.Sprintf("%s: %s, %s, %s", kv["alpn"], kv["tls"], kv["cipher"], kv["curve"])
				if !slices.Contains(params, p) {
					params = append(params, p)
				}
				noteCipher("geocdn", kv["cipher"])
			}
		}
		slices.Sort(params)
		dur, _ := strconv.ParseFloat(durUS, 64)
		fmt.Fprintf(&t2, "**HTTP/3 next to HTTP/2, geocdn edge, the same Go client (benchtool h3load: %s connections × %s requests in flight, %.0f s, medians of the runs)**\n\n",
			conns, streams, dur/1e6)
		t2.WriteString("| size | protocol | runs | req/s (median) | MB/s | p50 | p99 | max | req/s HTTP/3 / HTTP/2 | p99 HTTP/3 / HTTP/2 | req/s of each run | errors | connections | client CPU |\n")
		t2.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
		for _, s := range sizes {
			base := res[s.Dir+"-h2"]
			for _, p := range []struct{ ID, Label string }{{"h2", "HTTP/2"}, {"h3", "HTTP/3"}} {
				c := res[s.Dir+"-"+p.ID]
				if c == nil {
					continue
				}
				runs := slices.Sorted(maps.Keys(c))
				var rps, p50, p99, rr, pr, cpu []float64
				var each []string
				var maxUS, errs, dials float64
				for _, run := range runs {
					kv := c[run]
					r := fnum(kv, "requests") / (fnum(kv, "duration_us") / 1e6)
					rps = append(rps, r)
					p50 = append(p50, fnum(kv, "p50_us"))
					p99 = append(p99, fnum(kv, "p99_us"))
					maxUS = max(maxUS, fnum(kv, "max_us"))
					errs += fnum(kv, "errors")
					dials = max(dials, fnum(kv, "dials"))
					cpu = append(cpu, fnum(kv, "client_cpu_pct"))
					each = append(each, fmtInt(r))
					if bk, ok := base[run]; ok && fnum(bk, "requests") > 0 {
						rr = append(rr, r/(fnum(bk, "requests")/(fnum(bk, "duration_us")/1e6)))
						pr = append(pr, fnum(kv, "p99_us")/fnum(bk, "p99_us"))
					}
				}
				ratio, pratio := "—", "—"
				if p.ID != "h2" && len(rr) > 0 {
					ratio = fmt.Sprintf("%.2f", median(rr))
					pratio = fmt.Sprintf("%.2f", median(pr))
				}
				m := median(rps)
				fmt.Fprintf(&t2, "| %s | %s | %d | %s | %.1f | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f %% |\n",
					s.Name, p.Label, len(runs), fmtInt(m), m*float64(s.Bytes)/1e6,
					fmtLatency(median(p50)), fmtLatency(median(p99)), fmtLatency(maxUS),
					ratio, pratio, strings.Join(each, " / "), errs, dials, median(cpu))
			}
		}
		fmt.Fprintf(&t2, "\nNegotiated (ALPN: TLS version, cipher, key exchange): %s.\n", strings.Join(params, "; "))
	}

	// 3. handshakes
	hsfiles, err := runFiles(*dir, "handshakes", 2)
	if err != nil {
		return err
	}
	var t3 strings.Builder
	if len(hsfiles) > 0 {
		res := map[string]map[int]map[string]string{}
		var conns, durUS string
		var foot []string
		for k, runs := range hsfiles {
			res[k] = map[int]map[string]string{}
			for run, f := range runs {
				kv, err := parseResult(f)
				if err != nil {
					return err
				}
				res[k][run] = kv
				conns, durUS = kv["conns"], kv["duration_us"]
				server, _, _ := strings.Cut(k, "-")
				p := fmt.Sprintf("%s %s, %s, %s", server, kv["tls"], kv["cipher"], kv["curve"])
				if !slices.Contains(foot, p) {
					foot = append(foot, p)
				}
				noteCipher(server, kv["cipher"])
			}
		}
		slices.Sort(foot)
		dur, _ := strconv.ParseFloat(durUS, 64)
		fmt.Fprintf(&t3, "**TLS handshakes per second (benchtool handshakes: %s loops, TLS 1.3, ALPN http/1.1, one HEAD request per connection, %.0f s, medians of the runs)**\n\n",
			conns, dur/1e6)
		t3.WriteString("| handshake | server | runs | handshakes/s (median) | resumed | p50 | p99 | geocdn / nginx | handshakes/s of each run | errors | client CPU |\n")
		t3.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
		for _, mode := range []string{"full", "resumed"} {
			base := res["nginx-"+mode]
			for _, sv := range tlsServers {
				c := res[sv.ID+"-"+mode]
				if c == nil {
					continue
				}
				runs := slices.Sorted(maps.Keys(c))
				var rate, p50, p99, ratios, cpu []float64
				var each []string
				var n, resumed, errs float64
				for _, run := range runs {
					kv := c[run]
					r := fnum(kv, "handshakes") / (fnum(kv, "duration_us") / 1e6)
					rate = append(rate, r)
					p50 = append(p50, fnum(kv, "p50_us"))
					p99 = append(p99, fnum(kv, "p99_us"))
					n += fnum(kv, "handshakes")
					resumed += fnum(kv, "resumed")
					errs += fnum(kv, "errors")
					cpu = append(cpu, fnum(kv, "client_cpu_pct"))
					each = append(each, fmtInt(r))
					if bk, ok := base[run]; ok && fnum(bk, "handshakes") > 0 {
						ratios = append(ratios, r/(fnum(bk, "handshakes")/(fnum(bk, "duration_us")/1e6)))
					}
				}
				ratio := "—"
				if sv.ID != "nginx" && len(ratios) > 0 {
					ratio = fmt.Sprintf("%.2f", median(ratios))
				}
				frac := "—"
				if n > 0 {
					frac = fmt.Sprintf("%.1f %%", 100*resumed/n)
				}
				fmt.Fprintf(&t3, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %.0f | %.0f %% |\n",
					mode, sv.Label, len(runs), fmtInt(median(rate)), frac,
					fmtLatency(median(p50)), fmtLatency(median(p99)), ratio, strings.Join(each, " / "), errs, median(cpu))
			}
		}
		fmt.Fprintf(&t3, "\nNegotiated (TLS version, cipher, key exchange): %s.\n", strings.Join(foot, "; "))
	}

	if t1.Len()+t2.Len()+t3.Len() == 0 {
		return fmt.Errorf("no h2load, h3load or handshakes results in %s", *dir)
	}
	n, g := slices.Sorted(slices.Values(ciphers["nginx"])), slices.Sorted(slices.Values(ciphers["geocdn"]))
	if n != nil && g != nil && !slices.Equal(n, g) {
		fmt.Fprintf(&b, "**The ciphers differ: nginx negotiated %s, geocdn %s.**\n\n", strings.Join(n, ", "), strings.Join(g, ", "))
	}
	for _, t := range []*strings.Builder{&t1, &t2, &t3} {
		if t.Len() == 0 {
			continue
		}
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n\n") {
			b.WriteString("\n")
		}
		b.WriteString(t.String())
	}
	fmt.Print(b.String())
	return nil
}

// sameHost reports whether every URL names the host of the first; h2load
// uses the first's only.
func sameHost(urls []string) error {
	u0, err := url.Parse(urls[0])
	if err != nil {
		return err
	}
	for _, s := range urls[1:] {
		u, err := url.Parse(s)
		if err != nil {
			return err
		}
		if u.Host != u0.Host || u.Scheme != u0.Scheme {
			return fmt.Errorf("%s: not on %s://%s", s, u0.Scheme, u0.Host)
		}
	}
	return nil
}
