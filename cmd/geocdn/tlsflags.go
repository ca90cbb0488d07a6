package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/tlscert"
)

// Client-facing TLS (edges and the router): certificates from PEM files,
// one pair per hostname, chosen by SNI, the first pair the default.
// They are reloaded when their files change (polled) and on SIGHUP; a
// broken new file keeps the certificate in use and is logged and
// counted.

// tlsFlags are the flags of a client TLS listener named what.
func tlsFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "tls-cert", EnvVars: env("tls-cert"),
			Usage: "PEM certificate chain of " + what + "; repeat with --tls-key, one pair per hostname, chosen by SNI; the first pair is the default"},
		&cli.StringSliceFlag{Name: "tls-key", EnvVars: env("tls-key"),
			Usage: "PEM private key of the --tls-cert at the same position"},
		&cli.DurationFlag{Name: "tls-reload-interval", Value: 10 * time.Second, EnvVars: env("tls-reload-interval"),
			Usage: "how often certificate files are checked for changes (SIGHUP reloads at once)"},
		&cli.BoolFlag{Name: "tls-strict-sni", EnvVars: env("tls-strict-sni"),
			Usage: "refuse a handshake for a name no certificate covers, rather than answer it with the first pair's"},
	}
}

// tlsPairs reads the --tls-cert and --tls-key pairs; none means no TLS.
func tlsPairs(c *cli.Context) ([]tlscert.Pair, error) {
	certs, keys := c.StringSlice("tls-cert"), c.StringSlice("tls-key")
	if len(certs) != len(keys) {
		return nil, fmt.Errorf("%d --tls-cert but %d --tls-key: give them in pairs, certificate and key at the same position", len(certs), len(keys))
	}
	pairs := make([]tlscert.Pair, len(certs))
	for i := range certs {
		pairs[i] = tlscert.Pair{CertFile: certs[i], KeyFile: keys[i]}
	}
	return pairs, nil
}

// loadTLS loads pairs (refusing, with the file and the reason, any that
// cannot be used) and counts failed reloads in reg as
// <prefix>_tls_reload_failures_total.
func loadTLS(pairs []tlscert.Pair, strictSNI bool, reg *prometheus.Registry, prefix string) (*tlscert.Store, error) {
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: prefix + "_tls_reload_failures_total",
		Help: "Certificate reloads that kept the previous certificate because the new files could not be used.",
	})
	reg.MustRegister(failures)
	return tlscert.Load(pairs, tlscert.Options{
		Logger:    slog.Default(),
		NoDefault: strictSNI,
		OnReload: func(_ tlscert.Pair, err error) {
			if err != nil {
				failures.Inc()
			}
		},
	})
}

// reloadTLS reloads st whenever its files change (checked every
// interval) and on SIGHUP, until ctx ends.
func reloadTLS(ctx context.Context, st *tlscert.Store, interval time.Duration) {
	onSIGHUP(ctx, func() {
		if err := st.Reload(); err == nil {
			slog.Info("certificates reloaded on SIGHUP")
		}
	})
	if interval > 0 {
		go st.Watch(ctx, interval)
	}
}

// onSIGHUP calls fn on every SIGHUP until ctx ends.
func onSIGHUP(ctx context.Context, fn func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				fn()
			}
		}
	}()
}
