package dispatch_test

// Review tests for the store-and-forward lanes (spooled.go and the spooled
// paths of dispatcher.go). Tests named TestReviewBug... demonstrate bugs and
// fail until they are fixed; the others are regression tests that pass.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// unstarted builds a fixture whose loop runs but whose dispatcher has not
// been started: spooled lanes hold accepted frames in memory until Start.
func unstarted(t *testing.T, log *zap.Logger, cfg dispatch.Config) *fixture {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{loop: loop, d: d, seq: map[string]uint64{}}
}

func openSpoolOpts(t *testing.T, o spool.Options) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(o, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// waitFor polls cond until it holds or d passes.
// hangGuard bounds a wait that only a hang can exhaust. It is no timing
// assertion: the ARM runs under qemu-user are ten to twenty times slower
// than native ones, and the CI machine is shared.
const hangGuard = 2 * time.Minute

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// drainSpool reads every frame left unacknowledged in dir.
func drainSpool(t *testing.T, dir string) []*serialcb.Frame {
	t.Helper()
	sp := openSpool(t, dir)
	defer sp.Close()
	var all []*serialcb.Frame
	for {
		fs, _, err := sp.Read(1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 {
			return all
		}
		all = append(all, fs...)
	}
}

// BUG: a group commit larger than the spool's MaxBytes is refused with
// ErrFull (under every overflow policy), and the lane retries the very same
// group every 250 ms forever: its frames never reach the spool, their
// futures never resolve, admission keeps waiting (the lane counts as
// healthy because ErrFull does not mark the spool down), so the read loop
// is paused for good. Groups are capped at maxAppend frames, not bytes.
func TestReviewBugAppendGroupLargerThanMaxBytesWedgesTheLane(t *testing.T) {
	dir := t.TempDir()
	// MaxBytes 4 KiB (segments of 1 KiB); each record is ~50 bytes, so a
	// group of 300 frames (~15 KiB) can never be appended whole.
	sp := openSpoolOpts(t, spool.Options{Dir: dir, Sync: spool.SyncNone, MaxBytes: 4096})
	sink := newScriptSink(nil)
	tg := spooledTarget("s", sink, sp, nil)
	tg.Options.MaxPending = 1000
	fx := unstarted(t, zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	// Accepted before Start: they gather into one group commit (the same
	// happens under load while a slow Append runs).
	futs := fx.submit("p", 300)
	if err := fx.d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pendingFutures := 0
	for _, f := range futs {
		if _, err := f.Result(ctx); errors.Is(err, context.DeadlineExceeded) {
			pendingFutures++
		}
	}
	st := fx.d.Stats().Sinks[0]
	_ = fx.stop(t, 100*time.Millisecond)
	if pendingFutures > 0 {
		t.Fatalf("%d of 300 frames never resolved: the lane retries a group larger than MaxBytes forever (stats: spooled %d, pending %d, spool failing %v)",
			pendingFutures, st.Spooled, st.Pending, st.SpoolFailing)
	}
}

// BUG: Drain ends for a spooled sink that "has been failing for
// stallAfter", but that is only re-checked by a single timer armed when
// the Drain starts, and by the lane's own events. A sink that starts
// failing after the Drain began (here: its last write fails just after)
// is never re-checked until its next retry, which may be Retry.Max (30 s
// by default) away, so Drain runs into its deadline although the frames
// are safe on disk.
func TestReviewBugDrainEndsWhenTheSinkStartsFailingDuringTheDrain(t *testing.T) {
	gate := make(chan struct{})
	failing := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("503 service unavailable") })
	failing.block = gate
	tg := spooledTarget("s", failing, openSpool(t, t.TempDir()), nil)
	tg.Options.Retry = dispatch.RetryPolicy{Initial: time.Hour, Max: time.Hour}
	// A memory lane that lingers: its frames are written when Drain starts,
	// which tells the test that the Drain is under way.
	mem := newScriptSink(nil)
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)), dispatch.Config{Targets: []dispatch.Target{
		tg,
		{Name: "m", Sink: mem, Options: dispatch.Options{Linger: time.Hour, MaxBatch: 1000}},
	}})
	fx.submit("p", 10)
	waitFor(t, "the spooled write to start", func() bool { return failing.running.Load() == 1 })

	drained := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { drained <- fx.d.Drain(ctx) }()
	waitFor(t, "the drain to start", func() bool { n, _ := mem.count(); return n == 10 })
	close(gate) // the write in flight fails now: the sink is down from here on

	err := <-drained
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = fx.loop.Shutdown(sctx)
	if cerr := fx.d.Close(); cerr != nil {
		t.Error(cerr)
	}
	if err != nil {
		t.Fatalf("drain: %v; want nil about stallAfter after the sink began failing (its frames wait on disk)", err)
	}
}

