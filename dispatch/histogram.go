package dispatch

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds, in seconds, of the delivery latency
// buckets: from 1 ms (a healthy local sink) to 1 h (a long outage).
var LatencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// LatencyHistogram is a snapshot of a latency histogram: Counts[i] frames
// took at most LatencyBounds[i] (not cumulative), Counts[len] the rest.
type LatencyHistogram struct {
	Counts [len(LatencyBounds) + 1]uint64
	Sum    float64 // seconds
}

// latencyHist is a lane's histogram, written on the loop, read anywhere.
type latencyHist struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64
	sumNs  atomic.Int64
}

func (h *latencyHist) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

func (h *latencyHist) snapshot() LatencyHistogram {
	var out LatencyHistogram
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return out
}
