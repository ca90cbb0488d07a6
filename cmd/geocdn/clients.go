package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/origin"
)

var originURLFlag = &cli.StringFlag{Name: "origin", Usage: "origin admin API base URL", Value: "http://127.0.0.1:8080", EnvVars: env("origin-url")}

// adminRequest sends one authenticated request to the origin's admin API
// and returns the response body, or an error carrying the origin's message.
func adminRequest(c *cli.Context, method, path string, query url.Values, body io.Reader, size int64, hdr http.Header) (int, []byte, error) {
	tok, err := loadToken(c)
	if err != nil {
		return 0, nil, err
	}
	base, err := url.Parse(c.String("origin"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return 0, nil, fmt.Errorf("--origin %q: want a URL like http://127.0.0.1:8080", c.String("origin"))
	}
	u := base.JoinPath(path)
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(c.Context, method, u.String(), body)
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = size
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error != "" {
			return resp.StatusCode, out, fmt.Errorf("origin answered %s: %s", resp.Status, e.Error)
		}
		return resp.StatusCode, out, fmt.Errorf("origin answered %s", resp.Status)
	}
	return resp.StatusCode, out, nil
}

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "publish a file (or - for stdin) under KEY",
		ArgsUsage: "KEY FILE",
		Flags: append([]cli.Flag{originURLFlag,
			&cli.StringFlag{Name: "content-type", Usage: "Content-Type (default from the file name)", EnvVars: env("content-type")},
			&cli.StringFlag{Name: "cache-control", Usage: "Cache-Control passed to clients unchanged", EnvVars: env("cache-control")},
			&cli.StringSliceFlag{Name: "surrogate-key", Usage: "surrogate key (tag) for purges; repeatable", EnvVars: env("surrogate-key")},
			&cli.StringFlag{Name: "w", Value: "0", Usage: "edges that must store the content before the publish returns: 0, N, quorum or all", EnvVars: env("w")},
			&cli.StringFlag{Name: "consistency", Usage: "strong, bounded(Δ), session, consistent-prefix or eventual", EnvVars: env("consistency")},
			&cli.StringFlag{Name: "namespace", Usage: "namespace (default: default)", EnvVars: env("namespace")},
		}, tokenFlags...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return fmt.Errorf("publish needs KEY and FILE, got %d arguments", c.NArg())
			}
			key, file := strings.TrimPrefix(c.Args().Get(0), "/"), c.Args().Get(1)
			var body io.Reader = os.Stdin
			size := int64(-1)
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				body, size = f, fi.Size()
			}
			hdr := http.Header{}
			ct := c.String("content-type")
			if ct == "" {
				ct = contentTypeFor(key)
			}
			hdr.Set("Content-Type", ct)
			if cc := c.String("cache-control"); cc != "" {
				hdr.Set("Cache-Control", cc)
			}
			if sk := c.StringSlice("surrogate-key"); len(sk) > 0 {
				hdr.Set("Surrogate-Key", strings.Join(sk, " "))
			}
			q := url.Values{}
			for _, name := range []string{"w", "consistency", "namespace"} {
				if v := c.String(name); v != "" {
					q.Set(name, v)
				}
			}
			_, out, err := adminRequest(c, http.MethodPut, "/v1/objects/"+escapeKey(key), q, body, size, hdr)
			os.Stdout.Write(out)
			return err
		},
	}
}

