package memnet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"
)

func TestHTTPInsideBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n Network
		ln, err := n.Listen("origin.wan:80")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Second) // simulated: costs no wall time
			io.WriteString(w, "hello "+r.URL.Path)
		})}
		go srv.Serve(ln)
		tr := &http.Transport{DialContext: n.Dial}
		client := &http.Client{Transport: tr}
		start := time.Now()
		for range 3 {
			resp, err := client.Get("http://origin.wan:80/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got, want := string(b), "hello /x"; got != want {
				t.Errorf("body %q, want %q", got, want)
			}
		}
		if got, want := time.Since(start), 3*time.Second; got != want {
			t.Errorf("took %v of simulated time, want %v", got, want)
		}
		if _, err := client.Get("http://nobody.wan:80/"); !errors.Is(err, ErrRefused) {
			t.Errorf("dial to nothing: %v, want ErrRefused", err)
		}
		tr.CloseIdleConnections()
		srv.Shutdown(context.Background())
		if _, err := n.Listen("origin.wan:80"); err != nil {
			t.Errorf("listen again after close: %v", err)
		}
	})
}
