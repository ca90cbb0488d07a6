package samplesite

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestPages: every page the index lists answers as its description says.
func TestPages(t *testing.T) {
	srv := httptest.NewServer(Handler(time.Now()))
	defer srv.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path, header, contains string
		status                 int
	}{
		{"/site/", "Cache-Control", "max-age=60", 200},
		{"/site/news", "Cache-Control", "stale-while-revalidate=30", 200},
		{"/site/static/app.css", "Cache-Control", "immutable", 200},
		{"/site/about.txt", "Last-Modified", "GMT", 200},
		{"/site/account", "Cache-Control", "private", 200},
		{"/site/now", "Cache-Control", "no-store", 200},
		{"/site/login", "Set-Cookie", "session=", 200},
		{"/site/old-page", "Location", "/site/", 301},
		{"/site/missing", "Cache-Control", "max-age=30", 404},
		{"/site/hello", "Vary", "Accept-Language", 200},
		{"/site/tagged/a", "Surrogate-Key", "tagged", 200},
		{"/site/api/echo", "Content-Type", "text/plain", 200},
	} {
		resp, err := client.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get(tc.header), tc.contains) {
			t.Errorf("GET %s: %d, %s %q; want %d and %q", tc.path, resp.StatusCode, tc.header, resp.Header.Get(tc.header), tc.status, tc.contains)
		}
	}
	if len(Pages) != 12 {
		t.Errorf("%d pages listed; the table above checks 12", len(Pages))
	}
	resp, err := client.Post(srv.URL+"/site/api/echo?x=1", "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST /site/api/echo?x=1\nping\n" {
		t.Errorf("echo: %q", b)
	}
}
