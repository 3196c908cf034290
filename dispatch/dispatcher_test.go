package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scriptSink is a sink whose answers a test scripts: outcome decides the
// result of each Write (nil: deliver all). It records what it acknowledged.
type scriptSink struct {
	outcome func(call int, batch []*serialcb.Frame) error
	block   chan struct{} // when set, Write waits for it (or ctx)

	mu        sync.Mutex
	calls     int
	delivered map[serialcb.ID]int
	batchLens []int
	closed    bool

	running, maxRunning atomic.Int32
}

func newScriptSink(outcome func(int, []*serialcb.Frame) error) *scriptSink {
	return &scriptSink{outcome: outcome, delivered: map[serialcb.ID]int{}}
}

func (s *scriptSink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		m := s.maxRunning.Load()
		if n <= m || s.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	if s.block != nil {
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.batchLens = append(s.batchLens, len(batch))
	s.mu.Unlock()
	var err error
	if s.outcome != nil {
		err = s.outcome(call, batch)
	}
	var be *dispatch.BatchError
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		for _, f := range batch {
			s.delivered[f.ID]++
		}
	case errors.As(err, &be):
		for i, e := range be.Errs {
			if e == nil {
				s.delivered[batch[i].ID]++
			}
		}
	}
	return err
}

func (s *scriptSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *scriptSink) count() (frames, dupes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.delivered {
		frames++
		if n > 1 {
			dupes++
		}
	}
	return
}

type fixture struct {
	loop *asyncloop.Loop
	d    *dispatch.Dispatcher
	gen  serialcb.IDGen
	seq  map[string]uint64
}

func start(t *testing.T, log *zap.Logger, cfg dispatch.Config) *fixture {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &fixture{loop: loop, d: d, seq: map[string]uint64{}}
}

func (fx *fixture) frame(port string) serialcb.Frame {
	fx.seq[port]++
	now := time.Now()
	return serialcb.Frame{ID: fx.gen.New(now), Port: port, Seq: fx.seq[port], ReceivedAt: now, Payload: []byte(fmt.Sprintf("%s line %d", port, fx.seq[port]))}
}

func (fx *fixture) submit(port string, n int) []*asyncloop.Future[dispatch.Receipt] {
	futs := make([]*asyncloop.Future[dispatch.Receipt], n)
	for i := range futs {
		futs[i] = fx.d.Submit(fx.frame(port))
	}
	return futs
}

// stop drains and shuts everything down, as the daemon does.
func (fx *fixture) stop(t *testing.T, drain time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := fx.d.Drain(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	if serr := fx.loop.Shutdown(sctx); serr != nil && err == nil {
		t.Errorf("loop shutdown: %v", serr)
	}
	if cerr := fx.d.Close(); cerr != nil {
		t.Errorf("close: %v", cerr)
	}
	return err
}

func results(t *testing.T, futs []*asyncloop.Future[dispatch.Receipt]) (ok int, errs []error) {
	t.Helper()
	for _, f := range futs {
		if _, err := f.Result(context.Background()); err != nil {
			errs = append(errs, err)
		} else {
			ok++
		}
	}
	return ok, errs
}

func TestDeliversEveryFrameToEverySink(t *testing.T) {
	a, b := newScriptSink(nil), newScriptSink(nil)
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{
		{Name: "a", Sink: a, Options: dispatch.Options{MaxBatch: 100}},
		{Name: "b", Sink: b, Options: dispatch.Options{MaxBatch: 7, MaxInflight: 4}},
	}})
	futs := fx.submit("p1", 5000)
	ok, errs := results(t, futs)
	if err := fx.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if ok != 5000 || len(errs) > 0 {
		t.Fatalf("ok %d, errors %v", ok, errs[:min(3, len(errs))])
	}
	for name, s := range map[string]*scriptSink{"a": a, "b": b} {
		if n, d := s.count(); n != 5000 || d != 0 {
			t.Errorf("sink %s: %d frames, %d duplicates", name, n, d)
		}
		if !s.closed {
			t.Errorf("sink %s not closed", name)
		}
	}
	if b.maxRunning.Load() > 4 {
		t.Errorf("sink b ran %d writes at once, limit 4", b.maxRunning.Load())
	}
	for _, l := range b.batchLens {
		if l > 7 {
			t.Fatalf("batch of %d frames, max 7", l)
		}
	}
	st := fx.d.Stats()
	if st.Submitted != 5000 || st.Delivered != 5000 || st.Failed != 0 || st.Sinks[1].Delivered != 5000 {
		t.Errorf("stats %+v", st)
	}
	r, _ := futs[42].Result(context.Background())
	if r.Seq != 43 || r.Port != "p1" || r.Sinks != 2 {
		t.Errorf("receipt %+v", r)
	}
}

