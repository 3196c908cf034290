package spool

import (
	"testing"
	"time"
)

// BenchmarkAppend measures group commits of 100 frames × 64-byte payloads
// under each Sync policy. Old segments are dropped by the cap so the disk
// does not fill.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNone} {
		b.Run("sync="+mode.String(), func(b *testing.B) {
			s := open(b, Options{Dir: b.TempDir(), Sync: mode, MaxBytes: 256 << 20})
			batch := mkFrames("ttyUSB0", 1, 100, 64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := s.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "frames/s")
		})
	}
}

// BenchmarkReadAck measures Read(100) + Ack of 64-byte frames; Ack persists
// the position (fsynced under SyncBatch).
func BenchmarkReadAck(b *testing.B) {
	for _, mode := range []SyncMode{SyncBatch, SyncNone} {
		b.Run("sync="+mode.String(), func(b *testing.B) {
			s := open(b, Options{Dir: b.TempDir(), Sync: mode})
			batch := mkFrames("ttyUSB0", 1, 100, 64)
			fill := func() {
				for range 100 {
					if err := s.Append(batch); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var paused time.Duration
			for i := range b.N {
				if i%100 == 0 {
					b.StopTimer()
					t0 := time.Now()
					fill()
					paused += time.Since(t0)
					b.StartTimer()
				}
				fs, c, err := s.Read(100)
				if err != nil || len(fs) != 100 {
					b.Fatalf("read %d frames: %v", len(fs), err)
				}
				if err := s.Ack(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/(time.Since(start)-paused).Seconds(), "frames/s")
		})
	}
}
