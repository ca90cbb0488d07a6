package h1c_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/geocdn/geocdn/internal/h1c"
)

// A GET as a load generator makes it: the client's address and the
// ETag it holds sent along, the status and a few header fields read,
// the body hashed straight out of the connection's buffer.
func ExampleClient_Do() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v2"`)
		w.Header().Set("Cache-Status", "geocdn; hit; for="+r.Header.Get("X-Forwarded-For"))
		if r.Header.Get("If-None-Match") == `"v2"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Write([]byte("hello, world"))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	var client h1c.Client // one for the whole run: it pools connections
	var resp h1c.Response // one per worker goroutine, reused
	h := sha256.New()
	for _, etag := range []string{`"v1"`, `"v2"`} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hdr := [...]h1c.Field{{Name: "X-Forwarded-For", Value: "192.0.2.7"}, {Name: "If-None-Match", Value: etag}}
		err := client.Do(ctx, &h1c.Request{Host: host, Target: "/objects/a", Header: hdr[:]}, &resp)
		if err != nil {
			fmt.Println(err)
			cancel()
			continue
		}
		h.Reset()
		n, err := resp.WriteTo(h) // reads the whole body
		fmt.Printf("%d Etag=%s Cache-Status=%q Location=%q Content-Range=%q\n",
			resp.Status, resp.Get("Etag"), resp.Get("Cache-Status"), resp.Get("Location"), resp.Get("Content-Range"))
		fmt.Printf("  %d bytes, sha256 %x…, err %v\n", n, h.Sum(nil)[:8], err)
		resp.Close() // back to the pool: the body was read whole
		cancel()
	}
	// Output:
	// 200 Etag="v2" Cache-Status="geocdn; hit; for=192.0.2.7" Location="" Content-Range=""
	//   12 bytes, sha256 09ca7e4eaa6e8ae9…, err <nil>
	// 304 Etag="v2" Cache-Status="geocdn; hit; for=192.0.2.7" Location="" Content-Range=""
	//   0 bytes, sha256 e3b0c44298fc1c14…, err <nil>
}