func TestOutcomes(t *testing.T) {
	errDown := errors.New("connection refused")
	tests := []struct {
		name    string
		opt     dispatch.Options
		outcome func(call int, batch []*serialcb.Frame) error
		frames  int
		// want
		delivered, failed int
		errIs             error
		errContains       string
		minCalls          int
	}{
		{
			name:      "retryable then success",
			outcome:   func(call int, _ []*serialcb.Frame) error { return map[bool]error{true: errDown}[call <= 3] },
			frames:    50,
			delivered: 50, minCalls: 4,
		},
		{
			name: "retry after",
			outcome: func(call int, _ []*serialcb.Frame) error {
				return map[bool]error{true: dispatch.RetryAfter(errDown, time.Minute)}[call == 1]
			},
			frames:    10,
			delivered: 10, minCalls: 2,
		},
		{
			name:    "permanent",
			outcome: func(int, []*serialcb.Frame) error { return dispatch.Permanent(errors.New("HTTP 422")) },
			frames:  5,
			failed:  5, errIs: dispatch.ErrPermanent, errContains: "HTTP 422",
		},
		{
			name: "partial batch: only the failed frame is retried",
			opt:  dispatch.Options{MaxBatch: 10, Linger: time.Second},
			outcome: func(call int, batch []*serialcb.Frame) error {
				if call > 1 {
					if len(batch) != 1 {
						return dispatch.Permanent(fmt.Errorf("retry carried %d frames, want 1", len(batch)))
					}
					return nil
				}
				errs := make([]error, len(batch))
				errs[3] = errDown
				errs[5] = dispatch.Permanent(errors.New("bad row"))
				return &dispatch.BatchError{Errs: errs}
			},
			frames:    10,
			delivered: 9, failed: 1, errContains: "bad row",
		},
		{
			name:    "max attempts",
			opt:     dispatch.Options{Retry: dispatch.RetryPolicy{MaxAttempts: 3}},
			outcome: func(int, []*serialcb.Frame) error { return errDown },
			frames:  4,
			failed:  4, errIs: errDown, errContains: "gave up after 3 attempts", minCalls: 3,
		},
		{
			name:    "max age",
			opt:     dispatch.Options{Retry: dispatch.RetryPolicy{MaxAge: 10 * time.Second}},
			outcome: func(int, []*serialcb.Frame) error { return errDown },
			frames:  3,
			failed:  3, errContains: "older than max age",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newScriptSink(tt.outcome)
				fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s, Options: tt.opt}}})
				futs := fx.submit("p", tt.frames)
				ok, errs := results(t, futs)
				if err := fx.stop(t, time.Second); err != nil {
					t.Fatal(err)
				}
				if ok != tt.delivered || len(errs) != tt.failed {
					t.Fatalf("delivered %d failed %d, want %d and %d (errors: %v)", ok, len(errs), tt.delivered, tt.failed, errs)
				}
				if n, d := s.count(); n != tt.delivered || d != 0 {
					t.Errorf("sink holds %d frames (%d twice), want %d once", n, d, tt.delivered)
				}
				for _, err := range errs {
					var de *dispatch.DeliveryError
					if !errors.As(err, &de) || len(de.Failed) != 1 || de.Failed[0].Sink != "s" {
						t.Fatalf("error %v is not a DeliveryError naming sink s", err)
					}
					if tt.errIs != nil && !errors.Is(err, tt.errIs) {
						t.Errorf("error %v is not %v", err, tt.errIs)
					}
					if tt.errContains != "" && !strings.Contains(err.Error(), tt.errContains) {
						t.Errorf("error %q lacks %q", err, tt.errContains)
					}
				}
				if s.calls < tt.minCalls {
					t.Errorf("%d writes, want at least %d", s.calls, tt.minCalls)
				}
				if st := fx.d.Stats(); st.Failed != uint64(tt.failed) || st.Delivered != uint64(tt.delivered) {
					t.Errorf("stats %+v", st)
				}
			})
		})
	}
}

