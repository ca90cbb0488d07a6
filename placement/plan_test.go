package placement

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPlan exercises every lookup rule.
func testPlan() *Plan {
	return &Plan{
		Version:     PlanVersion,
		GeneratedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Seed:        7,
		Objective:   Objective{Name: "test", MeanRTTMs: 12.5, MinReplicas: 2, MaxReplicas: 4},
		Classes: []PlanClass{
			{Name: "everything", Prefixes: []string{""}, Replicas: []string{"iad", "fra"}},
			{Name: "video", Prefixes: []string{"video/"}, Replicas: []string{"gru", "iad"}},
			{Name: "video-br", Prefixes: []string{"video/br/", "novelas/"}, Replicas: []string{"gru", "gig", "eze"}},
			{Name: "tenant-video", Namespace: "tenant-1", Prefixes: []string{"video/"}, Replicas: []string{"nrt"}},
		},
		Objects: []PlanObject{
			{Namespace: "default", Key: "video/br/final.mp4", Class: "video-br", Replicas: []string{"gru", "gig", "eze", "iad"}},
			{Namespace: "tenant-1", Key: "video/hit.mp4", Replicas: []string{"nrt", "icn"}},
		},
	}
}

func TestReplicasFor(t *testing.T) {
	p := testPlan()
	tests := []struct {
		ns, key string
		want    []string
		class   string
	}{
		{"", "video/br/final.mp4", []string{"gru", "gig", "eze", "iad"}, "video-br"}, // object entry first
		{"default", "video/br/ep1.mp4", []string{"gru", "gig", "eze"}, "video-br"},   // longest prefix
		{"default", "novelas/x.mp4", []string{"gru", "gig", "eze"}, "video-br"},      // second prefix of a class
		{"default", "video/us/ep1.mp4", []string{"gru", "iad"}, "video"},
		{"default", "video", []string{"iad", "fra"}, "everything"}, // "video" does not start with "video/"
		{"default", "img/a.png", []string{"iad", "fra"}, "everything"},
		{"tenant-1", "video/x.mp4", []string{"nrt"}, "tenant-video"},              // the namespace's own class wins
		{"tenant-1", "video/br/x.mp4", []string{"gru", "gig", "eze"}, "video-br"}, // a longer prefix of any namespace wins
		{"tenant-1", "video/hit.mp4", []string{"nrt", "icn"}, "tenant-video"},
		{"tenant-2", "video/hit.mp4", []string{"gru", "iad"}, "video"}, // object entries are per namespace
	}
	for _, tt := range tests {
		t.Run(tt.ns+":"+tt.key, func(t *testing.T) {
			if got := p.ReplicasFor(tt.ns, tt.key); !slices.Equal(got, tt.want) {
				t.Errorf("ReplicasFor = %v, want %v", got, tt.want)
			}
			if got, _ := p.ClassFor(tt.ns, tt.key); got != tt.class {
				t.Errorf("ClassFor = %q, want %q", got, tt.class)
			}
		})
	}

	// Without a catch-all class a key can match nothing.
	q := testPlan()
	q.Classes = q.Classes[1:]
	if got := q.ReplicasFor("default", "img/a.png"); got != nil {
		t.Errorf("uncovered key: ReplicasFor = %v, want nil", got)
	}
	var nilPlan *Plan
	if got := nilPlan.ReplicasFor("default", "a"); got != nil {
		t.Errorf("nil plan: ReplicasFor = %v, want nil", got)
	}

	// The result is the caller's to modify.
	r := p.ReplicasFor("default", "img/a.png")
	r[0] = "changed"
	if got := p.ReplicasFor("default", "img/a.png"); got[0] != "iad" {
		t.Errorf("modifying a result changed the plan: %v", got)
	}
	if got, want := p.Edges(), []string{"eze", "fra", "gig", "gru", "iad", "icn", "nrt"}; !slices.Equal(got, want) {
		t.Errorf("Edges = %v, want %v", got, want)
	}
}

// TestReplicasForConcurrent runs lookups in parallel, for the race
// detector: the index is built once, lazily.
func TestReplicasForConcurrent(t *testing.T) {
	p := testPlan()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got := p.ReplicasFor("default", "video/x"); len(got) != 2 {
					t.Errorf("ReplicasFor = %v", got)
				}
			}
		})
	}
	wg.Wait()
}

