package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/h1"
)

// TestH2Spec runs h2spec (a tool dependency in go.mod: `go tool h2spec`)
// against the server over TLS, with a fast hook and a handler that both
// answer with a body, and fails on any failed case. It is never skipped:
// if the tool cannot run, the test fails and says why.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec takes some seconds; run without -short")
	}
	body := bytes.Repeat([]byte("h2spec "), 2000)
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}),
		Fast: func(w *Reply, r *h1.Request) bool {
			if r.Path != "/fast" {
				return false
			}
			w.Send(200, []byte("Content-Length: "+strconv.Itoa(len(body))+"\r\n"), body)
			return true
		},
		SlowHeaders: []string{"range"},
	}
	ts := startTLS(t, s)
	_, port, _ := net.SplitHostPort(ts.addr)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	}
	for _, path := range []string{"/", "/fast"} {
		cmd := exec.Command(goBin, "tool", "h2spec", "-h", "127.0.0.1", "-p", port, "-t", "-k", "-P", path, "-o", "5")
		cmd.WaitDelay = time.Minute
		out, err := cmd.CombinedOutput()
		text := string(out)
		m := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("go tool h2spec (path %s) did not run: %v\n%s", path, err, text)
		}
		if m[4] != "0" || err != nil {
			t.Errorf("h2spec (path %s): %s\n%s", path, m[0], failures(text))
			continue
		}
		t.Logf("h2spec (path %s): %s", path, m[0])
	}
}

// failures is the part of h2spec's output that names the failed cases.
func failures(out string) string {
	if i := strings.Index(out, "Failures:"); i >= 0 {
		return out[i:]
	}
	return out
}
