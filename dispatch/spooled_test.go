package dispatch_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNone}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// memDead is a dead-letter store in memory, for tests that only look at
// what the dispatcher hands over.
type memDead struct {
	mu      sync.Mutex
	letters []dispatch.DeadLetter
	fail    atomic.Int32 // Appends to fail before one succeeds
}

func (m *memDead) Append(ls []dispatch.DeadLetter) error {
	if m.fail.Load() > 0 {
		m.fail.Add(-1)
		return errors.New("disk trouble")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.letters = append(m.letters, ls...)
	return nil
}

func (m *memDead) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.letters)
}

// spooledTarget writes one batch at a time, so that order is kept.
func spooledTarget(name string, s dispatch.Sink, sp *spool.Spool, dl dispatch.DeadLetterStore) dispatch.Target {
	return dispatch.Target{Name: name, Sink: s, Options: dispatch.Options{
		MaxBatch: 50, MaxInflight: 1,
		OpenSpool: func() (*spool.Spool, dispatch.DeadLetterStore, error) { return sp, dl, nil },
		Retry:     dispatch.RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}}
}

func TestSpooledLaneDeliversEveryFrameAndEmptiesTheSpool(t *testing.T) {
	sink := newScriptSink(nil)
	dir := t.TempDir()
	sp := openSpool(t, dir)
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", sink, sp, nil)}})
	ok, errs := results(t, fx.submit("p", 3000))
	if ok != 3000 || len(errs) > 0 {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	if err := fx.stop(t, 10*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n, d := sink.count(); n != 3000 || d != 0 {
		t.Fatalf("sink got %d frames, %d twice; want 3000 once", n, d)
	}
	st := fx.d.Stats().Sinks[0]
	if st.Spooled != 3000 || st.Delivered != 3000 || st.Spool == nil {
		t.Fatalf("stats %+v", st)
	}
	// Reopened, the spool has nothing left: every frame was acknowledged.
	sp2 := openSpool(t, dir)
	defer sp2.Close()
	if fs, _, err := sp2.Read(10); err != nil || len(fs) != 0 {
		t.Fatalf("spool after drain: %d frames, %v", len(fs), err)
	}
}

// A sink that is down while frames arrive, then the daemon stops before it
// comes back: the frames wait on disk and the next run delivers them first,
// in order, exactly once.
func TestSpooledFramesSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	down := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("503") })
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", down, openSpool(t, dir), nil)}})
	ok, errs := results(t, fx.submit("p", 1000))
	if ok != 1000 || len(errs) > 0 {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	if err := fx.stop(t, 200*time.Millisecond); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain: %v", err)
	}
	if n, _ := down.count(); n != 0 {
		t.Fatalf("the down sink took %d frames", n)
	}

	up := newScriptSink(nil)
	var order []uint64
	var mu sync.Mutex
	up.outcome = func(_ int, b []*serialcb.Frame) error {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range b {
			order = append(order, f.Seq)
		}
		return nil
	}
	fx2 := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", up, openSpool(t, dir), nil)}})
	if err := fx2.stop(t, 10*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n, d := up.count(); n != 1000 || d != 0 {
		t.Fatalf("after restart the sink got %d frames, %d twice; want 1000 once", n, d)
	}
	for i, s := range order {
		if s != uint64(i+1) {
			t.Fatalf("frame %d delivered with seq %d: spooled frames must come in order", i, s)
		}
	}
}