// BUG: SinkStats.DeadLettered is documented as counting the frames "given
// up and handed to the dead-letter store (or dropped when there is none)",
// but the no-store path of deadLetter never increments it.
func TestReviewBugDeadLetteredCountsFramesDroppedWithoutAStore(t *testing.T) {
	sink := newScriptSink(func(int, []*serialcb.Frame) error { return dispatch.Permanent(errors.New("400 bad request")) })
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{
		spooledTarget("s", sink, openSpool(t, t.TempDir()), nil),
	}})
	if ok, errs := results(t, fx.submit("p", 20)); ok != 20 {
		t.Fatalf("spooled %d, errors %v", ok, errs)
	}
	if err := fx.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st := fx.d.Stats().Sinks[0]
	if st.Failed != 20 || st.DeadLettered != 20 {
		t.Fatalf("failed %d, dead-lettered %d; want 20 and 20 (dropped without a store count as dead-lettered)", st.Failed, st.DeadLettered)
	}
}

// Several writes in flight completing out of order, batches split by
// partial failures, frames given up after MaxAttempts and permanent
// rejections, a dead-letter store that fails a few times: every frame is
// delivered or dead-lettered, the counters add up, and the spool is fully
// acknowledged.
func TestReviewSpooledOutOfOrderSplitsAndDeadLettersAddUp(t *testing.T) {
	const n = 3000
	var calls atomic.Int64
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		c := calls.Add(1)
		if c%5 == 0 {
			time.Sleep(time.Millisecond) // completes after later batches
		}
		if c%7 == 0 {
			return errors.New("503")
		}
		errs := make([]error, len(b))
		bad := false
		for i, f := range b {
			switch {
			case f.Seq%97 == 0:
				errs[i], bad = dispatch.Permanent(errors.New("422")), true
			case f.Seq%89 == 0:
				errs[i], bad = errors.New("429 always"), true // gives up after MaxAttempts
			case f.Seq%3 == 0 && c%2 == 0:
				errs[i], bad = errors.New("500 this time"), true
			}
		}
		if bad {
			return &dispatch.BatchError{Errs: errs}
		}
		return nil
	})
	dead := &memDead{}
	dead.fail.Store(3)
	dir := t.TempDir()
	tg := spooledTarget("s", sink, openSpool(t, dir), dead)
	tg.Options.MaxInflight = 4
	tg.Options.MaxBatch = 7
	tg.Options.Retry.MaxAttempts = 3
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	frames := make([]serialcb.Frame, n)
	futs := make([]*asyncloop.Future[dispatch.Receipt], n)
	for i := range frames {
		frames[i] = fx.frame("p")
		futs[i] = fx.d.Submit(frames[i])
	}
	if ok, errs := results(t, futs); ok != n {
		t.Fatalf("spooled %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	if err := fx.stop(t, 30*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	got, dupes := sink.count()
	if dupes != 0 {
		t.Fatalf("%d frames delivered twice in one run", dupes)
	}
	// Every frame is delivered or dead-lettered, never both, never neither;
	// permanent rejections and the always-429 ones are dead-lettered (others
	// may be too, having failed transiently MaxAttempts times).
	deadSeqs := map[uint64]int{}
	for _, l := range dead.letters {
		deadSeqs[l.Frame.Seq]++
	}
	delivered := map[uint64]bool{}
	sink.mu.Lock()
	for _, f := range frames {
		if sink.delivered[f.ID] > 0 {
			delivered[f.Seq] = true
		}
	}
	sink.mu.Unlock()
	for s := uint64(1); s <= n; s++ {
		switch {
		case deadSeqs[s] > 1:
			t.Errorf("frame %d dead-lettered %d times", s, deadSeqs[s])
		case (s%97 == 0 || s%89 == 0) && (deadSeqs[s] == 0 || delivered[s]):
			t.Errorf("frame %d: delivered %v, dead-lettered %d; want dead-lettered only", s, delivered[s], deadSeqs[s])
		case delivered[s] == (deadSeqs[s] == 1):
			t.Errorf("frame %d: delivered %v, dead-lettered %d; want exactly one", s, delivered[s], deadSeqs[s])
		}
	}
	if got+len(dead.letters) != n {
		t.Fatalf("delivered %d + dead letters %d != %d", got, len(dead.letters), n)
	}
	st := fx.d.Stats().Sinks[0]
	if st.Spooled != n || st.Delivered != uint64(got) || st.DeadLettered != uint64(len(dead.letters)) || st.Failed != st.DeadLettered {
		t.Fatalf("stats do not add up: %+v", st)
	}
	if left := drainSpool(t, dir); len(left) != 0 {
		t.Fatalf("%d frames left in the spool after a complete drain", len(left))
	}
}

// While the dead-letter store keeps failing the rejected frames stay in the
// spool, and so do the frames after them: a stop then loses nothing.
func TestReviewDeadLetterFailureKeepsFramesInTheSpool(t *testing.T) {
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		errs := make([]error, len(b))
		for i, f := range b {
			if f.Seq == 5 {
				errs[i] = dispatch.Permanent(errors.New("422"))
				return &dispatch.BatchError{Errs: errs}
			}
		}
		return nil
	})
	dead := &memDead{}
	dead.fail.Store(1 << 30)
	dir := t.TempDir()
	tg := spooledTarget("s", sink, openSpool(t, dir), dead)
	tg.Options.MaxBatch = 10
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	fx.submit("p", 30)
	waitFor(t, "the sink to take the other frames", func() bool { n, _ := sink.count(); return n == 29 })
	if err := fx.stop(t, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain with the dead-letter store failing: %v, want the deadline", err)
	}
	left := drainSpool(t, dir)
	if len(left) == 0 || left[0].Seq > 5 {
		t.Fatalf("frame 5 was acknowledged out of the spool before the dead-letter store took it (%d left)", len(left))
	}
	if st := fx.d.Stats().Sinks[0]; st.DeadLettered != 0 {
		t.Fatalf("dead-lettered %d, but the store never took any", st.DeadLettered)
	}
}

