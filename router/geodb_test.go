package router

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGeoIPReload: the router's database is replaced by a good new file,
// and a broken one (truncated, or damaged in its data section) keeps the
// database in use, counted and logged; lookups answer throughout, and
// /healthz and /metrics say which database is in use.
func TestGeoIPReload(t *testing.T) {
	good, err := os.ReadFile(testDB)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := startCluster(t, devEdges()[:2], func(cfg *Config) {
		cfg.GeoIPPath, cfg.GeoIPReloadInterval, cfg.Registry = path, -1, reg
	})
	c.waitRoutable(allIDs(devEdges()[:2])...)
	tokyo := netip.MustParseAddr("198.51.100.65") // in the test database
	before := c.router.db.Reader()
	want := c.router.db.Locate(tokyo)

	if err := c.router.ReloadGeoIP(); err != nil {
		t.Fatalf("reload of a good file: %v", err)
	}
	if c.router.db.Reader() == before {
		t.Fatal("a good reload kept the old database")
	}
	meta := bytes.LastIndex(good, []byte("\xab\xcd\xefMaxMind.com"))
	damaged := bytes.Clone(good)
	for i := meta - 300; i < meta-100; i++ {
		damaged[i] = 0xff
	}
	for i, bad := range [][]byte{good[:len(good)/2], damaged, []byte("not a database")} {
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		cur := c.router.db.Reader()
		if err := c.router.ReloadGeoIP(); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("broken file %d: reload error %v, want one naming %s", i, err, path)
		}
		if c.router.db.Reader() != cur {
			t.Fatalf("broken file %d replaced the database in use", i)
		}
		if got := c.router.db.Locate(tokyo); got.Point != want.Point || got.Source != want.Source {
			t.Fatalf("after broken file %d: %+v, want %+v", i, got, want)
		}
	}
	resp, body := c.get("/healthz")
	if resp.StatusCode != 200 || !strings.Contains(body, "geoip ") || !strings.Contains(body, c.router.db.Reader().DatabaseType()) {
		t.Errorf("/healthz: %d %q; want the database's type and build date", resp.StatusCode, body)
	}
	_, metrics := c.get("/metrics")
	for _, m := range []string{"geocdn_router_geoip_build_timestamp_seconds", "geocdn_router_geoip_database_info{type=",
		"geocdn_router_geoip_reload_failures_total 3", "geocdn_router_geoip_reloads_total 1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics has no %s", m)
		}
	}

	// The good file written back loads again.
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	cur := c.router.db.Reader()
	if err := c.router.ReloadGeoIP(); err != nil || c.router.db.Reader() == cur {
		t.Errorf("the good file written back: %v", err)
	}
}

// TestGeoIPWatch: a database file replaced on disk is loaded without a
// signal, by the router's own check for changes.
func TestGeoIPWatch(t *testing.T) {
	good, err := os.ReadFile(testDB)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, devEdges()[:1], func(cfg *Config) {
		cfg.GeoIPPath, cfg.GeoIPReloadInterval = path, 10*time.Millisecond
	})
	before := c.router.db.Reader()
	// Replaced as an updater does: a new file renamed over the old.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replaced database loaded", func() bool { return c.router.db.Reader() != before })
}
