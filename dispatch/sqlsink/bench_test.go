package sqlsink

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// benchFrames returns n frames of 64-byte text payloads on one port.
func benchFrames(n int) []*serialcb.Frame {
	frames := make([]*serialcb.Frame, n)
	now := time.Now()
	for i := range frames {
		frames[i] = &serialcb.Frame{
			Port:       "ttyUSB0",
			Seq:        uint64(i + 1),
			ReceivedAt: now.Add(time.Duration(i) * time.Microsecond),
			Payload:    []byte(fmt.Sprintf("T=%08d;H=55.2;P=1013.25;flags=0x1f;crc=ABCD;pad=xxxxxxxxxxxxxxxxx", i))[:64],
		}
	}
	return frames
}

func benchWrite(b *testing.B, chunk, batchSize int, fields []byte) {
	cfg, err := ParseSpec("sqlite:" + filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	s.sizes = stmtSizes(chunk)
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := benchFrames(batchSize)
	for _, f := range batch {
		f.Fields = fields
	}
	var gen serialcb.IDGen
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// Fresh ids and rising seqs every batch, as a port produces them:
		// re-inserting known ids would only measure the conflict path, and
		// repeated seqs would scatter inserts across the (port, seq) index.
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

// BenchmarkWriteBatch is the budget: ≥ 100,000 frames/s of 64-byte
// payloads in batches of 1,000.
func BenchmarkWriteBatch(b *testing.B) { benchWrite(b, chunkRows, 1000, nil) }

// BenchmarkWriteBatchFields is BenchmarkWriteBatch with decoded fields on
// every frame (a typical csv decoder's output, 70 bytes).
func BenchmarkWriteBatchFields(b *testing.B) {
	benchWrite(b, chunkRows, 1000, []byte(`{"ms":"100","temp_c":"21.43","rh_pct":"44.0","pressure_hpa":"1013.21"}`))
}

// BenchmarkChunkRows measures the rows per INSERT that chunkRows is set to.
func BenchmarkChunkRows(b *testing.B) {
	for _, chunk := range []int{1, 10, 50, 100, 200, 500} {
		b.Run(fmt.Sprintf("rows=%d", chunk), func(b *testing.B) { benchWrite(b, chunk, 1000, nil) })
	}
}
