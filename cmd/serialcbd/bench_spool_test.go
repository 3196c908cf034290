package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// BenchmarkPipelineSQLiteSpooled is BenchmarkPipelineSQLite through the
// on-disk spool (run's default): StateDir is set, so every frame is appended
// to the sink's spool (its future resolves once it is on disk) and the sink
// reads it back from there. The clock stops when the sink has written every
// frame, so both the append and the read/ack paths are measured.
func BenchmarkPipelineSQLiteSpooled(b *testing.B) {
	pair, err := vport.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	db := filepath.Join(b.TempDir(), "bench.db")
	cfg := &configs.Config{
		StateDir: b.TempDir(),
		Ports:    []configs.Port{{Name: "bench", Path: pair.Path(), Baud: 115200}},
		Sinks:    []configs.Sink{{Name: "db", URL: "sqlite:" + db, Queue: b.N + 1}},
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	d, err := build(cfg, newRegistry(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ready := make(chan struct{})
	d.ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	<-ready

	line := bytes.Repeat([]byte("x"), 63)
	line = append(line, '\n')
	chunk := bytes.Repeat(line, 64) // 64 frames per write, 4 KiB
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += 64 {
		n := min(64, b.N-sent)
		if _, err := pair.Write(chunk[:n*len(line)]); err != nil {
			b.Fatal(err)
		}
	}
	sinkDone := func() bool {
		st := d.disp.Stats()
		if st.Delivered+st.Failed < uint64(b.N) {
			return false
		}
		for _, s := range st.Sinks {
			if s.Delivered+s.Failed+s.DeadLettered < uint64(b.N) {
				return false
			}
		}
		return true
	}
	for !sinkDone() {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	st := d.disp.Stats()
	if st.Failed != 0 {
		b.Fatalf("%d frames failed", st.Failed)
	}
	for _, s := range st.Sinks {
		if s.Spooled == 0 && b.N > 0 {
			b.Fatalf("sink %s: nothing went through the spool", s.Name)
		}
	}
}
