package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// benchPipeline runs the whole daemon in-process on a virtual port: the
// writer pushes b.N 64-byte lines into the device side as fast as the pty
// takes them, and the clock stops when the last frame is acknowledged and
// every sink has written it. A stateDir routes the frames through each
// sink's spool, as run does by default: a frame is then acknowledged once on
// disk, and the sink reads it back from there.
func benchPipeline(b *testing.B, stateDir string, sinks ...configs.Sink) {
	pair, err := vport.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	// The port outruns an HTTP sink (a pty carries ~300k frames/s): give
	// each sink room for every frame so that this measures throughput, not
	// the backlog overflow policy.
	for i := range sinks {
		sinks[i].Queue = b.N + 1
	}
	cfg := &configs.Config{
		StateDir: stateDir,
		Ports:    []configs.Port{{Name: "bench", Path: pair.Path(), Baud: 115200}},
		Sinks:    sinks,
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	d, err := build(cfg, NewRegistry(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ready := make(chan struct{})
	d.ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
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
	sinksDone := func() bool {
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
	for !sinksDone() {
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
		if stateDir != "" && s.Spooled == 0 && b.N > 0 {
			b.Fatalf("sink %s: nothing went through the spool", s.Name)
		}
	}
}

func BenchmarkPipelineSQLite(b *testing.B) {
	db := filepath.Join(b.TempDir(), "bench.db")
	benchPipeline(b, "", configs.Sink{Name: "db", URL: "sqlite:" + db})
}

func BenchmarkPipelineHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	benchPipeline(b, "", configs.Sink{Name: "api", URL: srv.URL + "/ingest", Concurrency: 32})
}

func BenchmarkPipelineSQLiteAndHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	db := filepath.Join(b.TempDir(), "bench.db")
	benchPipeline(b, "", configs.Sink{Name: "db", URL: "sqlite:" + db}, configs.Sink{Name: "api", URL: fmt.Sprint(srv.URL, "/ingest"), Concurrency: 32})
}
