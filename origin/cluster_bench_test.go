package origin

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWriteThroughput measures publishes (1 KiB, inline) and purges
// (one key each) per second with 64 concurrent clients, against one origin
// and against the leader of three, every origin durable on this machine's
// disk. The client runs in the same process as the origins, sharing the
// CPU with them, as a publisher on the same machine would.
//
//	go test -run '^$' -bench WriteThroughput -benchtime 20000x ./origin/
func BenchmarkWriteThroughput(b *testing.B) {
	for _, origins := range []int{1, 3} {
		for _, op := range []string{"publish", "purge"} {
			b.Run(fmt.Sprintf("origins=%d/%s", origins, op), func(b *testing.B) {
				tc := newTestCluster(b, origins)
				benchWrites(b, tc.nodes[tc.leader()], op, 64)
			})
		}
	}
}

func benchWrites(b *testing.B, to *testOrigin, op string, clients int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	body := bytes.Repeat([]byte("x"), 1024)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			buf := bytes.Clone(body)
			for {
				i := next.Add(1)
				if i > int64(b.N) || failed.Load() != nil {
					return
				}
				var req *http.Request
				if op == "publish" {
					copy(buf, fmt.Sprintf("%016d", i))
					req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/objects/bench/%d", to.HTTPAddr(), i), bytes.NewReader(buf))
				} else {
					req, _ = http.NewRequest(http.MethodPost, "http://"+to.HTTPAddr().String()+"/v1/purge",
						bytes.NewReader(fmt.Appendf(nil, `{"keys":["bench/%d"]}`, i)))
					req.Header.Set("Content-Type", "application/json")
				}
				req.Header.Set("Authorization", "Bearer "+to.token)
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					failed.Store(fmt.Errorf("%s %d: %s", op, i, resp.Status))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
}