// The first retry waits at least half the initial backoff, RetryAfter is
// honoured, and a failing sink is probed with one batch at a time.
func TestBackoffAndProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var times []time.Time
		var ids []serialcb.ID
		s := newScriptSink(func(call int, batch []*serialcb.Frame) error {
			mu.Lock()
			defer mu.Unlock()
			times = append(times, time.Now())
			ids = append(ids, batch[0].ID)
			if call == 2 {
				return dispatch.RetryAfter(errors.New("503"), 20*time.Second)
			}
			if call < 5 {
				return errors.New("down")
			}
			return nil
		})
		fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s,
			Options: dispatch.Options{MaxBatch: 1, MaxInflight: 8, Retry: dispatch.RetryPolicy{Initial: time.Second, Max: time.Minute}}}}})
		first := fx.d.Submit(fx.frame("p"))
		synctest.Wait() // first attempt failed; the lane is now probing
		futs := fx.submit("p", 20)
		r, err := first.Result(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok, errs := results(t, futs); ok != 20 {
			t.Fatalf("ok %d errs %v", ok, errs)
		}
		if err := fx.stop(t, time.Second); err != nil {
			t.Fatal(err)
		}
		if gap := times[1].Sub(times[0]); gap < 500*time.Millisecond {
			t.Errorf("first retry after %v, want ≥ 500ms (half the initial backoff)", gap)
		}
		if gap := times[2].Sub(times[1]); gap < 20*time.Second {
			t.Errorf("retry after a Retry-After of 20s came after %v", gap)
		}
		if m := s.maxRunning.Load(); m > 8 {
			t.Errorf("max running %d", m)
		}
		// While the sink was failing, only the first frame was sent (probing):
		// the 20 queued behind it waited.
		for i, id := range ids[:5] {
			if id != r.ID {
				t.Fatalf("write %d carried another frame while the sink was failing", i+1)
			}
		}
	})
}

// A sink that hangs must not hold back another sink, and its backlog is capped.
func TestSlowSinkDoesNotHoldBackOthers(t *testing.T) {
	slow := newScriptSink(nil)
	slow.block = make(chan struct{})
	allFast := make(chan struct{})
	var fastFrames int
	fast := newScriptSink(func(_ int, batch []*serialcb.Frame) error {
		if fastFrames += len(batch); fastFrames == 1000 {
			close(allFast)
		}
		return nil
	})
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{
		{Name: "slow", Sink: slow, Options: dispatch.Options{MaxBatch: 10, MaxPending: 100}},
		{Name: "fast", Sink: fast},
	}})
	futs := fx.submit("p", 1000)
	<-allFast // every frame reached the fast sink while the slow one is stuck
	close(slow.block)
	ok, errs := results(t, futs)
	if err := fx.stop(t, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// The first frame went out alone while the sink was idle (group commit)
	// and hung; 100 more fit the backlog; the other 899 overflowed it.
	if ok != 101 || len(errs) != 899 {
		t.Fatalf("ok %d failed %d, want 101 and 899", ok, len(errs))
	}
	if !errors.Is(errs[0], dispatch.ErrBacklogFull) {
		t.Errorf("error %v is not ErrBacklogFull", errs[0])
	}
	if n, _ := fast.count(); n != 1000 {
		t.Errorf("fast sink got %d", n)
	}
}

