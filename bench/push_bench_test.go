package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/origin"
)

// pushSize is the object BenchmarkPush replicates.
const pushSize = 256 << 20

// BenchmarkPush measures push replication of a 256 MiB object to one edge
// over loopback QUIC, side by side with a raw quic-go stream carrying the
// same bytes between two transports in the same process. Every iteration
// runs each variant once, in turn, so that the machine's noise hits them
// alike, each round starting with the next variant; the reported metrics
// are medians over the iterations (run it with -benchtime 3x or more):
//
//   - geocdn: a publish with w=all. The push is timed from the commit (the
//     origin's LastLSN moving to the new entry, polled every 100 µs) to the
//     origin's EventPushStored, which it emits once the edge reported the
//     content stored: received, sha256 checked, fsynced, renamed, indexed.
//     upload-ms (PUT body sent), commit-ms (last body byte to commit) and
//     publish-ms (whole PUT) are reported too.
//   - raw-discard: one stream, read into io.Discard.
//   - raw-file-sha256: into a new file and sha256, as the edge receives.
//   - raw-file-sha256-fsync: the same, then fsync, as the edge commits.
//
// The raw transports use the flow-control windows of geocdn's data
// connection, a long-lived connection and a new stream per transfer (as a
// push does), and read the content from a file like the origin. Files go
// under $TMPDIR.
func BenchmarkPush(b *testing.B) {
	dir := b.TempDir()
	content := make([]byte, pushSize)
	mrand.NewChaCha8([32]byte{1}).Read(content)
	var round atomic.Uint64
	// unique makes every transfer's content, and so its digest, new: an
	// edge that already holds a digest answers "have" and nothing moves.
	unique := func() { binary.LittleEndian.PutUint64(content, round.Add(1)) }

	g := startPushCluster(b, filepath.Join(dir, "cluster"))
	raw := startRawQUIC(b)
	// The raw sender reads the content from a file (in the page cache), as
	// the origin reads its blob. Synced, so no writeback overlaps a run.
	src := filepath.Join(dir, "raw-src")
	if err := writeSynced(src, content); err != nil {
		b.Fatal(err)
	}

	variants := []struct {
		name string
		run  func() (time.Duration, error)
	}{
		{"geocdn", func() (time.Duration, error) { return g.push(content) }},
		{"raw-discard", func() (time.Duration, error) { return raw.transfer(src, sinkDiscard, "") }},
		{"raw-file-sha256", func() (time.Duration, error) { return raw.transfer(src, sinkFile, dir) }},
		{"raw-file-sha256-fsync", func() (time.Duration, error) { return raw.transfer(src, sinkFileSync, dir) }},
	}
	rounds := 0
	runAll := func(record bool) {
		// Each round starts with the next variant, so no variant always
		// follows the same one (writeback, page cache, CPU caches).
		first := rounds % len(variants)
		rounds++
		for i := range variants {
			v := variants[(first+i)%len(variants)]
			unique()
			d, err := v.run()
			if err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			if record {
				pushTimes[v.name] = append(pushTimes[v.name], d)
				b.Logf("round %d %-22s %6.0f MiB/s  %v", len(pushTimes[v.name]), v.name, mibps(d), d.Round(time.Millisecond))
			}
		}
	}
	// One unrecorded round: connections, congestion windows and flow
	// control windows grow to their working size, the page cache settles.
	runAll(false)
	g.phases = nil

	for b.Loop() {
		runAll(true)
	}
	b.StopTimer()
	for _, v := range variants {
		d := medianDuration(pushTimes[v.name])
		b.ReportMetric(mibps(d), v.name+"-MiB/s")
		b.ReportMetric(float64(d)/1e6, v.name+"-ms")
	}
	for _, ph := range []string{"upload", "commit", "publish"} {
		b.ReportMetric(float64(medianDuration(g.phases[ph]))/1e6, ph+"-ms")
	}
	clear(pushTimes)
}

// pushTimes collects each variant's durations; BenchmarkPush runs once
// per -count, so a package variable is enough.
var pushTimes = map[string][]time.Duration{}

func mibps(d time.Duration) float64 { return pushSize / float64(1<<20) / d.Seconds() }

func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pushCluster is an in-process origin and one edge on loopback.
type pushCluster struct {
	c      *cluster.Cluster
	client *http.Client
	n      int

	mu     sync.Mutex
	stored map[uint64]time.Time // EventPushStored by LSN
	wake   chan struct{}

	phases map[string][]time.Duration
}

