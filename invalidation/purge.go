package invalidation

import (
	"slices"
	"strings"

	"github.com/geocdn/geocdn/internal/wire"
)

// PurgeMatches reports whether the purge entry p selects the version e: e
// is in p's namespace (a purge never crosses tenants) and its key is one
// of p's keys, starts with one of its prefixes, or e carries one of p's
// tags as a surrogate key. Keys and prefixes compare bytes exactly, as
// logged (the origin strips a leading slash from a purge's keys and
// prefixes first); an empty prefix selects the whole namespace.
func PurgeMatches(p, e *wire.LogEntry) bool {
	if e.Namespace != p.Namespace {
		return false
	}
	if slices.Contains(p.PurgeKeys, e.Key) {
		return true
	}
	for _, pre := range p.PurgePrefixes {
		if strings.HasPrefix(e.Key, pre) {
			return true
		}
	}
	for _, t := range p.PurgeTags {
		if slices.Contains(e.SurrogateKeys, t) {
			return true
		}
	}
	return false
}
