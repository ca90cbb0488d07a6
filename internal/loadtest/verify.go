package loadtest

import (
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// object is one key the run reads, and every version of it the run
// published.
type object struct {
	key  string
	path string // key, escaped for a URL path
	size int64
	tag  string // its Surrogate-Key, for purges by tag

	mu       sync.Mutex
	versions []*published
}

// published is one publish of an object: started when its request was
// sent, acknowledged (acked > 0) when the origin answered 201.
type published struct {
	c       *content
	strong  bool
	started time.Duration
	acked   time.Duration // 0 until acknowledged; offsets are > 0
	failed  bool
}

// begin records a publish of c about to be sent at offset at.
func (o *object) begin(c *content, strong bool, at time.Duration) *published {
	p := &published{c: c, strong: strong, started: at}
	o.mu.Lock()
	o.versions = append(o.versions, p)
	o.mu.Unlock()
	return p
}

// end records the origin's answer to p.
func (o *object) end(p *published, ok bool, at time.Duration) {
	o.mu.Lock()
	if ok {
		p.acked = max(at, 1)
	} else {
		p.failed = true
	}
	o.mu.Unlock()
}

// latest is the newest version acknowledged, or nil.
func (o *object) latest() *published {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.versions) - 1; i >= 0; i-- {
		if o.versions[i].acked > 0 {
			return o.versions[i]
		}
	}
	return nil
}

// current is the newest version sent, acknowledged or not: what a
// conditional GET names and a Range GET asks a part of.
func (o *object) current() *published {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.versions) == 0 {
		return nil
	}
	return o.versions[len(o.versions)-1]
}

// check judges a read of o sent at offset sent that got the version with
// entity tag etag: stale if a strong publish of a newer version had been
// acknowledged before the read was sent. It also returns the version
// read, if the run published it.
func (o *object) check(etag string, sent time.Duration) (v *published, stale string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	idx, floor := -1, -1
	for i, p := range o.versions {
		if p.c.etag() == etag {
			idx = i
		}
		if p.strong && p.acked > 0 && p.acked < sent {
			floor = i
		}
	}
	if idx >= 0 {
		v = o.versions[idx]
	}
	if floor < 0 || idx >= floor {
		return v, ""
	}
	f := o.versions[floor]
	read := "a version the run did not publish"
	if idx >= 0 {
		read = fmt.Sprintf("generation %d", v.c.gen)
	}
	return v, fmt.Sprintf("%s: read sent at %s got %s (%s); generation %d (%s) was published strong and acknowledged at %s",
		o.key, fmtOffset(sent), read, shortTag(etag), f.c.gen, shortTag(f.c.etag()), fmtOffset(f.acked))
}

// digestOfETag returns the hex digest an edge's entity tag carries, or
// "" if it is not one of ours (quoted, 64 hex digits; a weak tag is not).
func digestOfETag(etag string) string {
	d, ok := strings.CutPrefix(etag, `"`)
	if !ok {
		return ""
	}
	d, ok = strings.CutSuffix(d, `"`)
	if !ok || len(d) != 64 {
		return ""
	}
	if _, err := hex.DecodeString(d); err != nil {
		return ""
	}
	return d
}

func shortTag(etag string) string {
	if d := digestOfETag(etag); d != "" {
		return d[:12]
	}
	if etag == "" {
		return "no ETag"
	}
	return etag
}

func fmtOffset(d time.Duration) string { return "+" + d.Round(time.Millisecond).String() }