func TestRoutes(t *testing.T) {
	a, b := newScriptSink(nil), newScriptSink(nil)
	fx := start(t, zap.NewNop(), dispatch.Config{
		Targets: []dispatch.Target{{Name: "a", Sink: a}, {Name: "b", Sink: b}},
		Routes:  []dispatch.Route{{Ports: []string{"gps"}, Sinks: []string{"a"}}, {Ports: []string{"gps", "scale"}, Sinks: []string{"b"}}},
	})
	gps, scale, other := fx.submit("gps", 10), fx.submit("scale", 5), fx.submit("other", 2)
	results(t, gps)
	results(t, scale)
	_, errs := results(t, other)
	if err := fx.stop(t, time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.count(); n != 10 {
		t.Errorf("a got %d, want 10 (gps only)", n)
	}
	if n, _ := b.count(); n != 15 {
		t.Errorf("b got %d, want 15", n)
	}
	if len(errs) != 2 || !errors.Is(errs[0], dispatch.ErrUnrouted) {
		t.Errorf("unrouted port: %v", errs)
	}
}

func TestLingerGroupsFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScriptSink(nil)
		fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s, Options: dispatch.Options{MaxBatch: 100, Linger: 50 * time.Millisecond}}}})
		t0 := time.Now()
		futs := fx.submit("p", 30)
		results(t, futs)
		if waited := time.Since(t0); waited < 50*time.Millisecond {
			t.Errorf("delivered after %v, before the linger of 50ms", waited)
		}
		if err := fx.stop(t, time.Second); err != nil {
			t.Fatal(err)
		}
		if len(s.batchLens) != 1 || s.batchLens[0] != 30 {
			t.Errorf("batches %v, want one of 30", s.batchLens)
		}
	})
}

// Drain delivers what is queued; past its deadline, the rest fails with
// ErrStopped and the hung write is cancelled.
func TestDrain(t *testing.T) {
	t.Run("delivers queued frames", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newScriptSink(func(call int, _ []*serialcb.Frame) error { return map[bool]error{true: errors.New("blip")}[call == 1] })
			fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s, Options: dispatch.Options{MaxBatch: 50, Linger: time.Hour}}}})
			futs := fx.submit("p", 120)
			if err := fx.stop(t, time.Minute); err != nil {
				t.Fatal(err)
			}
			if ok, errs := results(t, futs); ok != 120 {
				t.Fatalf("ok %d errs %v", ok, errs)
			}
		})
	})
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := newScriptSink(nil)
			s.block = make(chan struct{}) // never released: the write hangs until cancelled
			fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s, Options: dispatch.Options{MaxBatch: 10}}}})
			futs := fx.submit("p", 25)
			if err := fx.stop(t, 3*time.Second); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("drain: %v, want deadline exceeded", err)
			}
			ok, errs := results(t, futs)
			if ok != 0 || len(errs) != 25 {
				t.Fatalf("ok %d failed %d", ok, len(errs))
			}
			stopped := 0
			for _, err := range errs {
				if errors.Is(err, dispatch.ErrStopped) {
					stopped++
				}
			}
			if stopped != 25 {
				t.Errorf("%d of 25 failed with ErrStopped: %v", stopped, errs[0])
			}
		})
	})
}

func TestSubmitAfterShutdownFails(t *testing.T) {
	s := newScriptSink(nil)
	fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s}}})
	if err := fx.stop(t, time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := fx.d.Submit(fx.frame("p")).Result(context.Background())
	if !errors.Is(err, asyncloop.ErrClosed) {
		t.Fatalf("err %v, want ErrClosed", err)
	}
	if fx.d.Stats().Failed != 1 {
		t.Errorf("stats %+v", fx.d.Stats())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	loop := asyncloop.New(asyncloop.Options{})
	s := newScriptSink(nil)
	for _, cfg := range []dispatch.Config{
		{},
		{Targets: []dispatch.Target{{Name: "a", Sink: s}, {Name: "a", Sink: s}}},
		{Targets: []dispatch.Target{{Name: "a", Sink: s}}, Routes: []dispatch.Route{{Sinks: []string{"b"}}}},
	} {
		if _, err := dispatch.New(loop, cfg, zap.NewNop()); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}