// DropOldest deletes segments whose frames are being written: those
// chunks' cursors are then behind the spool's ack position. Acknowledging
// them must be a harmless no-op (not ErrBadCursor forever, not a backwards
// move), and the lane must go on to deliver the rest and drain.
func TestReviewDropOldestUnderChunksInFlight(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	gate := make(chan struct{})
	sink := newScriptSink(nil)
	sink.block = gate
	dir := t.TempDir()
	sp := openSpoolOpts(t, spool.Options{Dir: dir, Sync: spool.SyncNone, MaxBytes: 4096})
	tg := spooledTarget("s", sink, sp, nil)
	tg.Options.MaxInflight = 2
	tg.Options.MaxBatch = 5
	fx := start(t, zap.New(core), dispatch.Config{Targets: []dispatch.Target{tg}})
	for range 40 { // small group commits, so that many segments roll and drop
		if ok, errs := results(t, fx.submit("p", 10)); ok != 10 {
			t.Fatalf("spooled %d, errors %v", ok, errs)
		}
	}
	if sink.running.Load() != 2 {
		t.Fatalf("%d writes in flight, want 2", sink.running.Load())
	}
	if st := sp.Stats(); st.DroppedFrames == 0 {
		t.Fatalf("nothing dropped: %+v", st)
	}
	close(gate)
	if err := fx.stop(t, 10*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	for _, e := range logs.All() {
		if e.Message == "spool ack failed" || e.Message == "spool read failed; will retry" {
			t.Fatalf("%s: %v", e.Message, e.Context)
		}
	}
	got, dupes := sink.count()
	dropped := sp.Stats().DroppedFrames
	// The 10 frames in flight when their segment went were delivered and
	// counted as dropped too.
	if dupes != 0 || uint64(got)+dropped < 400 || got == 0 {
		t.Fatalf("delivered %d (%d twice), dropped %d of 400", got, dupes, dropped)
	}
	if left := drainSpool(t, dir); len(left) != 0 {
		t.Fatalf("%d frames left after the drain", len(left))
	}
}

// Start that fails on the second spool: Close closes the first (its lock
// is released) and the frames accepted meanwhile fail, nothing leaks.
func TestReviewCloseAfterStartSpoolsFailedMidway(t *testing.T) {
	dir := t.TempDir()
	a := newScriptSink(nil)
	first := spooledTarget("a", a, openSpool(t, dir), &memDead{})
	second := dispatch.Target{Name: "b", Sink: newScriptSink(nil), Options: dispatch.Options{
		OpenSpool: func() (*spool.Spool, dispatch.DeadLetterStore, error) { return nil, nil, errors.New("disk gone") },
	}}
	fx := unstarted(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{first, second}})
	futs := fx.submit("p", 5)
	if err := fx.d.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with a spool that cannot open")
	}
	// Drain's result is not checked here: see
	// TestReviewBugDrainReturnsNilAfterItsDeadlineFailedFrames.
	_ = fx.stop(t, 100*time.Millisecond)
	if err := fx.d.Close(); err != nil { // twice: no double close
		t.Fatal(err)
	}
	ok, errs := results(t, futs)
	if ok != 0 || len(errs) != 5 || !errors.Is(errs[0], dispatch.ErrStopped) {
		t.Fatalf("ok %d, errors %v", ok, errs)
	}
	sp := openSpool(t, dir) // ErrLocked if Close left it open
	sp.Close()
}

