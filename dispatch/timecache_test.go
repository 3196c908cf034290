package dispatch

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestTimeCacheMatchesAppendFormat checks TimeCache against the layout it
// replaces: runs of times within one second (the cached path), second and
// day boundaries, other zones, and years the cache must not keep.
func TestTimeCacheMatchesAppendFormat(t *testing.T) {
	base := time.Date(2026, 11, 24, 23, 59, 58, 999_999_000, time.UTC)
	times := []time.Time{
		time.Unix(0, 0), time.Unix(0, 1), time.Unix(-1, 999_999_999),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 6, time.UTC),
		time.Date(-1, 3, 1, 0, 0, 0, 7, time.UTC),
		time.Date(-1, 3, 1, 0, 0, 0, 8, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 9, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 10, time.FixedZone("X", 5*3600+1800)),
		time.Date(2026, 6, 1, 12, 0, 0, 11, time.FixedZone("X", 5*3600+1800)),
		time.Now(), time.Now(),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := base
	for range 5000 {
		t0 = t0.Add(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
		times = append(times, t0)
	}
	for range 1000 {
		times = append(times, time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9)))
	}
	var c TimeCache
	var got, want []byte
	for i, tm := range times {
		got = c.Append(got[:0], tm)
		want = tm.UTC().AppendFormat(want[:0], TimeLayout)
		if string(got) != string(want) {
			t.Fatalf("time %d (%v): got %q, want %q", i, tm, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { got = c.Append(got[:0], base) }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}

// BenchmarkTimeCache formats 1,000 received_at stamps 3 µs apart (a batch
// read from a busy port), with TimeCache and with AppendFormat.
func BenchmarkTimeCache(b *testing.B) {
	base := time.Date(2026, 11, 24, 19, 0, 0, 0, time.UTC)
	times := make([]time.Time, 1000)
	for i := range times {
		times[i] = base.Add(time.Duration(i) * 3 * time.Microsecond)
	}
	buf := make([]byte, 0, 64)
	b.Run("cache", func(b *testing.B) {
		var c TimeCache
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			buf = c.Append(buf[:0], times[i%len(times)])
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			buf = times[i%len(times)].UTC().AppendFormat(buf[:0], TimeLayout)
		}
	})
}
