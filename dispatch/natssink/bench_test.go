package natssink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

const benchBatch = 100

// benchSink starts a sink on the shared server; with JetStream it publishes
// into a fresh stream deleted at the end.
func benchSink(b *testing.B, jetStream bool) *Sink {
	b.Helper()
	url := needNATS(b)
	stream, prefix := names(b)
	if jetStream {
		dial(b, url).createStream(b, stream, prefix+".>")
	}
	cfg, err := ParseSpec(url + "/" + prefix + ".{port}")
	if err != nil {
		b.Fatal(err)
	}
	cfg.JetStream = jetStream
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchFrames returns a batch of 64-byte frames; renew gives them new ids.
func benchFrames() (batch []*serialcb.Frame, renew func()) {
	var gen serialcb.IDGen
	batch = make([]*serialcb.Frame, benchBatch)
	for i := range batch {
		batch[i] = &serialcb.Frame{Port: "ttyUSB0", Seq: uint64(i), ReceivedAt: time.Now(),
			Payload: fmt.Appendf(nil, "%-64d", i)}
	}
	renew = func() {
		now := time.Now()
		for _, f := range batch {
			f.ID = gen.New(now)
			f.ReceivedAt = now
		}
	}
	return batch, renew
}

func benchWrite(b *testing.B, jetStream bool, writers int) {
	s := benchSink(b, jetStream)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(writers) // × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		batch, renew := benchFrames()
		for pb.Next() {
			renew()
			if err := s.Write(ctx, batch); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/frame")
}

// BenchmarkWriteJetStream: batches of 100 64-byte frames, each frame
// acknowledged by a file stream; one Write at a time per core.
func BenchmarkWriteJetStream(b *testing.B) { benchWrite(b, true, 1) }

// BenchmarkWriteJetStreamParallel: the same with 4 Writes in flight per
// core, as a lane with concurrency does.
func BenchmarkWriteJetStreamParallel(b *testing.B) { benchWrite(b, true, 4) }

// BenchmarkWriteCore: batches of 100 64-byte frames with core NATS, one
// flush round trip per batch.
func BenchmarkWriteCore(b *testing.B) { benchWrite(b, false, 1) }
