package bench

import (
	"math"
	"math/bits"
)

// histogram is a log-linear latency histogram in nanoseconds: exact below
// 128 ns, then 128 buckets per power of two (under 0.8% error), fixed size,
// no allocation per sample.
type histogram struct {
	counts [58 << histSub]uint64
	n      uint64
	max    int64
}

const histSub = 7

func histIndex(v int64) int {
	u := uint64(max(v, 0))
	if u < 1<<histSub {
		return int(u)
	}
	shift := bits.Len64(u) - (histSub + 1)
	return (shift+1)<<histSub + int(u>>shift) - 1<<histSub
}

// histMid is the middle of bucket i.
func histMid(i int) int64 {
	if i < 1<<histSub {
		return int64(i)
	}
	shift := i>>histSub - 1
	m := uint64(i&(1<<histSub-1) + 1<<histSub)
	return int64(m<<shift + (uint64(1)<<shift)/2)
}

func (h *histogram) record(v int64) {
	h.counts[histIndex(v)]++
	h.n++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile in microseconds.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			return us(min(histMid(i), h.max))
		}
	}
	return us(h.max)
}
