package edge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/httpcache"
	"github.com/geocdn/geocdn/internal/wire"
)

// pulledMeta is what the store keeps with a pulled version (the Annotate
// hook): its stored response as httpcache reads it, built once rather
// than on every request, and what the fast path needs to answer a plain
// request with it.
type pulledMeta struct {
	stored httpcache.Stored
	// fast is nil when a plain hit of the version still needs the
	// general path: a status other than 200, Vary (the request's fields
	// select), no-cache (revalidated every time), or a Last-Modified the
	// general path would rewrite in a way not worth copying.
	fast *pulledFast
}

// pulledFast is a pulled version as a fresh 200 hit sends it.
type pulledFast struct {
	// lines are the stored end-to-end fields as the general path sends
	// them for a whole 200 (writeStored and http.ServeContent): each
	// field on its line, Last-Modified in the preferred format, then
	// Accept-Ranges and Content-Length. Age, Cache-Status, X-Cache and
	// Geocdn-Lsn, which change per response, are not in them.
	lines []byte
	// ownDate: lines carry the upstream's Date, which a hit keeps.
	ownDate bool
	// lifetime and initialAge (RFC 9111 §4.2.1, §4.2.3) with received
	// give the age and remaining freshness at any moment.
	lifetime, initialAge time.Duration
	received             time.Time
}

// newPulledMeta builds the pulledMeta of e, a pulled version.
func newPulledMeta(e *wire.LogEntry) *pulledMeta {
	m := &pulledMeta{stored: e.Pulled.Stored()}
	s := m.stored
	sd := httpcache.ParseCacheControl(s.Header["Cache-Control"])
	if s.Status != http.StatusOK || len(s.Header["Vary"]) > 0 || sd.NoCache || len(s.Header["Last-Modified"]) > 1 {
		return m
	}
	f := &pulledFast{received: s.Times.Response, initialAge: httpcache.InitialAge(s.Header, s.Times)}
	f.lifetime, _ = httpcache.FreshnessLifetime(s.Status, s.Header, sd)
	var b []byte
	for _, fl := range e.Pulled.Header {
		name := http.CanonicalHeaderKey(fl.Name)
		value := fl.Value
		switch name {
		case "Content-Length", "Accept-Ranges", "Age", "Cache-Status", "X-Cache", "Geocdn-Lsn":
			continue // the general path sets these itself
		case "Last-Modified":
			// http.ServeContent sends the time it was given, which
			// writeStored parsed from this field.
			if t, err := http.ParseTime(value); err == nil && !t.IsZero() && !t.Equal(time.Unix(0, 0)) {
				value = t.UTC().Format(http.TimeFormat)
			}
		case "Date":
			f.ownDate = true
		}
		b = appendLine(b, name, value)
	}
	b = appendLine(b, "Accept-Ranges", "bytes")
	f.lines = appendLine(b, "Content-Length", strconv.FormatUint(e.Size, 10))
	m.fast = f
	return m
}

// pulledMetaOf returns obj's pulledMeta: the store's, or, from a store
// opened without annotateHeaders (some tests), one built now.
func pulledMetaOf(obj *object) *pulledMeta {
	if m, ok := obj.meta.(*pulledMeta); ok {
		return m
	}
	return newPulledMeta(&obj.Entry)
}

// servePulledFast answers a plain GET or HEAD with obj, a pulled version
// whose content is here and not soft-purged, if the version is fresh
// and a plain request cannot change that (TestFastPathMatchesServeHTTPPulled
// holds it to the general path's bytes). It declines everything else:
// stale versions, Vary, no-cache, and every request when clients' cache
// directives are honoured (the fast path does not see them). Requests
// with Authorization never reach it (SlowHeaders).
func (h *handler) servePulledFast(w fastReply, r *h1.Request, obj *object) bool {
	f := pulledMetaOf(obj).fast
	if f == nil || h.cacheOpts.HonorClientNoCache {
		return false
	}
	age := httpcache.AgeAt(f.initialAge, f.received, h.now())
	ttl := f.lifetime - age
	if ttl <= 0 {
		return false
	}
	c, err := h.st.openShared(obj.Entry.Digest)
	if err != nil {
		return false // gone since the lookup: ServeHTTP pulls it
	}
	b := append(w.Buffer(), f.lines...)
	b = append(b, "Age: "...)
	b = strconv.AppendInt(b, int64(age/time.Second), 10)
	b = append(b, "\r\nCache-Status: "...)
	b = httpcache.CacheStatus{Cache: cacheName, Hit: true, TTL: ttl, TTLSet: true}.Append(b)
	b = append(b, "\r\nGeocdn-Lsn: "...)
	b = strconv.AppendUint(b, h.st.watermark(), 10)
	b = append(b, "\r\nX-Cache: HIT\r\n"...)
	if f.ownDate {
		w.OwnDate()
	}
	return h.sendFast(w, r, c, b)
}
