package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
)

func udp(port int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }

func addrTexts(as []net.Addr) []string {
	s := make([]string, len(as))
	for i, a := range as {
		if a == nil {
			s[i] = "<nil>"
			continue
		}
		s[i] = a.String()
	}
	return s
}

// Origin and Origins after defaults, and what Validate says of them.
func TestConfigOrigins(t *testing.T) {
	a, b, c := udp(7001), udp(7002), udp(7003)
	for _, tc := range []struct {
		name    string
		origin  net.Addr
		origins []net.Addr
		want    []string // Origins after defaults
		wantErr string   // substring of Validate's error; "" none about origins
	}{
		{name: "Origin alone", origin: a, want: []string{a.String()}},
		{name: "Origins alone", origins: []net.Addr{a, b, c}, want: []string{a.String(), b.String(), c.String()}},
		{name: "Origin goes first", origin: c, origins: []net.Addr{a, b}, want: []string{c.String(), a.String(), b.String()}},
		{name: "Origin listed already", origin: b, origins: []net.Addr{a, b}, want: []string{a.String(), b.String()}},
		{name: "Origin listed already, other form", origin: udp(7002), origins: []net.Addr{a, b}, want: []string{a.String(), b.String()}},
		{name: "none", want: []string{}, wantErr: "origins: at least one required"},
		{name: "empty list", origins: []net.Addr{}, want: []string{}, wantErr: "origins: at least one required"},
		{name: "nil entry", origins: []net.Addr{a, nil}, want: []string{a.String(), "<nil>"}, wantErr: "origins[1]: nil address"},
		{name: "twice", origins: []net.Addr{a, b, udp(7001)}, want: []string{a.String(), b.String(), a.String()}, wantErr: "origins: 127.0.0.1:7001 listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.origins)
			cfg := Config{ID: "e1", DataDir: "d", Origin: tc.origin, Origins: in}.withDefaults()
			if got := addrTexts(cfg.Origins); !slices.Equal(got, tc.want) {
				t.Errorf("Origins after defaults: %q, want %q", got, tc.want)
			}
			if !slices.Equal(in, tc.origins) {
				t.Errorf("the caller's Origins changed: %q, was %q", addrTexts(in), addrTexts(tc.origins))
			}
			if again := cfg.withDefaults(); !slices.Equal(addrTexts(again.Origins), addrTexts(cfg.Origins)) {
				t.Errorf("defaults twice: %q, once: %q", addrTexts(again.Origins), addrTexts(cfg.Origins))
			}
			// Before and after defaults alike.
			for _, c := range []Config{{Origin: tc.origin, Origins: tc.origins}, cfg} {
				err := c.Validate()
				switch {
				case tc.wantErr == "" && err != nil && strings.Contains(err.Error(), "origin"):
					t.Errorf("Validate: %v, want nothing about origins", err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("Validate: %v, want %q", err, tc.wantErr)
				}
			}
		})
	}
}

// The order of a round's dials: the origin of the last session first,
// then the configured ones in order, those that timed out at the back.
func TestDialOrder(t *testing.T) {
	a, b, c, leader := udp(7001), udp(7002), udp(7003), udp(7009)
	d := newDialOrder([]net.Addr{a, b, c})
	check := func(step string, want ...net.Addr) {
		t.Helper()
		if got := addrTexts(d.round()); !slices.Equal(got, addrTexts(want)) {
			t.Errorf("%s: round %q, want %q", step, got, addrTexts(want))
		}
	}
	check("at first", a, b, c)
	d.welcomed(b)
	check("after a session with b", b, a, c)
	d.welcomed(udp(7003))
	check("after a session with c", c, a, b)
	d.timedOut(a)
	check("a timed out", c, b, a)
	d.timedOut(c)
	check("c timed out", b, a, c)
	d.welcomed(leader)
	check("after a session with an origin a follower named", leader, b, a, c)
	d.timedOut(leader)
	check("that one timed out", b, a, c)
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errHeartbeatLost, true},
		{fmt.Errorf("heartbeat: %w", errHeartbeatLost), true},
		{fmt.Errorf("dial origin x: %w", &quic.HandshakeTimeoutError{}), true},
		{&quic.IdleTimeoutError{}, true},
		{fmt.Errorf("read welcome: %w", os.ErrDeadlineExceeded), true},
		{context.DeadlineExceeded, true},
		{timeoutErr{}, true},
		{&quic.ApplicationError{Remote: true, ErrorMessage: "origin shutting down"}, false},
		{&notLeaderError{origin: udp(1), hint: "x"}, false},
		{&permanentError{errors.New("identity")}, false},
		{errors.New("eof"), false},
	} {
		if got := unreachable(tc.err); got != tc.want {
			t.Errorf("unreachable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestNotLeaderError(t *testing.T) {
	for _, tc := range []struct {
		hint, want string
	}{
		{"127.0.0.1:7443", "origin 127.0.0.1:7001 is not the leader; the leader is 127.0.0.1:7443"},
		{"", "origin 127.0.0.1:7001 is not the leader and knows of none"},
	} {
		if got := (&notLeaderError{origin: udp(7001), hint: tc.hint}).Error(); got != tc.want {
			t.Errorf("hint %q: %q, want %q", tc.hint, got, tc.want)
		}
	}
}
