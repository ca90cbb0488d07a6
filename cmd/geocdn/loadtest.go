package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/loadtest"
)

func loadtestCommand() *cli.Command {
	return &cli.Command{
		Name:  "loadtest",
		Usage: "run a load-test scenario against a cluster and report what clients saw",
		Description: `SCENARIO is a scenario file, or the name of one shipped in loadtest/
(global-zipf, flash-crowd, deploy, purge-storm, edge-loss). The cluster is
named by --cluster (the ready file of geocdn dev) or by --router, --origin
and a token. The run prints a live progress line, then a report per client
region; --out DIR also writes report.json and report.html.

It exits 1 when a body did not match its ETag, a read went back before an
acknowledged strong publish, or an acknowledged publish was missing at the
end; Ctrl-C stops the run and still reports what ran.`,
		ArgsUsage: "SCENARIO",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "cluster", Usage: "ready file of `geocdn dev` (router, origin, token, edges' metrics)", EnvVars: env("cluster")},
			&cli.StringFlag{Name: "router", Usage: "router URL (instead of --cluster)", EnvVars: env("router-url")},
			&cli.StringFlag{Name: "origin", Usage: "origin admin API URL (instead of --cluster)", EnvVars: env("origin-url")},
			&cli.StringSliceFlag{Name: "metrics", Usage: "an edge's metrics URL as ID=URL, repeatable (instead of --cluster)", EnvVars: env("metrics")},
			&cli.StringFlag{Name: "control", Usage: "control API URL of `geocdn dev --processes`, for fault events (instead of --cluster)", EnvVars: env("control")},
			&cli.StringFlag{Name: "geoip", Value: "testdata/geoip-test.mmdb", Usage: "the router's GeoIP2 City database, for the clients' addresses", EnvVars: env("loadtest-geoip")},
			&cli.StringFlag{Name: "out", Usage: "directory to write report.json and report.html to", EnvVars: env("out")},
			&cli.DurationFlag{Name: "duration", Usage: "run for this long instead of the scenario's duration", EnvVars: env("loadtest-duration")},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the run's random choices (default: the scenario's, or random)", EnvVars: env("seed")},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "per-request timeout", EnvVars: env("request-timeout")},
			&cli.DurationFlag{Name: "converge", Value: time.Minute, Usage: "how long the final check waits for every edge to catch up", EnvVars: env("converge")},
		}, tokenFlags...),
		Action: runLoadtest,
	}
}

func runLoadtest(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("loadtest: want one SCENARIO (a file, or a name from loadtest/)")
	}
	scn, err := loadtest.LoadScenario(scenarioPath(c.Args().First()))
	if err != nil {
		return err
	}
	if c.IsSet("seed") {
		scn.Seed = c.Uint64("seed")
	}
	var cl loadtest.Cluster
	if f := c.String("cluster"); f != "" {
		if cl, err = loadtest.ClusterFromReadyFile(f); err != nil {
			return err
		}
	}
	if u := c.String("router"); u != "" {
		cl.Router = strings.TrimSuffix(u, "/")
	}
	if u := c.String("origin"); u != "" {
		cl.Origin = strings.TrimSuffix(u, "/")
	}
	if u := c.String("control"); u != "" {
		cl.Control = strings.TrimSuffix(u, "/")
	}
	if c.IsSet("token") || c.IsSet("token-file") || cl.Token == "" {
		if cl.Token, err = loadToken(c); err != nil {
			return err
		}
	}
	for _, m := range c.StringSlice("metrics") {
		id, u, ok := strings.Cut(m, "=")
		if !ok || id == "" || u == "" {
			return fmt.Errorf("--metrics %q: want ID=URL", m)
		}
		if cl.MetricsURLs == nil {
			cl.MetricsURLs = map[string]string{}
		}
		cl.MetricsURLs[id] = u
	}
	ctx, stop := signalContext()
	defer stop()
	rep, err := loadtest.Run(ctx, loadtest.Options{
		Scenario: scn, Cluster: cl, GeoIP: c.String("geoip"),
		Progress: os.Stderr, Logger: slog.Default(),
		RequestTimeout: c.Duration("timeout"), Duration: c.Duration("duration"), Converge: c.Duration("converge"),
	})
	if err != nil {
		return err
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		return err
	}
	if dir := c.String("out"); dir != "" {
		if err := writeReports(dir, rep); err != nil {
			return err
		}
		abs, _ := filepath.Abs(filepath.Join(dir, "report.html"))
		fmt.Printf("\nreport: %s (and report.json beside it)\n", abs)
	}
	if msg := rep.Failure(); msg != "" {
		return cli.Exit("loadtest: "+msg, 1)
	}
	return nil
}

// scenarioPath resolves a shipped scenario's name to its file.
func scenarioPath(arg string) string {
	if strings.ContainsAny(arg, "/.") {
		return arg
	}
	return filepath.Join("loadtest", arg+".yaml")
}

func writeReports(dir string, rep *loadtest.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	write := func(name string, fn func(f *os.File) error) error {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", path, err)
		}
		return f.Close()
	}
	if err := write("report.json", func(f *os.File) error { return rep.WriteJSON(f) }); err != nil {
		return err
	}
	return write("report.html", func(f *os.File) error { return loadtest.WriteHTML(f, rep) })
}
