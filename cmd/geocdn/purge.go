package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/origin"
)

func purgeCommand() *cli.Command {
	return &cli.Command{
		Name:  "purge",
		Usage: "evict edge copies of objects by key, prefix or surrogate key (tag)",
		Flags: append([]cli.Flag{originURLFlag,
			&cli.StringSliceFlag{Name: "key", Usage: "object key; repeatable", EnvVars: env("purge-key")},
			&cli.StringSliceFlag{Name: "prefix", Usage: "key prefix; repeatable", EnvVars: env("purge-prefix")},
			&cli.StringSliceFlag{Name: "tag", Usage: "surrogate key given at publish; repeatable", EnvVars: env("purge-tag")},
			&cli.BoolFlag{Name: "wait", Usage: "return once every live edge has applied the purge or lost its lease", EnvVars: env("purge-wait")},
			&cli.BoolFlag{Name: "soft", Usage: "mark stale and revalidate instead of evicting", EnvVars: env("purge-soft")},
			&cli.StringFlag{Name: "namespace", EnvVars: env("namespace")},
		}, tokenFlags...),
		Action: func(c *cli.Context) error {
			req := origin.PurgeRequest{Keys: c.StringSlice("key"), Prefixes: c.StringSlice("prefix"), Tags: c.StringSlice("tag")}
			if len(req.Keys)+len(req.Prefixes)+len(req.Tags) == 0 {
				return errors.New("purge needs at least one --key, --prefix or --tag")
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			q := url.Values{}
			if c.Bool("wait") {
				q.Set("wait", "true")
			}
			if c.Bool("soft") {
				q.Set("soft", "true")
			}
			if ns := c.String("namespace"); ns != "" {
				q.Set("namespace", ns)
			}
			_, out, err := adminRequest(c, http.MethodPost, "/v1/purge", q, bytes.NewReader(body), int64(len(body)), http.Header{"Content-Type": {"application/json"}})
			os.Stdout.Write(out)
			return err
		},
	}
}
