package pgsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// benchFrames returns n frames of 64-byte payloads on one port.
func benchFrames(n int) []*serialcb.Frame {
	frames := make([]*serialcb.Frame, n)
	for i := range frames {
		frames[i] = &serialcb.Frame{
			Port:    "ttyUSB0",
			Payload: []byte(fmt.Sprintf("T=%08d;H=55.2;P=1013.25;flags=0x1f;crc=ABCD;pad=xxxxxxxxxxxxxxxxx", i))[:64],
		}
	}
	return frames
}

func benchWrite(b *testing.B, url string, m method, batchSize int) {
	admin := needPostgres(b)
	table := newTable(b, admin)
	s := startSink(b, url, table, nil)
	s.method = m
	ctx := context.Background()
	batch := benchFrames(batchSize)
	var gen serialcb.IDGen
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// Fresh ids and rising seqs every batch, as a port produces them:
		// known ids would only measure the conflict path.
		b.StopTimer()
		now := time.Now()
		for _, f := range batch {
			seq++
			f.Seq = seq
			f.ReceivedAt = now
			f.ID = gen.New(now)
		}
		b.StartTimer()
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkWrite measures the sink as dispatch drives it: one Write at a
// time of 1, 100 or 1,000 frames of 64 bytes, on loopback.
func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchWrite(b, sinkURL(uniqueName("pgsink_bench")), methodAuto, n) })
	}
}

// BenchmarkMethod compares the ways of writing a batch (see method). Every
// method commits once per batch; the commit's WAL flush costs them all the
// same and is the noisiest part on a shared disk, so it is turned off here
// (synchronous_commit=off) to compare what differs.
func BenchmarkMethod(b *testing.B) {
	url := sinkURL(uniqueName("pgsink_bench")) + "&synchronous_commit=off"
	for _, m := range []method{methodAuto, methodUnnest, methodCopy, methodValues, methodBatch} {
		for _, n := range []int{1, 10, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", m, n), func(b *testing.B) { benchWrite(b, url, m, n) })
		}
	}
}
