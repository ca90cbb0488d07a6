package main

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/edge"
)

func TestEdgeMaxConnsFlag(t *testing.T) {
	out := mustCLI(t, "edge", "--help")
	for _, want := range []string{"--max-conns", "0 means no cap", "default: " + strconv.Itoa(edge.DefaultMaxConns), "GEOCDN_MAX_CONNS"} {
		if !strings.Contains(out, want) {
			t.Errorf("geocdn edge --help does not mention %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	_, errOut, err := runCLI(t, "edge", "--id", "e1", "--region", "r", "--lat", "0", "--lon", "0",
		"--origin", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", dir, "--ca", dir, "--max-conns", "-1")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, "--max-conns -1") {
		t.Errorf("--max-conns -1: %v, stderr %q; want exit status 1 naming the flag", err, errOut)
	}
}

func TestEdgeScrubFlags(t *testing.T) {
	out := mustCLI(t, "edge", "--help")
	for _, want := range []string{"--scrub-rate", "20 MiB/s", "GEOCDN_SCRUB_RATE", "--scrub-interval", "24h0m0s", "GEOCDN_SCRUB_INTERVAL"} {
		if !strings.Contains(out, want) {
			t.Errorf("geocdn edge --help does not mention %q:\n%s", want, out)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ flag, value string }{
		{"--scrub-rate", "fast"},
		{"--scrub-interval", "-1h"},
	} {
		_, errOut, err := runCLI(t, "edge", "--id", "e1", "--region", "r", "--lat", "0", "--lon", "0",
			"--origin", "127.0.0.1:1", "--http", "127.0.0.1:0", "--data", dir, "--ca", dir, tc.flag, tc.value)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, tc.flag) {
			t.Errorf("%s %s: %v, stderr %q; want exit status 1 naming the flag", tc.flag, tc.value, err, errOut)
		}
	}
}
