package router

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/geoip"
)

// geoDB is the router's GeoIP database, replaced whole when its file
// changes: MaxMind publishes new builds weekly, and a router must not be
// restarted to use one. Lookups read the current database through an
// atomic pointer, so a reload never blocks them; a database replaced is
// dropped, not closed, since lookups may still run on it (geoip.Open
// reads the file into memory, so nothing is unmapped under them). A new
// file that cannot be opened or fails verification keeps the database in
// use; the failure is logged and counted.
type geoDB struct {
	path string
	opts geoip.Options
	log  *slog.Logger
	cur  atomic.Pointer[geoip.Reader]

	mu    sync.Mutex // serialises reloads; guards stamp
	stamp fileStamp

	failures prometheus.Counter
	reloads  prometheus.Counter
	info     *prometheus.GaugeVec // 1 for the type in use
}

// fileStamp is what a file looked like: a change to any part means it was
// replaced or rewritten. The file's identity (device and inode) is part of
// it: file times are kept at the kernel's clock tick, so a database
// renamed over the old one within a tick, at the same size, differs only
// in that.
type fileStamp struct {
	size    int64
	modTime time.Time
	fi      os.FileInfo
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.Size(), fi.ModTime(), fi}
}

func (a fileStamp) same(b fileStamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == b.fi
	}
	return a.size == b.size && a.modTime.Equal(b.modTime) && os.SameFile(a.fi, b.fi)
}

// openGeoDB opens path, refusing a database that does not verify.
func openGeoDB(path string, opts geoip.Options, log *slog.Logger, reg *prometheus.Registry) (*geoDB, error) {
	g := &geoDB{path: path, opts: opts, log: log}
	g.stamp = stampOf(path)
	r, err := geoip.Open(path, opts)
	if err != nil {
		return nil, err
	}
	g.cur.Store(r)
	g.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "geocdn_router_geoip_reload_failures_total",
		Help: "GeoIP database reloads that kept the database in use because the new file could not be opened or verified.",
	})
	g.reloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "geocdn_router_geoip_reloads_total",
		Help: "GeoIP databases loaded after the first.",
	})
	g.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "geocdn_router_geoip_database_info",
		Help: "The GeoIP database in use: 1 for its metadata type.",
	}, []string{"type"})
	g.info.WithLabelValues(r.DatabaseType()).Set(1)
	reg.MustRegister(g.failures, g.reloads, g.info,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "geocdn_router_geoip_build_timestamp_seconds",
			Help: "When the GeoIP database in use was built (its metadata's build epoch).",
		}, func() float64 { return float64(g.cur.Load().BuildTime().Unix()) }),
	)
	return g, nil
}

// Locate places addr with the database in use.
func (g *geoDB) Locate(addr netip.Addr) geoip.Location { return g.cur.Load().Locate(addr) }

// Reader is the database in use.
func (g *geoDB) Reader() *geoip.Reader { return g.cur.Load() }

// Reload opens the file again and, if it opens and verifies, uses it.
func (g *geoDB) Reload() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stamp = stampOf(g.path)
	r, err := geoip.Open(g.path, g.opts)
	if err != nil {
		g.failures.Inc()
		g.log.Warn("router: geoip database not reloaded; keeping the one in use", "err", err)
		return err
	}
	old := g.cur.Swap(r)
	g.reloads.Inc()
	g.info.Reset()
	g.info.WithLabelValues(r.DatabaseType()).Set(1)
	g.log.Info("router: geoip database reloaded", "path", g.path, "type", r.DatabaseType(),
		"built", r.BuildTime().Format(time.RFC3339), "previous_built", old.BuildTime().Format(time.RFC3339))
	return nil
}

// Watch reloads the database when its file changes, checked every
// interval, until ctx ends. A file that failed to load is tried again
// when it changes again (a writer still writing will change it).
func (g *geoDB) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		changed := !stampOf(g.path).same(g.stamp)
		g.mu.Unlock()
		if changed {
			g.Reload()
		}
	}
}

// String describes the database in use, for /healthz.
func (g *geoDB) String() string {
	r := g.cur.Load()
	return fmt.Sprintf("geoip %s built %s", r.DatabaseType(), r.BuildTime().Format(time.RFC3339))
}