// Handover while the sink fails and a batch waits to retry: it returns as
// soon as no write runs, and the successor delivers everything once.
func TestReviewHandoverWithABatchWaitingToRetry(t *testing.T) {
	dir := t.TempDir()
	down := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("503") })
	tg := spooledTarget("s", down, openSpool(t, dir), nil)
	tg.Options.Retry = dispatch.RetryPolicy{Initial: time.Hour, Max: time.Hour}
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	if ok, errs := results(t, fx.submit("p", 200)); ok != 200 {
		t.Fatalf("spooled %d, errors %v", ok, errs)
	}
	waitFor(t, "the first write to fail", func() bool { return fx.d.Stats().Sinks[0].Retried > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fx.d.Handover(ctx); err != nil {
		t.Fatalf("handover: %v", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	if err := fx.loop.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := fx.d.Close(); err != nil {
		t.Fatal(err)
	}
	up := newScriptSink(nil)
	fx2 := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", up, openSpool(t, dir), nil)}})
	if err := fx2.stop(t, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, d := up.count(); n != 200 || d != 0 {
		t.Fatalf("successor delivered %d (%d twice), want 200 once", n, d)
	}
}

// A full spool under the Block policy with the sink down pauses Submit
// (back-pressure); Drain releases the waiting producer and nothing hangs.
func TestReviewBlockPolicyBackPressureIsReleasedByDrain(t *testing.T) {
	down := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("503") })
	sp := openSpoolOpts(t, spool.Options{Dir: t.TempDir(), Sync: spool.SyncNone, MaxBytes: 2048, Overflow: spool.Block})
	tg := spooledTarget("s", down, sp, nil)
	tg.Options.MaxPending = 10
	tg.Options.MaxBatch = 5
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	var mu sync.Mutex
	var futs []*asyncloop.Future[dispatch.Receipt]
	done := make(chan struct{})
	frames := make([]serialcb.Frame, 300)
	for i := range frames {
		frames[i] = fx.frame("p")
	}
	go func() {
		defer close(done)
		for _, f := range frames {
			fut := fx.d.Submit(f)
			mu.Lock()
			futs = append(futs, fut)
			mu.Unlock()
		}
	}()
	waitFor(t, "back-pressure", func() bool { return fx.d.Stats().Throttled > 0 })
	select {
	case <-done:
		t.Fatal("Submit did not wait for the full spool")
	default:
	}
	if err := fx.stop(t, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("drain: %v", err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	for _, f := range futs {
		select {
		case <-f.Done():
		default:
			t.Fatal("a frame's future never resolved")
		}
	}
}

// BUG (pre-existing in drain(), also hit by spooled lanes): when the
// deadline passes, abort fails the frames still queued or waiting to retry
// with ErrStopped; if that leaves nothing outstanding, the drained channel
// closes and Drain returns nil, although its documentation says it then
// returns ctx.Err() (the daemon logs "drain deadline passed" on that
// error). Here: a spooled lane whose spool never opened holds 5 frames in
// memory; they fail with ErrStopped and Drain reports success.
func TestReviewBugDrainReturnsNilAfterItsDeadlineFailedFrames(t *testing.T) {
	tg := dispatch.Target{Name: "s", Sink: newScriptSink(nil), Options: dispatch.Options{
		OpenSpool: func() (*spool.Spool, dispatch.DeadLetterStore, error) { return nil, nil, errors.New("disk gone") },
	}}
	fx := unstarted(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{tg}})
	futs := fx.submit("p", 5)
	if err := fx.d.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with a spool that cannot open")
	}
	err := fx.stop(t, 100*time.Millisecond)
	_, errs := results(t, futs)
	if len(errs) != 5 || !errors.Is(errs[0], dispatch.ErrStopped) {
		t.Fatalf("errors %v", errs)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain returned %v after its deadline failed 5 frames with ErrStopped; want context.DeadlineExceeded", err)
	}
}

// BUG (same root cause as the group-size one, on the spool side): under the
// Block policy a spool whose every frame is acknowledged still counts its
// active segment against MaxBytes, never rolls or recycles it, and refuses
// a batch that does not fit beside it with ErrFull, forever: the lane
// retries every 250 ms and the frame never gets in although the spool is
// empty and the sink healthy.
func TestReviewBugBlockPolicyRefusesABatchBesideAFullyAckedActiveSegment(t *testing.T) {
	sink := newScriptSink(nil)
	sp := openSpoolOpts(t, spool.Options{Dir: t.TempDir(), Sync: spool.SyncNone, MaxBytes: 4096, Overflow: spool.Block})
	fx := start(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{Targets: []dispatch.Target{spooledTarget("s", sink, sp, nil)}})
	big := func() serialcb.Frame {
		f := fx.frame("p")
		f.Payload = make([]byte, 2500) // > SegmentSize (1 KiB), < MaxBytes/2
		return f
	}
	if _, err := fx.d.Submit(big()).Result(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first frame to be delivered and acknowledged", func() bool {
		n, _ := sink.count()
		return n == 1 && sp.Stats().Frames == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	_, err := fx.d.Submit(big()).Result(ctx)
	st := sp.Stats()
	_ = fx.stop(t, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("second frame: %v; the spool holds %d unacknowledged frames in %d bytes yet refuses it", err, st.Frames, st.Bytes)
	}
}

// BUG (reload path): StartSpools returns at the first spool that fails to
// open, before handing any spool to the loop. The spools that did open stay
// locked and unused, so sinks whose spool is fine stop delivering too; and
// a lane without a spool counts as healthy, so once MaxPending frames wait
// in memory, Submit waits for room that never comes: the read loops of
// every port routed to any spooled sink pause for good. reload.go only logs
// "frames wait in memory until the queues fill (restart serialcbd)".
func TestReviewBugStartSpoolsFailureStallsSinksWhoseSpoolOpened(t *testing.T) {
	dir := t.TempDir()
	a := newScriptSink(nil)
	ok := spooledTarget("a", a, openSpool(t, dir), nil)
	ok.Options.MaxPending = 20
	broken := dispatch.Target{Name: "b", Sink: newScriptSink(nil), Options: dispatch.Options{
		MaxPending: 20,
		OpenSpool: func() (*spool.Spool, dispatch.DeadLetterStore, error) {
			return nil, nil, errors.New("permission denied")
		},
	}}
	fx := unstarted(t, zaptest.NewLogger(t, zaptest.Level(zapcore.DPanicLevel)), dispatch.Config{
		Targets: []dispatch.Target{ok, broken},
		Routes: []dispatch.Route{
			{Ports: []string{"pa"}, Sinks: []string{"a"}},
			{Ports: []string{"pb"}, Sinks: []string{"b"}},
		},
	})
	if err := fx.d.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded with a spool that cannot open")
	}
	fx.submit("pa", 10)
	deadline := time.Now().Add(3 * time.Second)
	for {
		if n, _ := a.count(); n == 10 {
			break
		}
		if time.Now().After(deadline) {
			n, _ := a.count()
			_ = fx.stop(t, 100*time.Millisecond)
			t.Fatalf("sink a, whose spool opened fine, got %d of 10 frames: it is held back by sink b's spool", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = fx.stop(t, 100*time.Millisecond)
}
