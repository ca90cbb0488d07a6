package main

import (
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

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

// --origin takes every origin of a cluster, comma-separated, repeated or
// both, from the command line or GEOCDN_ORIGIN; each entry resolves as a
// UDP address, in the order given.
func TestEdgeOriginFlag(t *testing.T) {
	parse := func(t *testing.T, args ...string) ([]string, error) {
		t.Helper()
		var got []string
		app := &cli.App{
			Name: "edge", Flags: []cli.Flag{originsFlag()},
			Action: func(c *cli.Context) error {
				addrs, err := parseOrigins(c.StringSlice("origin"))
				for _, a := range addrs {
					got = append(got, a.String())
				}
				return err
			},
		}
		return got, app.Run(append([]string{"edge"}, args...))
	}
	three := []string{"127.0.0.1:7443", "127.0.0.2:7443", "[::1]:7444"}
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want []string
	}{
		{"one", []string{"--origin", "127.0.0.1:7443"}, "", three[:1]},
		{"comma-separated", []string{"--origin", "127.0.0.1:7443,127.0.0.2:7443,[::1]:7444"}, "", three},
		{"spaces around entries", []string{"--origin", "127.0.0.1:7443, 127.0.0.2:7443 ,[::1]:7444"}, "", three},
		{"repeated", []string{"--origin", "127.0.0.1:7443", "--origin", "127.0.0.2:7443", "--origin", "[::1]:7444"}, "", three},
		{"both", []string{"--origin", "127.0.0.1:7443,127.0.0.2:7443", "--origin", "[::1]:7444"}, "", three},
		{"environment", nil, "127.0.0.1:7443,127.0.0.2:7443,[::1]:7444", three},
		{"flag over environment", []string{"--origin", "127.0.0.2:7443"}, "127.0.0.1:7443", three[1:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GEOCDN_ORIGIN", tc.env)
			got, err := parse(t, tc.args...)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%q: %q, %v; want %q", tc.args, got, err, tc.want)
			}
		})
	}

	out := mustCLI(t, "edge", "--help")
	for _, want := range []string{"--origin", "comma-separated or the flag repeated", "leader", "GEOCDN_ORIGIN"} {
		if !strings.Contains(out, want) {
			t.Errorf("geocdn edge --help does not mention %q:\n%s", want, out)
		}
	}
	// A bad entry stops the edge before it loads a certificate, with an
	// error naming the entry.
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no port", []string{"--origin", "127.0.0.1:7443,127.0.0.2"}, `--origin "127.0.0.2"`},
		{"bad port in a repeated flag", []string{"--origin", "127.0.0.1:7443", "--origin", "127.0.0.2:99999"}, `--origin "127.0.0.2:99999"`},
		{"empty entry", []string{"--origin", "127.0.0.1:7443,,127.0.0.2:7443"}, "--origin: entry 2 of 3 is empty"},
		{"listed twice", []string{"--origin", "127.0.0.1:7443,127.0.0.2:7443,127.0.0.1:7443"}, `--origin "127.0.0.1:7443": the same address as "127.0.0.1:7443"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"edge", "--id", "e1", "--region", "r", "--lat", "0", "--lon", "0",
				"--http", "127.0.0.1:0", "--data", dir, "--ca", dir}, tc.args...)
			_, errOut, err := runCLI(t, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%q: %v, stderr %q; want exit status 1 and %q", tc.args, err, errOut, tc.want)
			}
		})
	}
}
