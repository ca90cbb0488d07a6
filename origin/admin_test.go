package origin

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawRequest sends one request exactly as written (the target is not
// cleaned or re-escaped, as curl --path-as-is sends it) and returns the
// status and body of the answer.
func rawRequest(t *testing.T, addr, method, target string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n", method, target)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// routePath turns a route's pattern into its method and a concrete path.
func routePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	if strings.HasSuffix(path, "/") {
		path += "some/key"
	}
	return method, path
}

// pathVariants are spellings of path that a mux, a proxy or a careless
// prefix test may take for it: each single character of the route's own
// part percent-encoded (upper and lower case hex), doubled and dotted
// slashes, other letter cases.
func pathVariants(path, literal string) []string {
	var out []string
	// From 1: a target must begin with a slash, so the server's parser
	// refuses "%2Fv1/..." before any handler.
	for i := 1; i < len(literal); i++ {
		for _, f := range []string{"%%%02X", "%%%02x"} {
			v := path[:i] + fmt.Sprintf(f, literal[i]) + path[i+1:]
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	out = append(out,
		"/"+path,
		strings.Replace(path, "/v1/", "/v1//", 1),
		"/."+path,
		strings.Replace(path, "/v1/", "/v1/./", 1),
		strings.Replace(path, "/v1/", "/v2/../v1/", 1),
		strings.ToUpper(path),
		strings.Replace(path, "/v1/", "/V1/", 1),
		strings.ToUpper(path[:2])+path[2:],
		strings.Replace(path, "/v1/", "/%2e/v1/", 1),
	)
	return out
}

// TestAdminRoutesNeedToken walks every registered admin route and asks it
// without a token, under every spelling of its path and with every
// method it does not serve: anything but a public route must answer 401.
// The percent-encoded spellings are the bypass that a prefix test on the
// raw path let through (/%761/edges was GET /v1/edges).
func TestAdminRoutesNeedToken(t *testing.T) {
	to := startTestOrigin(t, nil)
	addr := to.HTTPAddr().String()
	routes := to.adminRoutes()
	served := map[string][]string{} // path -> methods some route serves there
	for _, rt := range routes {
		m, p := routePath(rt.pattern)
		served[p] = append(served[p], m)
		if m == http.MethodGet {
			served[p] = append(served[p], http.MethodHead)
		}
	}
	checked := 0
	for _, rt := range routes {
		method, path := routePath(rt.pattern)
		if rt.access != needToken {
			// Public routes answer without a token; the test makes sure
			// the list of them is what the README promises.
			if code, _ := rawRequest(t, addr, method, path, nil, ""); code == http.StatusUnauthorized {
				t.Errorf("public route %s: 401 without a token", rt.pattern)
			}
			continue
		}
		literal, _, _ := strings.Cut(strings.TrimPrefix(rt.pattern, method+" "), "{")
		t.Run(rt.pattern, func(t *testing.T) {
			try := func(method, target string) {
				t.Helper()
				checked++
				if code, body := rawRequest(t, addr, method, target, nil, ""); code != http.StatusUnauthorized {
					t.Errorf("%s %s without a token: %d %q, want 401", method, target, code, body)
				}
			}
			try(method, path)
			for _, v := range pathVariants(path, literal) {
				try(method, v)
			}
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "get", "Put", "PROPFIND"} {
				if !slices.Contains(served[path], m) {
					try(m, path)
				}
			}
			// Wrong credentials are no better than none.
			for _, auth := range []string{"Bearer wrong-token-0123456789", "Basic " + to.token, to.token, "Bearer"} {
				checked++
				if code, _ := rawRequest(t, addr, method, path, map[string]string{"Authorization": auth}, ""); code != http.StatusUnauthorized {
					t.Errorf("%s %s with Authorization %q: %d, want 401", method, path, auth, code)
				}
			}
			checked++
			if code, _ := rawRequest(t, addr, method, path+"?token="+to.token, nil, ""); code != http.StatusUnauthorized {
				t.Errorf("%s %s with the token in the query: %d, want 401", method, path, code)
			}
			// With the token the route is reachable: the refusals above
			// are about the token, not a path that never worked.
			auth := map[string]string{"Authorization": "Bearer " + to.token}
			if code, body := rawRequest(t, addr, method, path, auth, ""); code == http.StatusUnauthorized || code == http.StatusNotFound && !strings.Contains(body, "no such object") && !strings.Contains(body, "no placement plan") && !strings.Contains(body, "is not a member") {
				t.Errorf("%s %s with the token: %d %q", method, path, code, body)
			}
		})
	}
	t.Logf("%d routes, %d unauthenticated requests refused", len(routes), checked)
	for _, unknown := range []string{"/", "/v1/", "/v1/nothing", "/v2/edges", "/%76%31/edges", "/v1/edges/", "*"} {
		m := http.MethodGet
		if unknown == "*" {
			m = http.MethodOptions
		}
		if code, _ := rawRequest(t, addr, m, unknown, nil, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s (no route) without a token: %d, want 401 (deny by default)", m, unknown, code)
		}
	}
}

// TestAdminBypassProbes are the requests that found the hole: none may
// reach a handler, and the purge must not happen.
func TestAdminBypassProbes(t *testing.T) {
	to := startTestOrigin(t, nil)
	addr := to.HTTPAddr().String()
	before := to.store.lastLSN()
	for _, p := range []struct{ method, target, body string }{
		{"GET", "/%761/edges", ""},
		{"GET", "/v%31/edges", ""},
		{"POST", "/%761/purge", `{"prefixes":[""]}`},
		{"PUT", "/%761/placement", "{}"},
		{"PUT", "/%761/objects/x", "content"},
		{"DELETE", "/v%31/objects/x", ""},
	} {
		hdr := map[string]string{"Content-Type": "application/json"}
		if code, body := rawRequest(t, addr, p.method, p.target, hdr, p.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s: %d %q, want 401", p.method, p.target, code, body)
		}
	}
	if got := to.store.lastLSN(); got != before {
		t.Errorf("log moved from LSN %d to %d: an unauthenticated request changed state", before, got)
	}
}

// TestAdminContentTypes: mutating endpoints take only their documented
// types (415 otherwise), and a refused request changes nothing.
func TestAdminContentTypes(t *testing.T) {
	to := startTestOrigin(t, nil)
	addr := to.HTTPAddr().String()
	if code, _ := to.publish(t, "kept", []byte("v1"), ""); code != http.StatusCreated {
		t.Fatalf("publish: %d", code)
	}
	lsn := to.store.lastLSN()
	auth := func(ct string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + to.token}
		if ct != "" {
			h["Content-Type"] = ct
		}
		return h
	}
	for _, tc := range []struct {
		name, method, target, ct, body string
		want                           int
	}{
		{"purge as a form", "POST", "/v1/purge", "application/x-www-form-urlencoded", `{"prefixes":[""]}`, 415},
		{"purge as multipart", "POST", "/v1/purge", "multipart/form-data; boundary=x", `{"prefixes":[""]}`, 415},
		{"purge as text", "POST", "/v1/purge", "text/plain", `{"prefixes":[""]}`, 415},
		{"purge without a type", "POST", "/v1/purge", "", `{"prefixes":[""]}`, 415},
		{"purge with a bad type", "POST", "/v1/purge", "application/json;;", `{"prefixes":[""]}`, 415},
		{"placement as text", "PUT", "/v1/placement", "text/plain", "{}", 415},
		{"placement without a type", "PUT", "/v1/placement", "", "{}", 415},
		{"publish with a malformed type", "PUT", "/v1/objects/new", "text/html; charset", "x", 415},
		{"publish with no media type", "PUT", "/v1/objects/new", "nonsense", "x", 415},
		{"delete with a body", "DELETE", "/v1/objects/kept", "application/json", "{}", 415},
		{"delete with a type", "DELETE", "/v1/objects/kept", "text/plain", "", 415},
		{"scrub with a body", "POST", "/v1/scrub", "application/json", "{}", 415},
		// The documented types are taken.
		{"purge as JSON with a charset", "POST", "/v1/purge", "application/json; charset=utf-8", `{"keys":["nothing-here"]}`, 200},
		{"placement as JSON", "PUT", "/v1/placement", "application/json", "{}", 400}, // reaches the plan's own validation
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := rawRequest(t, addr, tc.method, tc.target, auth(tc.ct), tc.body)
			if code != tc.want {
				t.Errorf("%d %q, want %d", code, body, tc.want)
			}
			if tc.want == 415 && !strings.Contains(body, "Content-Type") && !strings.Contains(body, "body") {
				t.Errorf("415 body %q does not say what was wrong", body)
			}
		})
	}
	// Only the accepted purge (of a key nobody has) wrote to the log.
	if got := to.store.lastLSN(); got != lsn+1 {
		t.Errorf("log at LSN %d after the refusals, want %d", got, lsn+1)
	}
	if _, err := to.store.get("default", "new"); err == nil {
		t.Error("a publish refused with 415 stored the object")
	}
	if _, err := to.store.get("default", "kept"); err != nil {
		t.Errorf("a delete refused with 415 deleted the object: %v", err)
	}
}

