package jsonlsink

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

func benchFrames(n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	now := time.Now()
	out := make([]*serialcb.Frame, n)
	for i := range out {
		out[i] = &serialcb.Frame{
			ID: gen.New(now), Port: "ttyUSB0", Seq: uint64(i + 1), ReceivedAt: now,
			Payload: []byte(fmt.Sprintf("T=%08d;H=55.2;P=1013.25;flags=0x1f;crc=ABCD;pad=xxxxxxxxxxxxxxxxx", i))[:64],
		}
	}
	return out
}

func benchWrite(b *testing.B, s *Sink) {
	if err := s.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := benchFrames(1000)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkWriteBatch appends batches of 1,000 64-byte frames to a file.
func BenchmarkWriteBatch(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			s, err := New(Config{Path: filepath.Join(b.TempDir(), "bench.jsonl"), Fsync: fsync}, nil)
			if err != nil {
				b.Fatal(err)
			}
			benchWrite(b, s)
		})
	}
}

// BenchmarkEncode is the encoding cost alone (io.Discard).
func BenchmarkEncode(b *testing.B) { benchWrite(b, NewWriter(io.Discard, nil)) }
