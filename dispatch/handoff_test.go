package dispatch_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// nopSink acknowledges every batch and keeps nothing.
type nopSink struct{}

func (nopSink) Write(context.Context, []*serialcb.Frame) error { return nil }
func (nopSink) Close() error                                   { return nil }

// TestSubmitAllocs holds Submit's hand-off to one allocation per frame: the
// item, with its future embedded and no closure for the loop. The lane
// lingers with room for every frame, so no batch (whose allocations are
// per batch, not per frame) starts during the measurement; a CallSoon
// queued after the frame tells when the loop has accepted it. Allocation
// counts are deterministic, unlike times.
func TestSubmitAllocs(t *testing.T) {
	loop := asyncloop.New(asyncloop.Options{})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{
		Name: "nop", Sink: nopSink{},
		Options: dispatch.Options{MaxBatch: 100_000, MaxPending: 100_000, Linger: time.Hour},
	}}}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Drain(ctx); err != nil {
			t.Error(err)
		}
		if err := loop.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	var gen serialcb.IDGen
	now := time.Now()
	f := serialcb.Frame{ID: gen.New(now), Port: "p", ReceivedAt: now, Payload: []byte("payload")}
	accepted := make(chan struct{}, 1)
	signal := func() { accepted <- struct{}{} }
	op := func() {
		f.Seq++
		d.Submit(f)
		if err := loop.CallSoon(signal); err != nil { // FIFO: after the frame's accept
			t.Fatal(err)
		}
		<-accepted
	}
	op() // the first frame arms the linger timer (once per batch)
	if got := testing.AllocsPerRun(1000, op); got > 1 {
		t.Errorf("Submit: %v allocs per frame, want ≤ 1 (the item, its future embedded)", got)
	}
}

// TestHeldFutureDoesNotPinPayload: the frame's future is embedded in the
// dispatcher's item, so a caller holding the future holds the item; once
// the frame is settled the item must let go of the payload.
func TestHeldFutureDoesNotPinPayload(t *testing.T) {
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "nop", Sink: nopSink{}}}})
	defer func() {
		if err := fx.stop(t, time.Minute); err != nil {
			t.Error(err)
		}
	}()
	collected := make(chan struct{})
	fut := submitTracked(fx, collected)
	if _, err := fut.Result(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Minute) // a bound, not a synchronisation
	for done := false; !done; {
		runtime.GC()
		select {
		case <-collected:
			done = true
		case <-deadline:
			t.Fatal("the payload of a settled frame stays reachable through its future")
		default:
			runtime.Gosched()
		}
	}
	if r, err := fut.Result(context.Background()); err != nil || r.Sinks != 1 || r.Port != "p" {
		t.Errorf("Result after release = %+v, %v; want 1 sink, port p", r, err)
	}
	runtime.KeepAlive(fut)
}

// submitTracked submits a frame whose payload closes collected once it is
// unreachable, and returns only the future.
//
//go:noinline
func submitTracked(fx *fixture, collected chan struct{}) *asyncloop.Future[dispatch.Receipt] {
	f := fx.frame("p")
	f.Payload = make([]byte, 64<<10) // its own allocation, for the cleanup
	runtime.AddCleanup(&f.Payload[0], func(ch chan struct{}) { close(ch) }, collected)
	return fx.d.Submit(f)
}

// allocsFixture starts a dispatcher with one spooled sink (sync mode sm)
// that reads nothing from its spool while a test counts allocations, and
// returns the spool, the dispatcher and a frame to send.
func allocsFixture(t *testing.T, sm spool.SyncMode) (*spool.Spool, *fixture, serialcb.Frame) {
	t.Helper()
	sp := openSpoolOpts(t, spool.Options{Dir: t.TempDir(), Sync: sm})
	tg := spooledTarget("s", nopSink{}, sp, nil)
	tg.Options.Linger = time.Hour // no spool read during the measurement
	tg.Options.MaxBatch = 100_000
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{tg}})
	t.Cleanup(func() {
		if err := fx.stop(t, time.Minute); err != nil {
			t.Error(err)
		}
	})
	var gen serialcb.IDGen
	now := time.Now()
	return sp, fx, serialcb.Frame{ID: gen.New(now), Port: "p", ReceivedAt: now, Payload: []byte("payload")}
}

// TestSpooledAppendAllocs holds what a frame costs in allocations from
// Submit until it is on disk, when frames come one at a time (as devices
// send them) and each is an Append of its own. Appended directly on
// Submit's goroutine (a spool that does not fsync each append), only the
// item is left. Through the loop (SyncBatch), the lane reuses the Append's
// slices and closures; what is left is the item, the Append's future and
// the channel Result waits on. It was 7 before the reuse.
func TestSpooledAppendAllocs(t *testing.T) {
	for _, c := range []struct {
		sync spool.SyncMode
		want float64
	}{{spool.SyncNone, 1}, {spool.SyncBatch, 3}} {
		t.Run(c.sync.String(), func(t *testing.T) {
			sp, fx, f := allocsFixture(t, c.sync)
			op := func() {
				f.Seq++
				f.ReceivedAt = f.ReceivedAt.Add(time.Millisecond)                      // one read each
				if _, err := fx.d.Submit(f).Result(context.Background()); err != nil { // spooled
					t.Fatal(err)
				}
			}
			// The first frames arm the linger timer and size the buffers;
			// the spool reaches the lane through the loop after Start.
			waitFor(t, "the spool attached", func() bool { op(); return sp.Stats().Frames > 0 })
			op()
			if got := testing.AllocsPerRun(500, op); got > c.want {
				t.Errorf("%v allocs per spooled frame, want ≤ %v", got, c.want)
			}
		})
	}
}

// TestSendAllocs: Send, Submit without a future, makes no allocation for a
// frame its sink's spool takes directly, and counts it as Submit would;
// where the frame goes the loop's way (SyncBatch) it still reaches the
// spool.
func TestSendAllocs(t *testing.T) {
	for _, c := range []struct {
		sync spool.SyncMode
		want float64
	}{{spool.SyncNone, 0}, {spool.SyncBatch, 3}} {
		t.Run(c.sync.String(), func(t *testing.T) {
			sp, fx, f := allocsFixture(t, c.sync)
			sent := 0
			op := func() {
				f.Seq++
				f.ReceivedAt = f.ReceivedAt.Add(time.Millisecond) // one read each
				fx.d.Send(f)
				sent++
			}
			waitFor(t, "the spool attached", func() bool { op(); return sp.Stats().Frames > 0 })
			op()
			if got := testing.AllocsPerRun(500, op); got > c.want {
				t.Errorf("%v allocs per frame sent, want ≤ %v", got, c.want)
			}
			// Through the loop a frame counts as delivered once its
			// append's future is resolved, after the spool has it.
			waitFor(t, "every frame sent in the spool and counted", func() bool {
				return sp.Stats().Frames == uint64(sent) && fx.d.Stats().Delivered == uint64(sent)
			})
			if st := fx.d.Stats(); st.Submitted != uint64(sent) || st.Failed != 0 {
				t.Errorf("stats after %d frames sent: submitted %d, failed %d", sent, st.Submitted, st.Failed)
			}
		})
	}
}
