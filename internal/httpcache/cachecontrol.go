package httpcache

import (
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDelta is the largest delta-seconds value: larger values and
// overflowing calculations are clamped to 2^31 seconds (RFC 9111 §1.2.2).
const MaxDelta = 2147483648 * time.Second

// Delta is the argument of a Cache-Control directive whose value is
// delta-seconds (RFC 9111 §1.2.2).
type Delta struct {
	Present bool          // the directive occurred
	Invalid bool          // its argument was missing or malformed, or the directive was repeated
	Value   time.Duration // whole seconds, at most MaxDelta; 0 when Invalid
}

// Directives holds the Cache-Control directives of a request
// (RFC 9111 §5.2.1) or a response (§5.2.2). Unknown directives are ignored
// (§5.2.3).
type Directives struct {
	MaxAge               Delta // max-age, request §5.2.1.1 or response §5.2.2.1
	SMaxAge              Delta // s-maxage, response §5.2.2.10
	MaxStale             Delta // max-stale, request §5.2.1.2; Value is MaxDelta (any staleness) without argument
	MinFresh             Delta // min-fresh, request §5.2.1.3
	StaleWhileRevalidate Delta // stale-while-revalidate, response, RFC 5861 §3
	StaleIfError         Delta // stale-if-error, request or response, RFC 5861 §4

	NoCache         bool     // no-cache, request §5.2.1.4 or response §5.2.2.4
	NoCacheFields   []string // canonical field names when every no-cache was qualified; nil otherwise
	NoStore         bool     // no-store, request §5.2.1.5 or response §5.2.2.5
	Private         bool     // private, response §5.2.2.7
	PrivateFields   []string // canonical field names when every private was qualified; nil otherwise
	Public          bool     // public, response §5.2.2.9
	MustRevalidate  bool     // must-revalidate, response §5.2.2.2
	ProxyRevalidate bool     // proxy-revalidate, response §5.2.2.8
	MustUnderstand  bool     // must-understand, response §5.2.2.3
	NoTransform     bool     // no-transform, request §5.2.1.6 or response §5.2.2.6
	Immutable       bool     // immutable, response, RFC 8246
	OnlyIfCached    bool     // only-if-cached, request §5.2.1.7
}

// ParseCacheControl parses every line of a Cache-Control header field
// (RFC 9111 §5.2), such as h["Cache-Control"]. Directive names are
// case-insensitive; arguments are tokens or quoted-strings (RFC 9110
// §5.6.4), and spaces around "=" are tolerated. A delta-seconds directive
// that is repeated or has a malformed argument is recorded as Invalid with
// value 0 (§4.2.1). A no-cache or private directive whose field list is
// empty or malformed counts as unqualified.
func ParseCacheControl(values []string) Directives {
	var d Directives
	var noCacheAll, privateAll bool
	for _, v := range values {
		for v != "" {
			var name, arg string
			var hasArg, ok bool
			name, arg, hasArg, ok, v = nextDirective(v)
			switch strings.ToLower(name) {
			case "max-age":
				setDelta(&d.MaxAge, arg, hasArg && ok)
			case "s-maxage":
				setDelta(&d.SMaxAge, arg, hasArg && ok)
			case "max-stale":
				if hasArg {
					setDelta(&d.MaxStale, arg, ok)
				} else {
					setValue(&d.MaxStale, MaxDelta, true)
				}
			case "min-fresh":
				setDelta(&d.MinFresh, arg, hasArg && ok)
			case "stale-while-revalidate":
				setDelta(&d.StaleWhileRevalidate, arg, hasArg && ok)
			case "stale-if-error":
				setDelta(&d.StaleIfError, arg, hasArg && ok)
			case "no-cache":
				d.NoCache = true
				d.NoCacheFields, noCacheAll = addFields(d.NoCacheFields, noCacheAll, arg, hasArg && ok)
			case "private":
				d.Private = true
				d.PrivateFields, privateAll = addFields(d.PrivateFields, privateAll, arg, hasArg && ok)
			case "no-store":
				d.NoStore = true
			case "public":
				d.Public = true
			case "must-revalidate":
				d.MustRevalidate = true
			case "proxy-revalidate":
				d.ProxyRevalidate = true
			case "must-understand":
				d.MustUnderstand = true
			case "no-transform":
				d.NoTransform = true
			case "immutable":
				d.Immutable = true
			case "only-if-cached":
				d.OnlyIfCached = true
			}
		}
	}
	if noCacheAll {
		d.NoCacheFields = nil
	}
	if privateAll {
		d.PrivateFields = nil
	}
	return d
}

// nextDirective splits the first directive off a Cache-Control line. ok is
// false when a quoted argument is unterminated or followed by garbage.
func nextDirective(s string) (name, arg string, hasArg, ok bool, rest string) {
	i := strings.IndexAny(s, ",=")
	if i < 0 {
		return trimOWS(s), "", false, true, ""
	}
	name = trimOWS(s[:i])
	if s[i] == ',' {
		return name, "", false, true, s[i+1:]
	}
	s = trimOWS(s[i+1:])
	if !strings.HasPrefix(s, `"`) {
		if j := strings.IndexByte(s, ','); j >= 0 {
			return name, trimOWS(s[:j]), true, true, s[j+1:]
		}
		return name, s, true, true, ""
	}
	arg, s, ok = unquote(s)
	tail := s
	if j := strings.IndexByte(s, ','); j >= 0 {
		tail, rest = s[:j], s[j+1:]
	}
	return name, arg, true, ok && trimOWS(tail) == "", rest
}

// unquote parses the quoted-string at the start of s (RFC 9110 §5.6.4),
// returning its unescaped content and the rest of s.
func unquote(s string) (text, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "", false
}

// quote renders s as a quoted-string (RFC 9110 §5.6.4).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// trimOWS trims optional whitespace (RFC 9110 §5.6.3).
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// setDelta records a delta-seconds directive with argument arg; ok is
// false when the argument is missing or malformed.
func setDelta(p *Delta, arg string, ok bool) {
	v, valid := parseDelta(arg)
	setValue(p, v, ok && valid)
}

// setValue records a delta-seconds directive; a repeated or malformed one
// is Invalid, with value 0 (RFC 9111 §4.2.1).
func setValue(p *Delta, v time.Duration, ok bool) {
	if p.Present || !ok {
		*p = Delta{Present: true, Invalid: true}
		return
	}
	*p = Delta{Present: true, Value: v}
}

// parseDelta parses delta-seconds (1*DIGIT), clamping at MaxDelta.
func parseDelta(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = min(n*10+int64(s[i]-'0'), int64(MaxDelta/time.Second))
	}
	return time.Duration(n) * time.Second, true
}