// escapeKey percent-encodes each segment of key once, matching the single
// decoding the origin applies.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete the object under KEY",
		ArgsUsage: "KEY",
		Flags:     append([]cli.Flag{originURLFlag, &cli.StringFlag{Name: "namespace", EnvVars: env("namespace")}}, tokenFlags...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("delete needs KEY, got %d arguments", c.NArg())
			}
			q := url.Values{}
			if ns := c.String("namespace"); ns != "" {
				q.Set("namespace", ns)
			}
			_, out, err := adminRequest(c, http.MethodDelete, "/v1/objects/"+escapeKey(strings.TrimPrefix(c.Args().First(), "/")), q, nil, 0, nil)
			os.Stdout.Write(out)
			return err
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the origin's state (LSN, blob scrubbing, corrupt blobs), the origins of its cluster, and the edges it knows",
		Flags: append([]cli.Flag{originURLFlag, &cli.BoolFlag{Name: "json", Usage: "print the origin's GET /v1/status answer as it is", EnvVars: env("json")}}, tokenFlags...),
		Action: func(c *cli.Context) error {
			_, out, err := adminRequest(c, http.MethodGet, "/v1/status", nil, nil, 0, nil)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				os.Stdout.Write(out)
				return nil
			}
			var st origin.Status
			if err := json.Unmarshal(out, &st); err != nil {
				return fmt.Errorf("decode /v1/status: %w", err)
			}
			printOriginStatus(os.Stdout, st, time.Now())
			if len(st.Cluster.Members) > 1 {
				fmt.Println()
				if err := writeClusterTable(os.Stdout, st.Cluster); err != nil {
					return err
				}
			}
			fmt.Println()
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EDGE\tREGION\tSTATE\tORIGIN\tWATERMARK\tLAG\tLEASE LEFT\tLAST RESYNC\tDIVERGENCE\tSCRUB\tURL")
			for _, e := range st.Edges {
				left := "-"
				if !e.LeaseExpires.IsZero() {
					if d := time.Until(e.LeaseExpires); d > 0 {
						left = d.Round(time.Millisecond).String()
					}
				}
				last, div := "-", "-"
				if r := e.LastResync; r != nil {
					last = fmt.Sprintf("%s ago, %s", time.Since(r.At).Round(time.Second), r.Outcome)
					div = fmt.Sprint(r.Divergence())
				}
				state := string(e.State)
				if !e.LostSince.IsZero() {
					state = fmt.Sprintf("%s, lost %s ago", state, time.Since(e.LostSince).Round(time.Second))
				}
				conn := e.Origin
				if conn == "" {
					conn = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Region, state, conn, e.Watermark, e.Lag, left, last, div,
					scrubColumn(e.Scrub, time.Now()), e.PublicURL)
			}
			return tw.Flush()
		},
	}
}

// printOriginStatus writes the origin section of `geocdn status`. Corrupt
// blobs are shouted: the origin holds the only copy and cannot repair them.
func printOriginStatus(w io.Writer, st origin.Status, now time.Time) {
	sc := st.Scrub
	fmt.Fprintf(w, "ORIGIN    %s\n", st.ID)
	fmt.Fprintf(w, "LAST LSN  %d\n", st.LastLSN)
	var pass string
	switch {
	case sc.Running:
		pass = fmt.Sprintf("pass %d running, %.1f%% done (%s of %s, %d of %d blobs)", sc.Pass, 100*sc.Progress,
			humanize.IBytes(uint64(sc.PassBytes)), humanize.IBytes(uint64(sc.PassTotalBytes)), sc.PassBlobs, sc.PassTotalBlobs)
	case sc.Pass == 0:
		pass = "no pass yet"
	default:
		pass = fmt.Sprintf("pass %d checked %d blobs (%s)", sc.Pass, sc.PassTotalBlobs, humanize.IBytes(uint64(sc.PassTotalBytes)))
		if !sc.NextPass.IsZero() {
			pass += ", next in " + roundAge(sc.NextPass.Sub(now))
		}
	}
	if !sc.LastPassFinished.IsZero() && sc.Running {
		pass += "; last full pass ended " + roundAge(now.Sub(sc.LastPassFinished)) + " ago"
	}
	fmt.Fprintf(w, "SCRUB     %s; at most %s/s, a pass every %s\n", pass, humanize.IBytes(uint64(sc.Rate)), sc.Interval)
	if sc.PassReadErrors > 0 {
		fmt.Fprintf(w, "SCRUB     %d blobs could not be read this pass: %s\n", sc.PassReadErrors, sc.LastError)
	}
	if n := max(len(sc.CorruptBlobs), sc.PassCorrupt); n > 0 {
		fmt.Fprintf(w, "!!! %d CORRUPT BLOB(S) AT THE ORIGIN: content no longer matches its digest, and the origin cannot repair it.\n", n)
		fmt.Fprintf(w, "!!! Restore each file, or delete the keys naming it and publish them again.\n")
		for _, b := range sc.CorruptBlobs {
			keys := "-"
			if len(b.Keys) > 0 {
				ks := make([]string, len(b.Keys))
				for i, k := range b.Keys {
					ks[i] = k.String()
				}
				keys = strings.Join(ks, ", ")
			}
			fmt.Fprintf(w, "!!!   %s  %s  %s  keys: %s\n", b.Digest, b.Reason, b.Path, keys)
		}
	}
}

// roundAge rounds d for a person: seconds under an hour, minutes above.
func roundAge(d time.Duration) string {
	d = max(d, 0)
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// contentTypeFor guesses a Content-Type from the key's extension.
func contentTypeFor(key string) string {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return "application/octet-stream"
	}
	if ct := mime.TypeByExtension(key[i:]); ct != "" {
		return ct
	}
	return "application/octet-stream"
}
