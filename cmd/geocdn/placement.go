package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/placement"
)

// placementCommand is the operator's placement tool: plan, explain and
// diff read a topology, a demand and optionally a catalog and run the
// optimiser; gen-catalog writes a synthetic catalog. Every flag is also
// GEOCDN_PLACEMENT_<FLAG>.
func placementCommand() *cli.Command {
	return &cli.Command{
		Name:  "placement",
		Usage: "plan which edges hold replicas of which content",
		Description: "plan prints a placement (with --json, the plan file PUT /v1/placement takes);\n" +
			"explain says why a key's replicas are where they are; diff compares with the plan\n" +
			"in force and limits the moves; gen-catalog writes a synthetic catalog. File formats:\n" +
			"go doc github.com/geocdn/geocdn/placement.",
		Subcommands: []*cli.Command{
			{
				Name:      "plan",
				Usage:     "compute a placement and print it",
				ArgsUsage: " ",
				Flags:     append(problemFlags(), &cli.BoolFlag{Name: "json", EnvVars: penv("json"), Usage: "print the plan file (JSON) instead of tables"}),
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return fmt.Errorf("plan takes no arguments, got %q", c.Args().Slice())
					}
					p, cfg, err := loadProblem(c)
					if err != nil {
						return err
					}
					res, err := placement.Solve(c.Context, p, cfg)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writePlan(os.Stdout, res.Plan)
					}
					printPlan(os.Stdout, p, res)
					return nil
				},
			},
			{
				Name:      "apply",
				Usage:     "put a plan file (from plan --json; - for stdin) in force at the origin",
				ArgsUsage: "PLANFILE",
				Flags:     append([]cli.Flag{originURLFlag}, tokenFlags...),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("apply needs PLANFILE (or - for stdin), got %d arguments", c.NArg())
					}
					var r io.Reader = os.Stdin
					if f := c.Args().First(); f != "-" {
						fh, err := os.Open(f)
						if err != nil {
							return err
						}
						defer fh.Close()
						r = fh
					}
					b, err := io.ReadAll(r)
					if err != nil {
						return err
					}
					// Check locally first, so a bad file is named here
					// rather than in the origin's answer.
					if _, err := placement.UnmarshalPlan(b); err != nil {
						return fmt.Errorf("%s: %w", c.Args().First(), err)
					}
					_, out, err := adminRequest(c, http.MethodPut, "/v1/placement", nil, bytes.NewReader(b), int64(len(b)), http.Header{"Content-Type": {"application/json"}})
					os.Stdout.Write(out)
					return err
				},
			},
			{
				Name:      "explain",
				Usage:     "say why KEY's replicas are where the plan puts them",
				ArgsUsage: "KEY",
				Flags: append(problemFlags(),
					&cli.StringFlag{Name: "namespace", EnvVars: penv("namespace"), Usage: "the key's namespace (default: default)"}),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("explain needs KEY, got %d arguments", c.NArg())
					}
					p, cfg, err := loadProblem(c)
					if err != nil {
						return err
					}
					res, err := placement.Solve(c.Context, p, cfg)
					if err != nil {
						return err
					}
					ex, err := res.Explain(c.String("namespace"), strings.TrimPrefix(c.Args().First(), "/"))
					if err != nil {
						return err
					}
					printExplanation(os.Stdout, ex)
					return nil
				},
			},
			{
				Name:      "diff",
				Usage:     "re-plan from the plan in force (--current) and show the moves and bytes",
				ArgsUsage: " ",
				Flags: append(problemFlags(),
					&cli.StringFlag{Name: "current", EnvVars: penv("current"), Usage: "the plan in force (a plan file)", Required: true},
					&cli.IntFlag{Name: "max-moves", EnvVars: penv("max-moves"), Value: -1, Usage: "replicas that may be added beyond those that must be; -1: no bound"},
					&cli.Float64Flag{Name: "churn-penalty", EnvVars: penv("churn-penalty"), Usage: "latency gain (req/s × ms) a move must buy per GiB it copies"},
					&cli.BoolFlag{Name: "json", EnvVars: penv("json"), Usage: "print the new plan file (JSON) instead of the moves"},
				),
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return fmt.Errorf("diff takes no arguments, got %q", c.Args().Slice())
					}
					p, cfg, err := loadProblem(c)
					if err != nil {
						return err
					}
					data, err := os.ReadFile(c.String("current"))
					if err != nil {
						return fmt.Errorf("--current: %w", err)
					}
					current, err := placement.UnmarshalPlan(data)
					if err != nil {
						return fmt.Errorf("--current %s: %w", c.String("current"), err)
					}
					cfg.MaxMoves = c.Int("max-moves")
					cfg.ChurnPenalty = c.Float64("churn-penalty")
					res, err := placement.Replan(c.Context, p, current, cfg)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writePlan(os.Stdout, res.Plan)
					}
					fresh, err := placement.Solve(c.Context, p, withMoves(cfg))
					if err != nil {
						fresh = nil // the comparison is a courtesy; the re-plan stands
					}
					printMoves(os.Stdout, res, fresh)
					return nil
				},
			},
			{
				Name:      "gen-catalog",
				Usage:     "write a synthetic catalog (Zipf popularity, regional classes, a CDN's size mix)",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "demand", EnvVars: penv("demand"), Usage: "demand file whose regions get regional classes (heaviest first)"},
					&cli.IntFlag{Name: "objects", EnvVars: penv("objects"), Value: 1000, Usage: "number of objects"},
					&cli.IntFlag{Name: "regional-classes", EnvVars: penv("regional-classes"), Value: 8, Usage: "regions that get classes of their own"},
					&cli.Uint64Flag{Name: "seed", EnvVars: penv("seed"), Value: 1, Usage: "random seed"},
					&cli.Float64Flag{Name: "zipf", EnvVars: penv("zipf"), Value: 0.8, Usage: "Zipf exponent of popularity"},
					&cli.Float64Flag{Name: "total-rate", EnvVars: penv("total-rate"), Value: 10000, Usage: "total request rate of the catalog, req/s"},
					&cli.StringFlag{Name: "out", EnvVars: penv("out"), Usage: "output file (default: standard output)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 0 {
						return fmt.Errorf("gen-catalog takes no arguments, got %q", c.Args().Slice())
					}
					gc := placement.GenConfig{
						Objects: c.Int("objects"), RegionalClasses: c.Int("regional-classes"),
						Seed: c.Uint64("seed"), ZipfS: c.Float64("zipf"), TotalRate: c.Float64("total-rate"),
					}
					if gc.Objects <= 0 || gc.ZipfS <= 0 || gc.TotalRate <= 0 || gc.RegionalClasses < 0 {
						return errors.New("--objects, --zipf and --total-rate must be positive, --regional-classes not negative")
					}
					if gc.RegionalClasses == 0 {
						gc.RegionalClasses = -1 // the generator's zero means its default
					}
					if f := c.String("demand"); f != "" {
						dem, err := readDemand(f)
						if err != nil {
							return err
						}
						gc.Regions = regionsByWeight(dem)
					}
					cat := placement.GenerateCatalog(gc)
					header := fmt.Sprintf("Synthetic catalog: geocdn placement gen-catalog --objects %d --seed %d --zipf %g --total-rate %g --regional-classes %d%s\n"+
						"Popularity is Zipf over a random ranking; sizes are log-normal per kind of content.",
						gc.Objects, gc.Seed, gc.ZipfS, gc.TotalRate, c.Int("regional-classes"), demandNote(c.String("demand")))
					var buf bytes.Buffer
					if err := placement.WriteCatalog(&buf, cat, header); err != nil {
						return err
					}
					if out := c.String("out"); out != "" {
						return os.WriteFile(out, buf.Bytes(), 0o644)
					}
					_, err := os.Stdout.Write(buf.Bytes())
					return err
				},
			},
		},
	}
}

