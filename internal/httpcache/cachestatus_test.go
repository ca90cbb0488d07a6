package httpcache

import (
	"testing"
	"time"
)

func TestCacheStatusString(t *testing.T) {
	tests := []struct {
		name string
		in   CacheStatus
		want string
	}{
		{"name only", CacheStatus{Cache: "geocdn"}, "geocdn"},
		{"hit", CacheStatus{Cache: "geocdn", Hit: true, TTL: 42 * sec, TTLSet: true}, "geocdn; hit; ttl=42"},
		{"miss stored", CacheStatus{Cache: "geocdn", Fwd: FwdURIMiss, FwdStatus: 200, Stored: true}, "geocdn; fwd=uri-miss; fwd-status=200; stored"},
		{"revalidated", CacheStatus{Cache: "geocdn", Fwd: FwdStale, FwdStatus: 304}, "geocdn; fwd=stale; fwd-status=304"},
		{"not stored", CacheStatus{Cache: "geocdn", Fwd: FwdURIMiss, StoredSet: true, Detail: "private"}, "geocdn; fwd=uri-miss; stored=?0; detail=private"},
		{"stored set true", CacheStatus{Cache: "geocdn", Stored: true, StoredSet: true}, "geocdn; stored"},
		{"detail string", CacheStatus{Cache: "geocdn", Detail: "not cacheable"}, `geocdn; detail="not cacheable"`},
		{"detail starting with digit", CacheStatus{Cache: "geocdn", Detail: "304"}, `geocdn; detail="304"`},
		{"detail non-ascii", CacheStatus{Cache: "geocdn", Detail: "café\n"}, `geocdn; detail="caf???"`},
		{"ttl zero", CacheStatus{Cache: "geocdn", Hit: true, TTLSet: true}, "geocdn; hit; ttl=0"},
		{"ttl rounds down", CacheStatus{Cache: "geocdn", TTL: 42900 * time.Millisecond, TTLSet: true}, "geocdn; ttl=42"},
		{"negative ttl", CacheStatus{Cache: "geocdn", Hit: true, TTL: -5 * sec, TTLSet: true}, "geocdn; hit; ttl=-5"},
		{"negative fraction", CacheStatus{Cache: "geocdn", TTL: -500 * time.Millisecond, TTLSet: true}, "geocdn; ttl=-1"},
		{"ttl unset ignored", CacheStatus{Cache: "geocdn", TTL: 5 * sec}, "geocdn"},
		{"cache name string", CacheStatus{Cache: "Example Cache", Hit: true}, `"Example Cache"; hit`},
		{"cache name escapes", CacheStatus{Cache: `a"b\c`}, `"a\"b\\c"`},
		{"cache name with colon and slash", CacheStatus{Cache: "edge.example/fra:1"}, "edge.example/fra:1"},
		{"cache name digit first", CacheStatus{Cache: "1cdn"}, `"1cdn"`},
		{"empty cache name", CacheStatus{Hit: true}, `""; hit`},
		{"key", CacheStatus{Cache: "geocdn", Hit: true, Key: `/a?b "c"`}, `geocdn; hit; key="/a?b \"c\""`},
		{"collapsed", CacheStatus{Cache: "geocdn", Fwd: FwdMiss, Collapsed: true}, "geocdn; fwd=miss; collapsed"},
		{"all in order", CacheStatus{Cache: "geocdn", Fwd: FwdVaryMiss, FwdStatus: 200, TTL: 60 * sec, TTLSet: true, Stored: true, Collapsed: true, Key: "k", Detail: "x"},
			`geocdn; fwd=vary-miss; fwd-status=200; ttl=60; stored; collapsed; key="k"; detail=x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Errorf("String = %s, want %s", got, tt.want)
			}
		})
	}
}