// TestMetricsToken: /metrics is public unless a metrics token is set; the
// metrics token opens nothing else.
func TestMetricsToken(t *testing.T) {
	const mt = "metrics-token-0123456789"
	for _, tc := range []struct {
		name         string
		metricsToken string
		auth         string
		want         int
	}{
		{"public by default", "", "", 200},
		{"set, none given", mt, "", 401},
		{"set, wrong one", mt, "Bearer nope-nope-nope-nope", 401},
		{"set, metrics token", mt, "Bearer " + mt, 200},
		{"set, admin token", mt, "admin", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := startTestOrigin(t, func(c *Config) { c.MetricsToken = tc.metricsToken })
			addr := to.HTTPAddr().String()
			hdr := map[string]string{}
			switch tc.auth {
			case "":
			case "admin":
				hdr["Authorization"] = "Bearer " + to.token
			default:
				hdr["Authorization"] = tc.auth
			}
			if code, _ := rawRequest(t, addr, "GET", "/metrics", hdr, ""); code != tc.want {
				t.Errorf("GET /metrics: %d, want %d", code, tc.want)
			}
			if code, _ := rawRequest(t, addr, "GET", "/healthz", nil, ""); code != 200 {
				t.Errorf("GET /healthz without a token: %d, want 200", code)
			}
			if tc.metricsToken != "" {
				if code, _ := rawRequest(t, addr, "GET", "/v1/edges", map[string]string{"Authorization": "Bearer " + mt}, ""); code != 401 {
					t.Errorf("GET /v1/edges with the metrics token: %d, want 401", code)
				}
			}
		})
	}
	if err := (Config{MetricsToken: "short"}).withDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "metrics token") {
		t.Errorf("Validate with a 5-byte metrics token: %v, want a metrics token error", err)
	}
}
