package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/origin"
)

func resyncCommand() *cli.Command {
	return &cli.Command{
		Name:  "resync",
		Usage: "run anti-entropy now between the origin and one edge (or every connected edge) and show what it repaired",
		Flags: append([]cli.Flag{
			originURLFlag,
			&cli.StringFlag{Name: "edge", Usage: "edge id (default: every connected edge)", EnvVars: env("edge")},
			&cli.DurationFlag{Name: "timeout", Usage: "how long the origin waits for the reports (default 10m)", EnvVars: env("timeout")},
			&cli.BoolFlag{Name: "json", Usage: "print JSON", EnvVars: env("json")},
		}, tokenFlags...),
		Action: func(c *cli.Context) error {
			q := url.Values{}
			if c.IsSet("edge") {
				q.Set("edge", c.String("edge"))
			}
			if d := c.Duration("timeout"); d > 0 {
				q.Set("timeout", d.String())
			}
			_, out, err := adminRequest(c, http.MethodPost, "/v1/resync", q, nil, 0, nil)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				os.Stdout.Write(out)
				return nil
			}
			var reps []origin.ResyncStatus
			if err := json.Unmarshal(out, &reps); err != nil {
				return fmt.Errorf("decode /v1/resync: %w", err)
			}
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EDGE\tOUTCOME\tMISSING\tSTALE\tEXTRA\tMETADATA\tCORRUPT\tREPAIRED\tFAILED\tENTRIES\tBYTES\tDURATION\tERROR")
			failed := 0
			for _, r := range reps {
				if r.Outcome == "failed" {
					failed++
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Edge, r.Outcome, r.Missing, r.Stale, r.Extra,
					r.Metadata, r.Corrupt, r.Repaired, r.Failed, r.Entries, r.Bytes, r.Duration, r.Error)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d resyncs failed", failed, len(reps))
			}
			return nil
		},
	}
}
