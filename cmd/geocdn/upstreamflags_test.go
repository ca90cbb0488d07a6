package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/origin"
)

func TestParseUpstreams(t *testing.T) {
	ups, err := parseUpstreams([]string{"default=https://www.example.com", " shop=http://127.0.0.1:8081/base "}, []string{"shop=pull"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].Namespace != "default" || ups[0].Mode != origin.Mixed || ups[1].URL.Path != "/base" || ups[1].Mode != origin.PullOnly {
		t.Fatalf("%+v", ups)
	}
	for _, tc := range []struct {
		ups, modes []string
		want       string
	}{
		{[]string{"www.example.com"}, nil, "NAMESPACE=URL"},
		{[]string{"default=ftp://x"}, nil, "not an http or https URL"},
		{[]string{"a=https://x", "a=https://y"}, nil, "already has an upstream"},
		{[]string{"a=https://x"}, []string{"b=pull"}, "has no --upstream"},
		{[]string{"a=https://x"}, []string{"a=push"}, "neither pull nor mixed"},
		{[]string{"Shop=https://x"}, nil, "invalid namespace"},
	} {
		if _, err := parseUpstreams(tc.ups, tc.modes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseUpstreams(%q, %q) = %v, want an error saying %q", tc.ups, tc.modes, err, tc.want)
		}
	}
}

// TestOriginConfigFile: --config sets flags from a YAML file by flag
// name (here the upstreams, so the default namespace only pulls and a
// publish to it is refused); a file that cannot be read is an error that
// names it.
func TestOriginConfigFile(t *testing.T) {
	c := newCluster(t)
	conf := filepath.Join(c.dir, "origin.yaml")
	if err := os.WriteFile(conf, []byte("upstream:\n  - default=http://127.0.0.1:1\nupstream-mode:\n  - default=pull\nupstream-timeout: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.startOrigin("--config", conf)
	a, err := c.publish("page", []byte("x"), "")
	if err != nil || a.status != http.StatusConflict {
		t.Fatalf("publish to a namespace the config file made pull-only: %+v %v, want 409", a, err)
	}
	if a, err := c.publish("page", []byte("x"), "namespace=other"); err != nil || a.status != http.StatusCreated {
		t.Fatalf("publish to another namespace: %+v %v, want 201", a, err)
	}

	_, stderr, err := runCLI(t, "origin", "--config", filepath.Join(c.dir, "missing.yaml"), "--data", c.dir, "--ca", c.dir, "--token", "0123456789abcdef")
	if err == nil || !strings.Contains(stderr, "missing.yaml") {
		t.Fatalf("a missing config file: %v, stderr %q", err, stderr)
	}
}
