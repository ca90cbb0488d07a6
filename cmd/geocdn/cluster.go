package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/origin"
)

// geocdn origin add and remove: membership of the origin cluster, through
// any origin's admin API (followers forward it to the leader).

func originAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add an origin to the cluster (what --join does by itself); start it first with --raft and --join",
		UsageText: "geocdn origin add --id o4 --raft 10.0.0.4:7001 [--origin URL] [--non-voter]",
		Flags: append([]cli.Flag{
			originURLFlag,
			&cli.StringFlag{Name: "id", Required: true, Usage: "the new origin's id", EnvVars: env("member-id")},
			&cli.StringFlag{Name: "raft", Required: true, Usage: "the new origin's cluster address (its --raft)", EnvVars: env("member-raft")},
			&cli.BoolFlag{Name: "non-voter", Usage: "add it as a non-voter: it follows the log but does not count towards a quorum"},
		}, tokenFlags...),
		Action: func(c *cli.Context) error {
			if err := pki.ValidID(c.String("id")); err != nil {
				return fmt.Errorf("--id: %w", err)
			}
			if _, _, err := net.SplitHostPort(c.String("raft")); err != nil {
				return fmt.Errorf("--raft %q: %w", c.String("raft"), err)
			}
			voter := !c.Bool("non-voter")
			body, _ := json.Marshal(map[string]any{"id": c.String("id"), "raft": c.String("raft"), "voter": voter})
			_, out, err := adminRequest(c, http.MethodPost, "/v1/cluster/members", nil, bytes.NewReader(body), int64(len(body)),
				http.Header{"Content-Type": {"application/json"}})
			if err != nil {
				return err
			}
			return printCluster(os.Stdout, out)
		},
	}
}

func originRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "remove an origin from the cluster",
		UsageText: "geocdn origin remove --id o3 [--origin URL]",
		Flags: append([]cli.Flag{
			originURLFlag,
			&cli.StringFlag{Name: "id", Required: true, Usage: "the id of the origin to remove", EnvVars: env("member-id")},
		}, tokenFlags...),
		Action: func(c *cli.Context) error {
			_, out, err := adminRequest(c, http.MethodDelete, "/v1/cluster/members/"+c.String("id"), nil, nil, 0, nil)
			if err != nil {
				return err
			}
			return printCluster(os.Stdout, out)
		},
	}
}

func printCluster(w io.Writer, body []byte) error {
	var cs origin.ClusterStatus
	if err := json.Unmarshal(body, &cs); err != nil {
		return fmt.Errorf("decode the cluster's state: %w", err)
	}
	return writeClusterTable(w, cs)
}

// writeClusterTable prints the members of the cluster, the leader first
// marked, with each one's raft state and how far it has applied the log.
func writeClusterTable(w io.Writer, cs origin.ClusterStatus) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORIGIN\tRAFT\tROLE\tSTATE\tTERM\tAPPLIED\tCOMMIT\tLSN\tMISSING BLOBS\tADMIN\tEDGES DIAL")
	for _, m := range cs.Members {
		role := "voter"
		if !m.Voter {
			role = "non-voter"
		}
		if m.ID == cs.Leader {
			role += ", leader"
		}
		if m.Error != "" {
			// The innermost cause says it: "connection refused".
			why := m.Error
			if i := strings.LastIndex(why, ": "); i >= 0 {
				why = why[i+2:]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\tunreachable (%s)\t\t\t\t\t\t\t\n", m.ID, m.Raft, role, why)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.Raft, role, m.State, m.Term,
			m.AppliedIndex, m.CommitIndex, m.LSN, m.MissingBlobs, m.HTTP, m.QUIC)
	}
	return tw.Flush()
}
