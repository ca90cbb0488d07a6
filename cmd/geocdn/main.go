// Command geocdn runs every role of the geocdn CDN (origin, edge, a local
// development cluster) and the operator clients of the origin's admin API.
// Flags are parsed into each role's Config here; no logic lives in this
// package beyond that.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "geocdn",
		Usage: "a geo-distributed CDN: origins push replicas over QUIC to edge caches",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"GEOCDN_LOG_LEVEL"}},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
		Commands: []*cli.Command{
			devCommand(),
			originCommand(),
			edgeCommand(),
			routerCommand(),
			publishCommand(),
			deleteCommand(),
			purgeCommand(),
			statusCommand(),
			resyncCommand(),
			caCommand(),
			placementCommand(),
			loadtestCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "geocdn:", err)
		os.Exit(1)
	}
}

// env names the GEOCDN_* variable of a flag.
func env(flag string) []string {
	return []string{"GEOCDN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}
