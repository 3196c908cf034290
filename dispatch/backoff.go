package dispatch

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry number attempt (1 for the first retry):
// initial, doubled attempt-1 times up to max, then jittered to [d/2, d] so
// that many sinks or connections do not retry in step. The lanes' retries
// and the sinks' reconnect loops all use it.
func Backoff(attempt int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}