func TestPlanRoundTrip(t *testing.T) {
	p := testPlan()
	p.Violations = []Violation{{Constraint: "capacity", Subject: "edge fra", Detail: "too full"}}
	data, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	q, err := UnmarshalPlan(data)
	if err != nil {
		t.Fatalf("UnmarshalPlan: %v\n%s", err, data)
	}
	again, err := q.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Errorf("round trip differs:\n%s\n---\n%s", data, again)
	}
	for _, field := range []string{`"version": 1`, `"generated_at": "2026-01-02T03:04:05Z"`, `"replicas": [`, `"prefixes": [`} {
		if !bytes.Contains(data, []byte(field)) {
			t.Errorf("encoded plan lacks %s:\n%s", field, data)
		}
	}
}

func TestUnmarshalPlanErrors(t *testing.T) {
	valid, err := testPlan().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(from, to string) string { return strings.Replace(string(valid), from, to, 1) }
	bad := testPlan()
	bad.Classes[3].Replicas = nil
	nr, _ := json.Marshal(bad)
	noReplicas := string(nr)
	tests := []struct {
		name, in, want string
	}{
		{"syntax", `{"version": 1,` + "\n" + `"classes": [}`, "plan: line 2, column 13"},
		{"wrong type", `{"version": "one"}`, "field version"},
		{"unknown field", edit(`"seed"`, `"sede"`), `unknown field "sede"`},
		{"future version", edit(`"version": 1`, `"version": 2`), "version 2: this build reads version 1"},
		{"trailing data", string(valid) + "{}", "data after the JSON object"},
		{"duplicate class", edit(`"name": "video",`, `"name": "everything",`), "class name used twice"},
		{"duplicate prefix", edit(`"novelas/"`, `"video/"`), `prefix "video/" already belongs to class "video"`},
		{"bad prefix", edit(`"novelas/"`, `"/novelas/"`), `prefix "/novelas/"`},
		{"no replicas", noReplicas, "tenant-video): no replicas"},
		{"bad edge id", edit(`"fra"`, `"f ra"`), `edge id "f ra"`},
		{"edge twice", edit(`"fra"`, `"iad"`), `edge "iad" listed twice`},
		{"bad key", edit(`"video/hit.mp4"`, `"video/../hit.mp4"`), "invalid key"},
		{"unknown class", edit(`"class": "video-br"`, `"class": "films"`), `class "films" is not in the plan`},
		{"bad namespace", edit(`"namespace": "tenant-1",
      "key"`, `"namespace": "Tenant",
      "key"`), "invalid namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.in == string(valid) {
				t.Fatalf("the edit did not apply")
			}
			_, err := UnmarshalPlan([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("UnmarshalPlan error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	empty := &Plan{Version: 1, Classes: []PlanClass{{Name: "a", Prefixes: []string{""}}}}
	if _, err := empty.Marshal(); err == nil || !strings.Contains(err.Error(), "no replicas") {
		t.Errorf("Marshal of a class without replicas: %v, want an error", err)
	}
}

// FuzzUnmarshalPlan checks that any input either fails cleanly or gives a
// plan that encodes and decodes to itself and answers lookups.
func FuzzUnmarshalPlan(f *testing.F) {
	valid, err := testPlan().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"version":1,"classes":[{"name":"a","prefixes":[""],"replicas":["x"]}]}`))
	f.Add([]byte(`{"version":1,"classes":[],"objects":[{"namespace":"default","key":"a/b","replicas":["e"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := UnmarshalPlan(data)
		if err != nil {
			return
		}
		enc, err := p.Marshal()
		if err != nil {
			t.Fatalf("a plan UnmarshalPlan accepted does not Marshal: %v", err)
		}
		q, err := UnmarshalPlan(enc)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		var a, b any
		json.Unmarshal(enc, &a)
		again, _ := q.Marshal()
		json.Unmarshal(again, &b)
		if !bytes.Equal(enc, again) {
			t.Fatalf("not stable:\n%s\n%s", enc, again)
		}
		for _, c := range p.Classes {
			for _, pre := range c.Prefixes {
				if got := p.ReplicasFor(c.Namespace, pre+"x"); len(got) == 0 {
					t.Fatalf("class %s prefix %q: ReplicasFor(%q) is empty", c.Name, pre, pre+"x")
				}
			}
		}
	})
}