// A sink failing 30% of writes at random gets every frame, exactly once,
// and a permanent rejection goes to the dead-letter store with its error
// and attempt count; the spool is acknowledged past both.
func TestSpooledLaneRetriesAndDeadLetters(t *testing.T) {
	var calls atomic.Int64
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		if calls.Add(1)%3 == 0 {
			return errors.New("503 service unavailable")
		}
		errs := make([]error, len(b))
		bad := false
		for i, f := range b {
			if f.Seq%100 == 0 {
				errs[i] = dispatch.Permanent(errors.New("422 unprocessable"))
				bad = true
			}
		}
		if bad {
			return &dispatch.BatchError{Errs: errs}
		}
		return nil
	})
	dead := &memDead{}
	dead.fail.Store(2) // the store itself fails twice: the letters must still arrive
	dir := t.TempDir()
	sp := openSpool(t, dir)
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", sink, sp, dead)}})
	fx.submit("p", 2000)
	if err := fx.stop(t, 20*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if n, d := sink.count(); n != 1980 || d != 0 {
		t.Fatalf("sink got %d frames, %d twice; want 1980 once", n, d)
	}
	if got := dead.len(); got != 20 {
		t.Fatalf("%d dead letters, want 20", got)
	}
	for _, l := range dead.letters {
		if l.Frame.Seq%100 != 0 || l.Sink != "s" || l.Attempts < 1 || l.Err != "422 unprocessable" {
			t.Fatalf("dead letter %+v", l)
		}
	}
	st := fx.d.Stats().Sinks[0]
	if st.DeadLettered != 20 || st.Delivered != 1980 || st.Retried == 0 {
		t.Fatalf("stats %+v", st)
	}
	sp2 := openSpool(t, dir)
	defer sp2.Close()
	if fs, _, err := sp2.Read(10); err != nil || len(fs) != 0 {
		t.Fatalf("spool after drain: %d frames, %v", len(fs), err)
	}
}

// With a spool, a dead sink does not hold frames in memory: the futures
// resolve once the frames are on disk, and the other sink keeps flowing.
func TestSpooledLaneDoesNotWaitForADeadSink(t *testing.T) {
	dead := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("connection refused") })
	live := newScriptSink(nil)
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{
		spooledTarget("dead", dead, openSpool(t, t.TempDir()), nil),
		spooledTarget("live", live, openSpool(t, t.TempDir()), nil),
	}})
	ok, errs := results(t, fx.submit("p", 20000))
	if ok != 20000 || len(errs) > 0 {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if n, _ := live.count(); n == 20000 {
			break
		}
		select {
		case <-ctx.Done():
			n, _ := live.count()
			t.Fatalf("live sink got %d of 20000", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
	st := fx.d.Stats().Sinks[0]
	if st.Spool == nil || st.Spool.Frames != 20000 || !st.Down {
		t.Fatalf("dead sink stats %+v (spool %+v)", st, st.Spool)
	}
	if err := fx.stop(t, 100*time.Millisecond); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain: %v", err)
	}
}

// A reload hands a sink's spool from one dispatcher to the next: what the
// first took is delivered by the second, none lost, none twice.
func TestSpooledHandover(t *testing.T) {
	dir := t.TempDir()
	slow := newScriptSink(nil)
	slow.block = make(chan struct{}) // writes hang until the handover cancels them
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", slow, openSpool(t, dir), nil)}})
	ok, errs := results(t, fx.submit("p", 500))
	if ok != 500 || len(errs) > 0 {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	// Frames are spooled before the lane reads them back: wait for the
	// write to hang, or a Handover that comes first finds nothing in flight.
	waitFor(t, "a write to the slow sink to start", func() bool { return slow.running.Load() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := fx.d.Handover(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handover with a write hanging: %v, want the deadline", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	if err := fx.loop.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err) // past the deadline it cancels the hanging write
	}
	if err := fx.d.Close(); err != nil {
		t.Fatal(err)
	}

	next := newScriptSink(nil)
	fx2 := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", next, openSpool(t, dir), nil)}})
	fx2.seq = fx.seq
	ok, errs = results(t, fx2.submit("p", 500))
	if ok != 500 || len(errs) > 0 {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	if err := fx2.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, d := next.count(); n != 1000 || d != 0 {
		t.Fatalf("successor delivered %d frames, %d twice; want 1000 once", n, d)
	}
}
