package main

import (
	"strings"
	"testing"

	"github.com/geocdn/geocdn/origin"
)

func TestParseUpstreams(t *testing.T) {
	ups, err := parseUpstreams([]string{"default=https://www.example.com", " shop=http://127.0.0.1:8081/base "}, []string{"shop=pull"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].Namespace != "default" || ups[0].Mode != origin.Mixed || ups[1].URL.Path != "/base" || ups[1].Mode != origin.PullOnly {
		t.Fatalf("%+v", ups)
	}
	for _, tc := range []struct {
		ups, modes []string
		want       string
	}{
		{[]string{"www.example.com"}, nil, "NAMESPACE=URL"},
		{[]string{"default=ftp://x"}, nil, "not an http or https URL"},
		{[]string{"a=https://x", "a=https://y"}, nil, "already has an upstream"},
		{[]string{"a=https://x"}, []string{"b=pull"}, "has no --upstream"},
		{[]string{"a=https://x"}, []string{"a=push"}, "neither pull nor mixed"},
		{[]string{"Shop=https://x"}, nil, "invalid namespace"},
	} {
		if _, err := parseUpstreams(tc.ups, tc.modes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseUpstreams(%q, %q) = %v, want an error saying %q", tc.ups, tc.modes, err, tc.want)
		}
	}
}