func startPushCluster(b *testing.B, dir string) *pushCluster {
	p := &pushCluster{stored: map[uint64]time.Time{}, wake: make(chan struct{}, 1),
		client: &http.Client{Timeout: 2 * time.Minute}}
	c, err := cluster.Start(cluster.Config{
		Dir:            dir,
		Edges:          []cluster.EdgeSpec{{ID: "bench", Region: "local"}},
		PublishTimeout: time.Minute,
		Logger:         slog.New(slog.DiscardHandler),
		OnEvent: func(ev origin.Event) {
			if ev.Kind != origin.EventPushStored {
				return
			}
			now := time.Now()
			p.mu.Lock()
			p.stored[ev.LSN] = now
			p.mu.Unlock()
			select {
			case p.wake <- struct{}{}:
			default:
			}
		},
	})
	if err != nil {
		b.Fatalf("start cluster: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	p.c = c
	deadline := time.Now().Add(30 * time.Second)
	for {
		if e := c.Edges()[0].Edge(); e != nil && e.Healthy() {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("edge not healthy after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A small w=all publish proves the edge is counted by w=all.
	if _, err := p.publish("bench/ready", bytes.NewReader([]byte("ready")), 5); err != nil {
		b.Fatal(err)
	}
	return p
}

// publish PUTs body with w=all and returns the LSN; it fails unless the
// edge acknowledged.
func (p *pushCluster) publish(key string, body io.Reader, size int64) (uint64, error) {
	req, err := http.NewRequest(http.MethodPut, p.c.OriginURL()+"/v1/objects/"+key+"?w=all", body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+p.c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var res struct {
		LSN   uint64   `json:"lsn"`
		Acked []string `json:"acked"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(out, &res) != nil || !slices.Contains(res.Acked, "bench") {
		return 0, fmt.Errorf("publish %s: %s %s", key, resp.Status, out)
	}
	return res.LSN, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// eofReader records when the last byte of the body was read.
type eofReader struct {
	r  io.Reader
	at time.Time
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF && e.at.IsZero() {
		e.at = time.Now()
	}
	return n, err
}

// push publishes content with w=all and returns the time from the commit
// to the edge's stored report.
func (p *pushCluster) push(content []byte) (time.Duration, error) {
	o := p.c.Origin()
	before := o.LastLSN()
	p.n++
	key := fmt.Sprintf("bench/push-%d", p.n)
	body := &eofReader{r: bytes.NewReader(content)}

	var commitAt atomic.Int64
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for o.LastLSN() == before {
			select {
			case <-stopPoll:
				return
			default:
			}
			time.Sleep(100 * time.Microsecond)
		}
		commitAt.Store(time.Now().UnixNano())
	}()
	start := time.Now()
	lsn, err := p.publish(key, body, int64(len(content)))
	end := time.Now()
	close(stopPoll)
	<-polled
	if err != nil {
		return 0, err
	}
	if lsn != before+1 || commitAt.Load() == 0 {
		return 0, fmt.Errorf("publish %s got LSN %d after %d: another write interleaved", key, lsn, before)
	}
	var storedAt time.Time
	deadline := time.After(time.Minute)
	for storedAt.IsZero() {
		p.mu.Lock()
		storedAt = p.stored[lsn]
		p.mu.Unlock()
		if storedAt.IsZero() {
			select {
			case <-p.wake:
			case <-deadline:
				return 0, fmt.Errorf("no EventPushStored for LSN %d", lsn)
			}
		}
	}
	committed := time.Unix(0, commitAt.Load())
	if p.phases == nil {
		p.phases = map[string][]time.Duration{}
	}
	p.phases["upload"] = append(p.phases["upload"], body.at.Sub(start))
	p.phases["commit"] = append(p.phases["commit"], committed.Sub(body.at))
	p.phases["publish"] = append(p.phases["publish"], end.Sub(start))
	return storedAt.Sub(committed), nil
}

// rawQUIC is a quic-go connection between two transports on loopback UDP
// sockets, with self-signed TLS.
type rawQUIC struct {
	conn *quic.Conn // dialer side: opens a stream per transfer and sends
	peer *quic.Conn // listener side: accepts and receives
}

// rawQUICConfig has the flow-control windows of geocdn's connections
// (origin/origin.go, edge/conn.go).
func rawQUICConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:             30 * time.Second,
		KeepAlivePeriod:            time.Second,
		InitialStreamReceiveWindow: 1 << 20,
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 64 << 20,
	}
}

func startRawQUIC(b *testing.B) *rawQUIC {
	cert, pool := selfSigned(b)
	const alpn = "geocdn-bench"
	srvPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cliPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srvTr := &quic.Transport{Conn: srvPC}
	cliTr := &quic.Transport{Conn: cliPC}
	b.Cleanup(func() {
		cliTr.Close()
		srvTr.Close()
		cliPC.Close()
		srvPC.Close()
	})
	ln, err := srvTr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{alpn}}, rawQUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	conn, err := cliTr.Dial(ctx, srvPC.LocalAddr(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{alpn}}, rawQUICConfig())
	if err != nil {
		b.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		b.Fatal("raw quic: accept failed")
	}
	return &rawQUIC{conn: conn, peer: peer}
}

type sink int

const (
	sinkDiscard sink = iota
	sinkFile
	sinkFileSync
)

// transfer sends the file src over a new stream; the peer stores it as
// sink says. It returns the time from opening the stream to the receiver
// having finished (for files: written, hashed and, with sinkFileSync,
// fsynced and closed).
func (q *rawQUIC) transfer(src string, sk sink, dir string) (time.Duration, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- receive(ctx, q.peer, sk, dir) }()
	start := time.Now()
	st, err := q.conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(st, f); err != nil {
		return 0, err
	}
	if err := st.Close(); err != nil {
		return 0, err
	}
	if err := <-done; err != nil {
		return 0, err
	}
	d := time.Since(start)
	// Drain the stream's read side so it is fully closed.
	st.CancelRead(0)
	return d, nil
}

func receive(ctx context.Context, conn *quic.Conn, sk sink, dir string) error {
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	r := io.LimitReader(st, pushSize)
	if sk == sinkDiscard {
		n, err := io.Copy(io.Discard, r)
		if err == nil && n != pushSize {
			err = fmt.Errorf("raw: got %d bytes", n)
		}
		return err
	}
	// As the edge's store receives a blob.
	f, err := os.CreateTemp(dir, "raw-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil && n != pushSize {
		err = fmt.Errorf("raw: got %d bytes", n)
	}
	if err == nil {
		_ = h.Sum(nil)
		if sk == sinkFileSync {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func selfSigned(b *testing.B) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