// addFields records the field list of a no-cache or private directive.
// all reports whether some occurrence was unqualified: without argument,
// or with an empty or malformed list.
func addFields(fields []string, all bool, arg string, ok bool) ([]string, bool) {
	qualified := false
	if ok {
		for f := range strings.SplitSeq(arg, ",") {
			if f = trimOWS(f); f == "" {
				continue
			}
			qualified = true
			if f = textproto.CanonicalMIMEHeaderKey(f); !slices.Contains(fields, f) {
				fields = append(fields, f)
			}
		}
	}
	return fields, all || !qualified
}

// String renders d as a canonical Cache-Control field value
// (RFC 9111 §5.2), which ParseCacheControl parses back to d (Invalid flags
// aside: an Invalid directive renders with value 0).
func (d Directives) String() string {
	var parts []string
	delta := func(name string, x Delta) {
		if x.Present {
			parts = append(parts, name+"="+strconv.FormatInt(int64(x.Value/time.Second), 10))
		}
	}
	flag := func(name string, on bool) {
		if on {
			parts = append(parts, name)
		}
	}
	fields := func(name string, on bool, f []string) {
		switch {
		case on && len(f) > 0:
			parts = append(parts, name+"="+quote(strings.Join(f, ", ")))
		case on:
			parts = append(parts, name)
		}
	}
	delta("max-age", d.MaxAge)
	delta("s-maxage", d.SMaxAge)
	if d.MaxStale.Present && d.MaxStale.Value == MaxDelta {
		parts = append(parts, "max-stale")
	} else {
		delta("max-stale", d.MaxStale)
	}
	delta("min-fresh", d.MinFresh)
	fields("no-cache", d.NoCache, d.NoCacheFields)
	flag("no-store", d.NoStore)
	fields("private", d.Private, d.PrivateFields)
	flag("public", d.Public)
	flag("must-revalidate", d.MustRevalidate)
	flag("proxy-revalidate", d.ProxyRevalidate)
	flag("must-understand", d.MustUnderstand)
	flag("no-transform", d.NoTransform)
	flag("immutable", d.Immutable)
	flag("only-if-cached", d.OnlyIfCached)
	delta("stale-while-revalidate", d.StaleWhileRevalidate)
	delta("stale-if-error", d.StaleIfError)
	return strings.Join(parts, ", ")
}
