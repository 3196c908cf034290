package dispatch_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// startAttached starts a dispatcher with one spooled lane whose Linger never
// ends during a test (nothing is read from the spool), and returns once
// the spool reached the lane, which it does through the loop after Start.
func startAttached(t *testing.T, mode spool.SyncMode) (*fixture, *spool.Spool) {
	t.Helper()
	sp := openSpoolOpts(t, spool.Options{Dir: t.TempDir(), Sync: mode})
	tg := spooledTarget("s", newScriptSink(nil), sp, nil)
	tg.Options.Linger = time.Hour
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{tg}})
	t.Cleanup(func() {
		if err := fx.stop(t, 10*time.Second); err != nil {
			t.Errorf("drain: %v", err)
		}
	})
	waitFor(t, "the spool attached", func() bool {
		_, err := fx.d.Submit(fx.frame("p")).Result(context.Background())
		return err == nil && sp.Stats().Frames > 0
	})
	return fx, sp
}

// A spool that does not fsync each append takes the frame on Submit's
// goroutine: the future is resolved and the frame is in the spool when
// Submit returns. One that does (SyncBatch) keeps the loop's group commit.
func TestSpooledSubmitAppendsDirectly(t *testing.T) {
	for _, mode := range []spool.SyncMode{spool.SyncInterval, spool.SyncNone, spool.SyncBatch} {
		t.Run(mode.String(), func(t *testing.T) {
			fx, sp := startAttached(t, mode)
			before := sp.Stats().Frames
			f := fx.frame("p")
			f.ReceivedAt = f.ReceivedAt.Add(time.Hour) // not the same read as the frames above
			fut := fx.d.Submit(f)
			select {
			case <-fut.Done():
				if mode == spool.SyncBatch {
					return // the loop may have been quick; nothing to check
				}
				if got := sp.Stats().Frames; got != before+1 {
					t.Fatalf("spool holds %d frames after a resolved Submit, want %d", got, before+1)
				}
				if r, err := fut.Result(context.Background()); err != nil || r.Sinks != 1 {
					t.Fatalf("receipt %+v, %v", r, err)
				}
			default:
				if mode != spool.SyncBatch {
					t.Fatal("Submit returned before its frame was spooled: the append went through the loop")
				}
			}
		})
	}
}

// Frames cut from one read (the same ReceivedAt) after the first go the
// loop's way, which spools them in one group commit: several frames per
// read mean they come faster than one per wake-up.
func TestSpooledFramesOfOneReadGoTheLoopsWay(t *testing.T) {
	fx, _ := startAttached(t, spool.SyncNone)
	// Hold the loop, so that a frame that went its way cannot be spooled
	// before the check below.
	release := make(chan struct{})
	if err := fx.loop.CallSoon(func() { <-release }); err != nil {
		t.Fatal(err)
	}
	first, second := fx.frame("p"), fx.frame("p")
	second.ReceivedAt = first.ReceivedAt
	f1, f2 := fx.d.Submit(first), fx.d.Submit(second)
	select {
	case <-f1.Done():
	default:
		t.Error("the first frame of a read was not spooled by Submit")
	}
	select {
	case <-f2.Done():
		t.Error("the second frame of the same read was spooled by Submit, not by the loop")
	default:
	}
	close(release)
	for _, f := range []*asyncloop.Future[dispatch.Receipt]{f1, f2} {
		if _, err := f.Result(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// While earlier frames wait for the loop to spool them (a full spool under
// the Block policy, a sink down), later ones must not overtake them with a
// direct append once room comes back: the sink gets a port's frames in the
// order they were read.
func TestSpooledDirectAppendKeepsOrderAcrossTheLoopsWay(t *testing.T) {
	var up atomic.Bool
	var mu sync.Mutex
	var order []uint64
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		if !up.Load() {
			return errors.New("503")
		}
		mu.Lock()
		defer mu.Unlock()
		for _, f := range b {
			order = append(order, f.Seq)
		}
		return nil
	})
	sp := openSpoolOpts(t, spool.Options{Dir: t.TempDir(), Sync: spool.SyncNone, MaxBytes: 2048, Overflow: spool.Block})
	tg := spooledTarget("s", sink, sp, nil)
	tg.Options.MaxPending = 10
	tg.Options.MaxBatch = 5
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	const n = 300
	frames := make([]serialcb.Frame, n)
	for i := range frames {
		frames[i] = fx.frame("p")
	}
	submitted := make(chan []*asyncloop.Future[dispatch.Receipt], 1)
	go func() {
		futs := make([]*asyncloop.Future[dispatch.Receipt], 0, n)
		for _, f := range frames {
			futs = append(futs, fx.d.Submit(f))
		}
		submitted <- futs
	}()
	waitFor(t, "back-pressure", func() bool { return fx.d.Stats().Throttled > 0 })
	up.Store(true)
	if ok, errs := results(t, <-submitted); ok != n {
		t.Fatalf("%d frames failed: %v", len(errs), errs[0])
	}
	if err := fx.stop(t, time.Minute); err != nil {
		t.Fatalf("drain: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	first := make([]uint64, 0, n) // each seq where the sink first got it
	seen := map[uint64]bool{}
	for _, s := range order {
		if !seen[s] {
			seen[s] = true
			first = append(first, s)
		}
	}
	if len(first) != n || !slices.IsSorted(first) {
		t.Fatalf("the sink got %d of %d frames, out of order: %v", len(first), n, first)
	}
}
