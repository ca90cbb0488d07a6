package invalidation

import (
	"testing"

	"github.com/geocdn/geocdn/internal/wire"
)

func TestPurgeMatches(t *testing.T) {
	version := func(ns, key string, tags ...string) wire.LogEntry {
		return wire.LogEntry{Op: wire.OpPut, Namespace: ns, Key: key, SurrogateKeys: tags}
	}
	purge := func(ns string, keys, prefixes, tags []string) wire.LogEntry {
		return wire.LogEntry{Op: wire.OpPurge, Namespace: ns, PurgeKeys: keys, PurgePrefixes: prefixes, PurgeTags: tags}
	}
	for _, tc := range []struct {
		name    string
		purge   wire.LogEntry
		version wire.LogEntry
		want    bool
	}{
		{"key", purge("default", []string{"a.txt", "img/b.png"}, nil, nil), version("default", "img/b.png"), true},
		{"key not listed", purge("default", []string{"a.txt"}, nil, nil), version("default", "b.txt"), false},
		{"a key is not a prefix", purge("default", []string{"img"}, nil, nil), version("default", "img/b.png"), false},
		{"keys compare exactly", purge("default", []string{"A.txt"}, nil, nil), version("default", "a.txt"), false},
		{"prefix", purge("default", nil, []string{"css/"}, nil), version("default", "css/site.css"), true},
		{"prefix equal to the key", purge("default", nil, []string{"css/site.css"}, nil), version("default", "css/site.css"), true},
		{"prefix is bytes, not segments", purge("default", nil, []string{"css"}, nil), version("default", "cssx/a"), true},
		{"prefix not matching", purge("default", nil, []string{"css/"}, nil), version("default", "js/app.js"), false},
		{"empty prefix selects the namespace", purge("default", nil, []string{""}, nil), version("default", "any/key"), true},
		{"tag", purge("default", nil, nil, []string{"home"}), version("default", "index.html", "nav", "home"), true},
		{"tag not carried", purge("default", nil, nil, []string{"home"}), version("default", "index.html", "nav"), false},
		{"a tag is not a key", purge("default", nil, nil, []string{"index.html"}), version("default", "index.html"), false},
		{"any selector is enough", purge("default", []string{"x"}, []string{"y/"}, []string{"home"}), version("default", "z", "home"), true},
		{"nothing selected", purge("default", nil, nil, nil), version("default", "a.txt"), false},
		{"another namespace's key", purge("tenant", []string{"a.txt"}, nil, nil), version("default", "a.txt"), false},
		{"another namespace's prefix", purge("tenant", nil, []string{""}, nil), version("default", "a.txt"), false},
		{"another namespace's tag", purge("tenant", nil, nil, []string{"home"}), version("default", "a.txt", "home"), false},
		{"own namespace", purge("tenant", []string{"a.txt"}, nil, nil), version("tenant", "a.txt"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PurgeMatches(&tc.purge, &tc.version); got != tc.want {
				t.Fatalf("PurgeMatches = %v, want %v", got, tc.want)
			}
		})
	}
}
