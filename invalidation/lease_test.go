package invalidation

import (
	"testing"
	"time"
)

func TestEdgeExpiryEndsBeforeOriginExpiry(t *testing.T) {
	for _, term := range []time.Duration{200 * time.Millisecond, 2 * time.Second, 10 * time.Second, time.Minute} {
		t.Run(term.String(), func(t *testing.T) {
			sent := time.Unix(100, 0)
			// The origin stamps its expiry no earlier than the request's
			// arrival, which is no earlier than its send time; even with
			// the edge's clock running fast by ρ the edge's view ends first.
			originExpiry := sent.Add(term)
			edgeElapsed := time.Duration(float64(term-Margin(term)) * (1 + DriftBound))
			if got := sent.Add(edgeElapsed); !got.Before(originExpiry) {
				t.Fatalf("edge lease (drift-adjusted) ends at %v, not before origin's %v", got, originExpiry)
			}
			if got, want := EdgeExpiry(sent, term), sent.Add(term-Margin(term)); !got.Equal(want) {
				t.Fatalf("EdgeExpiry = %v, want %v", got, want)
			}
		})
	}
}