// penv names a placement flag's variable, GEOCDN_PLACEMENT_<FLAG>: the
// prefix keeps generic names (json, seed, replicas) apart from other
// commands'.
func penv(flag string) []string { return env("placement-" + flag) }

// problemFlags are the inputs and optimiser settings plan, explain and
// diff share.
func problemFlags() []cli.Flag {
	d := placement.DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "topology", EnvVars: penv("topology"), Usage: "topology file (YAML): edges, regions, measured RTTs", Required: true},
		&cli.StringFlag{Name: "demand", EnvVars: penv("demand"), Usage: "demand file (CSV): where requests come from", Required: true},
		&cli.StringFlag{Name: "catalog", EnvVars: penv("catalog"), Usage: "catalog file (YAML): classes and objects; without it, one class with the demand as given"},
		&cli.IntFlag{Name: "replicas", EnvVars: penv("replicas"), Usage: "replication factor for everything (sets --min-replicas and --max-replicas; a catalog's replicas fields still win)"},
		&cli.IntFlag{Name: "min-replicas", EnvVars: penv("min-replicas"), Value: d.MinReplicas, Usage: "smallest replication factor"},
		&cli.IntFlag{Name: "max-replicas", EnvVars: penv("max-replicas"), Value: d.MaxReplicas, Usage: "largest replication factor"},
		&cli.Float64Flag{Name: "replica-rate", EnvVars: penv("replica-rate"), Usage: "req/s at which content gets one replica more than the minimum, and one more per doubling; 0: always the minimum"},
		&cli.IntFlag{Name: "hot-objects", EnvVars: penv("hot-objects"), Value: d.HotObjects, Usage: "most requested objects considered for sets of their own by their rate; an object whose catalog entry fixes replicas gets its own set regardless; 0 or negative: none"},
		&cli.DurationFlag{Name: "slo", EnvVars: penv("slo"), Usage: "latency SLO; demand points estimated to miss it are reported"},
		&cli.Float64Flag{Name: "slo-penalty", EnvVars: penv("slo-penalty"), Usage: "ms added to every request over the SLO while optimising (0: report only)"},
		&cli.Int64Flag{Name: "seed", EnvVars: penv("seed"), Value: 1, Usage: "seed of the randomised restarts; same seed, same plan"},
		&cli.BoolFlag{Name: "best-effort", EnvVars: penv("best-effort"), Usage: "when constraints cannot all be met, plan anyway and list the violations"},
	}
}

