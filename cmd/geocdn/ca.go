package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/pki"
)

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "manage the cluster CA that authenticates nodes to each other",
		Subcommands: []*cli.Command{
			{
				Name:  "init",
				Usage: "create a CA (ca.crt, ca.key) in --dir",
				Flags: []cli.Flag{&cli.StringFlag{Name: "dir", Required: true, EnvVars: env("ca-dir")}},
				Action: func(c *cli.Context) error {
					if err := pki.InitCA(c.String("dir"), time.Now()); err != nil {
						return err
					}
					fmt.Printf("CA created in %s (keep ca.key off the nodes outside development)\n", c.String("dir"))
					return nil
				},
			},
			{
				Name:  "issue",
				Usage: "issue a node certificate signed by the CA in --dir",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dir", Required: true, EnvVars: env("ca-dir"), Usage: "CA directory"},
					&cli.StringFlag{Name: "role", Required: true, Usage: "edge or origin", EnvVars: env("role")},
					&cli.StringFlag{Name: "id", Required: true, Usage: "node id", EnvVars: env("id")},
					&cli.StringFlag{Name: "out", Usage: "output directory (default: the CA directory)", EnvVars: env("out")},
				},
				Action: func(c *cli.Context) error {
					role := pki.Role(c.String("role"))
					if role != pki.RoleEdge && role != pki.RoleOrigin {
						return fmt.Errorf("--role %q: want edge or origin", c.String("role"))
					}
					out := c.String("out")
					if out == "" {
						out = c.String("dir")
					}
					cert, key, err := pki.IssueFiles(c.String("dir"), pki.Identity{Role: role, ID: c.String("id")}, out, time.Now())
					if err != nil {
						return err
					}
					fmt.Printf("certificate %s\nkey         %s\n", cert, key)
					return nil
				},
			},
		},
	}
}
