package dispatch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func unresolved(futs []*asyncloop.Future[dispatch.Receipt], wait time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	n := 0
	for _, f := range futs {
		if _, err := f.Result(ctx); errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			n++
		}
	}
	return n
}

// R1a: frames lingering in a lane when the loop shuts down never resolve.
func TestShutdownResolvesLingeringFrames(t *testing.T) {
	s := newScriptSink(nil)
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s,
		Options: dispatch.Options{MaxBatch: 100, Linger: time.Hour}}}})
	futs := fx.submit("p", 5)
	if err := fx.loop.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = fx.d.Close()
	if n := unresolved(futs, 200*time.Millisecond); n > 0 {
		t.Errorf("%d of %d frame futures never resolved (no log, no count): stats %+v", n, len(futs), fx.d.Stats())
	}
}

// R1b: the daemon's own sequence (Drain, then Shutdown) with on_full: fail.
// Drain's CallSoon fails at once because read loops just filled the CallSoon
// queue; Drain neither waits nor aborts; Shutdown then drops the linger timer.
func TestDrainWithFullQueueLosesNothing(t *testing.T) {
	s := newScriptSink(nil)
	loop := asyncloop.New(asyncloop.Options{QueueSize: 8, Workers: 4, OnFull: asyncloop.FailFast})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s,
		Options: dispatch.Options{MaxBatch: 100, Linger: 50 * time.Millisecond}}}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	hold, held := make(chan struct{}), make(chan struct{})
	if err := loop.CallSoon(func() { close(held); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-held
	var gen serialcb.IDGen
	var futs []*asyncloop.Future[dispatch.Receipt]
	for i := range 8 { // exactly fills the CallSoon queue
		now := time.Now()
		futs = append(futs, d.Submit(serialcb.Frame{ID: gen.New(now), Port: "p", Seq: uint64(i + 1), ReceivedAt: now}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { time.Sleep(50 * time.Millisecond); close(hold) }() // the loop catches up
	derr := d.Drain(ctx)
	t.Logf("Drain returned %v", derr)
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = loop.Shutdown(sctx)
	_ = d.Close()
	if n := unresolved(futs, 300*time.Millisecond); n > 0 {
		t.Errorf("%d of %d frame futures never resolved; sink got %d; stats %+v", n, len(futs), len(s.delivered), d.Stats())
	}
}

// R1c: a retryable failure during Shutdown's soft phase (no abort) schedules a
// backoff with CallLater that Shutdown then drops.
func TestShutdownResolvesRetryingFrames(t *testing.T) {
	release := make(chan struct{})
	s := newScriptSink(func(int, []*serialcb.Frame) error { <-release; return errors.New("503") })
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s}}})
	futs := fx.submit("p", 3)
	time.Sleep(50 * time.Millisecond) // the write is in flight
	shut := make(chan error)
	go func() { shut <- fx.loop.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	close(release)
	<-shut
	_ = fx.d.Close()
	if n := unresolved(futs, 300*time.Millisecond); n > 0 {
		t.Errorf("%d of %d frame futures never resolved; stats %+v", n, len(futs), fx.d.Stats())
	}
}

// R2: Drain hangs forever when the loop's Shutdown has stopped timers before
// Drain's CallLater(0, abort) runs.
func TestDrainReturnsAfterConcurrentShutdown(t *testing.T) {
	s := newScriptSink(nil)
	s.block = make(chan struct{}) // honours ctx
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s}}})
	futs := fx.submit("p", 2)
	time.Sleep(20 * time.Millisecond)
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	drained := make(chan error, 1)
	go func() { drained <- fx.d.Drain(dctx) }()
	time.Sleep(20 * time.Millisecond)
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	_ = fx.loop.Shutdown(sctx) // hard stop; finishes before Drain's deadline
	select {
	case err := <-drained:
		t.Logf("Drain returned %v", err)
	case <-time.After(2 * time.Second):
		t.Errorf("Drain still blocked 1.7s after its deadline (goroutine leaked)")
	}
	_ = fx.d.Close()
	if n := unresolved(futs, 100*time.Millisecond); n > 0 {
		t.Errorf("%d of %d frame futures never resolved", n, len(futs))
	}
	close(s.block)
}

// R4: Drain reports a deadline error although everything was delivered.
func TestDrainWithNothingOutstandingSucceeds(t *testing.T) {
	s := newScriptSink(nil)
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s}}})
	results(t, fx.submit("p", 3))
	bad := 0
	for range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := fx.d.Drain(ctx); err != nil {
			bad++
		}
	}
	fx.stop(t, time.Second)
	if bad > 0 {
		t.Errorf("Drain with nothing outstanding returned an error %d/200 times", bad)
	}
}