// loadProblem reads the files and settings named by the flags.
func loadProblem(c *cli.Context) (placement.Problem, placement.Config, error) {
	var p placement.Problem
	cfg := placement.DefaultConfig()
	f, err := os.Open(c.String("topology"))
	if err != nil {
		return p, cfg, fmt.Errorf("--topology: %w", err)
	}
	p.Topology, err = placement.ParseTopology(c.String("topology"), f)
	f.Close()
	if err != nil {
		return p, cfg, err
	}
	if p.Demand, err = readDemand(c.String("demand")); err != nil {
		return p, cfg, err
	}
	if name := c.String("catalog"); name != "" {
		f, err := os.Open(name)
		if err != nil {
			return p, cfg, fmt.Errorf("--catalog: %w", err)
		}
		p.Catalog, err = placement.ParseCatalog(name, f)
		f.Close()
		if err != nil {
			return p, cfg, err
		}
	}
	cfg.MinReplicas, cfg.MaxReplicas = c.Int("min-replicas"), c.Int("max-replicas")
	if k := c.Int("replicas"); c.IsSet("replicas") {
		if c.IsSet("min-replicas") || c.IsSet("max-replicas") {
			return p, cfg, errors.New("--replicas fixes k: give it or --min-replicas/--max-replicas, not both")
		}
		if k < 1 {
			return p, cfg, fmt.Errorf("--replicas %d: want at least 1", k)
		}
		cfg.MinReplicas, cfg.MaxReplicas = k, k
	}
	cfg.ReplicaRate = c.Float64("replica-rate")
	cfg.HotObjects = c.Int("hot-objects")
	if cfg.HotObjects == 0 {
		cfg.HotObjects = -1 // the flag's 0 means none; the Config's zero means its default
	}
	cfg.SLO = c.Duration("slo")
	cfg.SLOPenalty = c.Float64("slo-penalty")
	cfg.Seed = c.Int64("seed")
	cfg.BestEffort = c.Bool("best-effort")
	cfg.GeneratedAt = time.Now().UTC().Truncate(time.Second)
	if err := cfg.Validate(); err != nil {
		return p, cfg, fmt.Errorf("flags: %w", err)
	}
	return p, cfg, nil
}

