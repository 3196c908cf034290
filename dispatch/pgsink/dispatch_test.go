package pgsink

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
)

// TestIntegrationDispatcher: 10,000 frames through the real dispatcher
// into PostgreSQL, with the sink's backends killed midway, all resolve
// delivered and are stored exactly once.
func TestIntegrationDispatcher(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	app := uniqueName("pgsink")
	log := zaptest.NewLogger(t)

	cfg, err := ParseSpec(sinkURL(app))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Table = table
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{
		Name: "pg",
		Sink: s,
		Options: dispatch.Options{
			MaxBatch:    200,
			MaxInflight: 4,
			Retry:       dispatch.RetryPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		},
	}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}

	frames := makeFrames(10_000)
	futs := make([]*asyncloop.Future[dispatch.Receipt], 0, len(frames))
	for _, f := range frames[:5000] {
		futs = append(futs, d.Submit(*f))
	}
	// Writes are flowing once the first frame is delivered: kill the
	// sink's connections while the rest are being written and submitted.
	if _, err := futs[0].Result(ctx); err != nil {
		t.Fatalf("first frame: %v", err)
	}
	killed := killBackends(t, admin, app)
	for _, f := range frames[5000:] {
		futs = append(futs, d.Submit(*f))
	}
	if _, err := futs[7500].Result(ctx); err != nil {
		t.Fatalf("frame 7500: %v", err)
	}
	killed += killBackends(t, admin, app)
	if killed == 0 {
		t.Error("no backend was killed")
	}

	failed := 0
	for i, f := range futs {
		if _, err := f.Result(ctx); err != nil {
			if failed++; failed <= 5 {
				t.Errorf("frame %d: %v", i, err)
			}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.Drain(dctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := loop.Shutdown(dctx); err != nil {
		t.Errorf("loop shutdown: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if failed > 0 {
		t.Fatalf("%d of %d frames failed", failed, len(futs))
	}
	st := d.Stats()
	t.Logf("%d backends killed; stats %+v", killed, st)
	checkTable(t, admin, table, frames)
}