// withMoves returns cfg for a fresh plan.
func withMoves(cfg placement.Config) placement.Config {
	cfg.MaxMoves, cfg.ChurnPenalty = -1, 0
	return cfg
}

func readDemand(name string) ([]placement.DemandPoint, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--demand: %w", err)
	}
	defer f.Close()
	return placement.ParseDemand(name, f)
}

// regionsByWeight lists the demand's regions, heaviest first.
func regionsByWeight(dem []placement.DemandPoint) []string {
	w := map[string]float64{}
	var rs []string
	for _, d := range dem {
		if _, ok := w[d.Region]; !ok {
			rs = append(rs, d.Region)
		}
		w[d.Region] += d.Weight
	}
	slices.SortStableFunc(rs, func(a, b string) int {
		switch {
		case w[a] > w[b]:
			return -1
		case w[a] < w[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	return rs
}

func demandNote(name string) string {
	if name == "" {
		return " (no demand file: global classes only)"
	}
	return " --demand " + name
}

func writePlan(w io.Writer, p *placement.Plan) error {
	data, err := p.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func ms(v float64) string { return fmt.Sprintf("%.1f ms", v) }

// printPlan writes the plan as tables for a person: the sets, latency by
// demand region, what each edge holds, SLO misses and violations.
func printPlan(w io.Writer, p placement.Problem, res *placement.Result) {
	classes, objects := 0, 0
	for _, u := range res.Units {
		if u.Kind == "class" {
			classes++
		} else {
			objects++
		}
	}
	nObj := 0
	if p.Catalog != nil {
		nObj = len(p.Catalog.Objects)
	}
	fmt.Fprintf(w, "%d edges, %d demand points, %s in %s: %d replica sets (%s, %s of their own)\n",
		len(p.Topology.Edges), len(p.Demand), plural(nObj, "object"), plural(classes, "class"), len(res.Units),
		plural(classes, "class"), plural(objects, "object"))
	fmt.Fprintf(w, "objective: %s = %.2f ms\n", res.Plan.Objective.Name, res.MeanRTTMs)
	if o := res.Plan.Objective; o.SLOMs > 0 {
		fmt.Fprintf(w, "SLO %.0f ms: %.1f%% of requests estimated over it, from %d demand points\n", o.SLOMs, 100*o.SLOMissShare, len(res.SLOMisses))
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SET\tK\tREPLICAS\tBYTES\tREQ/S\tMEAN RTT\t")
	for _, u := range res.Units {
		name := u.Kind + " " + u.Name
		if u.Kind == "class" && u.Objects > 0 {
			name += " (" + plural(u.Objects, "object") + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.4g\t%s\t\n", name, u.K, strings.Join(u.Replicas, " "), placement.HumanBytes(u.Bytes), u.Rate, ms(u.MeanRTTMs))
	}
	tw.Flush()
	if objects > 0 {
		fmt.Fprintln(w, "(an object without a set of its own follows its class; object sets equal to their class's are not in the plan file)")
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DEMAND REGION\tPOINTS\tREQUESTS\tP50\tP95\tMAX\tMEAN\t")
	for _, r := range res.Regions {
		fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%s\t%s\t%s\t%s\t\n", r.Region, r.DemandPoints, 100*r.Share, ms(r.P50Ms), ms(r.P95Ms), ms(r.MaxMs), ms(r.MeanMs))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tREGION\tFAULT DOMAIN\tSETS\tUSED\tCAPACITY\tUSE\tNEAREST FOR\t")
	for _, e := range res.Edges {
		capacity, use := "no limit", "-"
		if e.CapacityBytes > 0 {
			capacity = placement.HumanBytes(e.CapacityBytes)
			use = fmt.Sprintf("%.0f%%", 100*float64(e.UsedBytes)/float64(e.CapacityBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.1f%%\t\n", e.ID, e.Region, e.FaultDomain, e.Sets, placement.HumanBytes(e.UsedBytes), capacity, use, 100*e.Share)
	}
	tw.Flush()

	if len(res.SLOMisses) > 0 {
		const show = 15
		fmt.Fprintf(w, "\nDemand points over the SLO (%d; worst %d shown):\n", len(res.SLOMisses), min(show, len(res.SLOMisses)))
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEMAND\tREGION\tWORST\tFOR\tREQUESTS OVER\t")
		for _, m := range res.SLOMisses[:min(show, len(res.SLOMisses))] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f%%\t\n", m.Demand, m.Region, ms(m.WorstMs), m.Unit, 100*m.MissedShare)
		}
		tw.Flush()
	}
	printViolations(w, res.Violations)
}

func printViolations(w io.Writer, vs []placement.Violation) {
	if len(vs) == 0 {
		return
	}
	fmt.Fprintf(w, "\nVIOLATED CONSTRAINTS (%d; a best-effort plan):\n", len(vs))
	for _, v := range vs {
		fmt.Fprintf(w, "  %s\n", v)
	}
}

func printExplanation(w io.Writer, ex *placement.Explanation) {
	fmt.Fprintf(w, "%s:%s follows %s.\n", ex.Namespace, ex.Key, ex.Rule)
	u := ex.Unit
	fmt.Fprintf(w, "Set %s %s: %s, %s, %.4g req/s, mean RTT %s.\n", u.Kind, u.Name, plural(u.Objects, "catalog object"), placement.HumanBytes(u.Bytes), u.Rate, ms(u.MeanRTTMs))
	fmt.Fprintf(w, "Replicas: %s.\n", ex.KRule)
	fmt.Fprintf(w, "Fault domains: %d spanned, %d required.\n", ex.FaultDomains, ex.FaultDomainsNeeded)
	var parts []string
	for _, d := range ex.Demand[:min(len(ex.Demand), 8)] {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", d.Region, 100*d.Share))
	}
	fmt.Fprintf(w, "Demand: %s.\n\n", strings.Join(parts, ", "))

	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHOSEN\tREGION\tFAULT DOMAIN\tNEAREST FOR\tTHEIR MEAN RTT\tWITHOUT IT\t")
	for _, r := range ex.Replicas {
		loss := fmt.Sprintf("%+.1f ms", r.LossMs)
		if r.Only {
			loss = "every request a miss, served from the origin at its latency"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%s\t%s\t\n", r.ID, r.Region, r.FaultDomain, 100*r.Share, ms(r.MeanMs), loss)
	}
	tw.Flush()
	if len(ex.Alternatives) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NOT CHOSEN\tREGION\tFAULT DOMAIN\tBEST SWAP\tMEAN RTT\tWHY NOT\t")
		for _, a := range ex.Alternatives {
			why := a.Blocked
			if why == "" {
				why = "worse"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\tfor %s\t%+.1f ms\t%s\t\n", a.ID, a.Region, a.FaultDomain, a.Replacing, a.DeltaMs, why)
		}
		tw.Flush()
	}
}

func printMoves(w io.Writer, res *placement.Result, fresh *placement.Result) {
	m := res.Moves
	fmt.Fprintf(w, "plan in force: mean RTT %s; re-plan: %s", ms(m.CurrentMeanRTTMs), ms(res.MeanRTTMs))
	if fresh != nil {
		fmt.Fprintf(w, " (a plan from scratch: %s)", ms(fresh.MeanRTTMs))
	}
	fmt.Fprintf(w, "\nmoves: %d replicas must be added, %d more by choice; %s to copy\n", m.Forced, m.Optional, placement.HumanBytes(m.Bytes))
	if len(m.Changes) == 0 {
		fmt.Fprintln(w, "no change")
		printViolations(w, res.Violations)
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SET\tADD\tDROP\tFORCED\tCOPY\t")
	for _, c := range m.Changes {
		add, drop := strings.Join(c.Added, " "), strings.Join(c.Removed, " ")
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%d\t%s\t\n", c.Kind, c.Name, dash(add), dash(drop), c.Forced, placement.HumanBytes(c.Bytes))
	}
	tw.Flush()
	printViolations(w, res.Violations)
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "s"):
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
