package asyncloop

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func okHandler(context.Context) (int, error) { return 42, nil }

func TestRejected(t *testing.T) {
	notStarted := func(t *testing.T) *Loop { return New(Options{}) }
	shutDown := func(t *testing.T) *Loop {
		l := New(Options{})
		l.Start()
		if err := l.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		return l
	}
	neverStartedShutDown := func(t *testing.T) *Loop {
		l := New(Options{})
		if err := l.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		l.Start() // no-op after Shutdown
		return l
	}
	tests := []struct {
		name string
		loop func(*testing.T) *Loop
		want error
	}{
		{"before Start", notStarted, ErrNotRunning},
		{"after Shutdown", shutDown, ErrClosed},
		{"Start after Shutdown", neverStartedShutDown, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.loop(t)
			f := Submit(l, okHandler)
			select {
			case <-f.Done():
			default:
				t.Fatal("rejected future is not done at once")
			}
			if _, err := f.Result(context.Background()); !errors.Is(err, tt.want) {
				t.Errorf("Submit: got %v, want %v", err, tt.want)
			}
			if err := l.CallSoon(func() {}); !errors.Is(err, tt.want) {
				t.Errorf("CallSoon: got %v, want %v", err, tt.want)
			}
			if got := l.Stats().Rejected; got != 1 {
				t.Errorf("Stats.Rejected = %d, want 1", got)
			}
		})
	}
}

func TestFailFastQueueFull(t *testing.T) {
	l := startLoop(t, Options{Workers: 1, QueueSize: 1, OnFull: FailFast})
	b := newBlocker(2)
	running := Submit(l, b.handler)
	<-b.started
	queued := Submit(l, b.handler) // fills the queue of 1
	if s := l.Stats(); s.Running != 1 || s.Queued != 1 {
		t.Errorf("Stats = %+v, want Running 1, Queued 1", s)
	}
	if err := Submit(l, okHandler).Err(); !errors.Is(err, ErrQueueFull) {
		t.Errorf("Submit on full queue: got %v, want ErrQueueFull", err)
	}

	// Fill the CallSoon queue: hold the loop goroutine in one function and
	// queue one more.
	hold, held := make(chan struct{}), make(chan struct{})
	if err := l.CallSoon(func() { close(held); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-held
	if err := l.CallSoon(func() {}); err != nil {
		t.Fatal(err)
	}
	if err := l.CallSoon(func() {}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("CallSoon on full queue: got %v, want ErrQueueFull", err)
	}
	close(hold)

	close(b.release)
	for _, f := range []*Future[int]{running, queued} {
		if v, err := f.Result(context.Background()); err != nil || v != 1 {
			t.Errorf("Result = %d, %v; want 1, nil", v, err)
		}
	}
}

func TestBlockPolicy(t *testing.T) {
	t.Run("times out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := New(Options{Workers: 1, QueueSize: 1, BlockTimeout: 3 * time.Second})
			l.Start()
			b := newBlocker(2)
			Submit(l, b.handler)
			<-b.started
			Submit(l, b.handler)

			start := time.Now()
			if err := Submit(l, okHandler).Err(); !errors.Is(err, ErrQueueFull) {
				t.Errorf("Submit: got %v, want ErrQueueFull", err)
			}
			if waited := time.Since(start); waited != 3*time.Second {
				t.Errorf("waited %v (fake clock), want BlockTimeout 3s", waited)
			}
			close(b.release)
			if err := l.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	})
	t.Run("gets room", func(t *testing.T) {
		l := startLoop(t, Options{Workers: 1, QueueSize: 1, BlockTimeout: time.Hour})
		b := newBlocker(3)
		Submit(l, b.handler)
		<-b.started
		Submit(l, b.handler)
		done := make(chan *Future[int])
		go func() { done <- Submit(l, okHandler) }()
		close(b.release) // frees the worker, and so the queue
		if v, err := (<-done).Result(context.Background()); err != nil || v != 42 {
			t.Errorf("Result = %d, %v; want 42, nil", v, err)
		}
	})
	t.Run("released by Shutdown", func(t *testing.T) {
		l := New(Options{Workers: 1, QueueSize: 1, BlockTimeout: time.Hour})
		l.Start()
		b := newBlocker(3)
		Submit(l, b.handler)
		<-b.started
		Submit(l, b.handler)
		done := make(chan *Future[int])
		go func() { done <- Submit(l, okHandler) }()
		shut := make(chan error)
		go func() { shut <- l.Shutdown(context.Background()) }()
		if err := (<-done).Err(); !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Submit: got %v, want ErrClosed", err)
		}
		close(b.release)
		if err := <-shut; err != nil {
			t.Error(err)
		}
	})
}

func TestConcurrencyLimit(t *testing.T) {
	const workers, tasks = 3, 12
	l := startLoop(t, Options{Workers: workers})
	var running, peak atomic.Int32
	started, release := make(chan struct{}, tasks), make(chan struct{})
	h := func(ctx context.Context) (int, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- struct{}{}
		<-release
		running.Add(-1)
		return 0, nil
	}
	fs := make([]*Future[int], tasks)
	for i := range fs {
		fs[i] = Submit(l, h)
	}
	for range workers {
		<-started
	}
	if s := l.Stats(); s.Running != workers || s.Queued != tasks-workers {
		t.Errorf("Stats = %+v, want Running %d, Queued %d", s, workers, tasks-workers)
	}
	close(release)
	for _, f := range fs {
		if _, err := f.Result(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != workers {
		t.Errorf("peak concurrency %d, want %d", p, workers)
	}
}

func panickingHandler(context.Context) (int, error) {
	panic("boom")
}

func TestPanic(t *testing.T) {
	l := startLoop(t, Options{Workers: 1})
	_, err := Submit(l, panickingHandler).Result(context.Background())
	var pe *PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *PanicError", err)
	}
	if pe.Value != "boom" || !strings.Contains(pe.Error(), "boom") {
		t.Errorf("Value %v, Error %q: want the panic value", pe.Value, pe.Error())
	}
	if !strings.Contains(string(pe.Stack), "panickingHandler") {
		t.Errorf("stack does not name the panicking function:\n%s", pe.Stack)
	}

	// A runtime error stays reachable through errors.As.
	_, err = Submit(l, func(context.Context) (int, error) {
		var m map[string]int
		m["x"] = 1
		return 0, nil
	}).Result(context.Background())
	var re interface{ RuntimeError() }
	if !errors.As(err, &re) {
		t.Errorf("got %v, want a wrapped runtime.Error", err)
	}

	// The single worker survived.
	if v, err := Submit(l, okHandler).Result(context.Background()); err != nil || v != 42 {
		t.Errorf("after panic: %d, %v; want 42, nil", v, err)
	}
	if s := l.Stats(); s.Failed != 2 || s.Completed != 1 {
		t.Errorf("Stats = %+v, want Failed 2, Completed 1", s)
	}
}

func TestCallSoonRunsInOrderOnLoop(t *testing.T) {
	l := startLoop(t, Options{})
	loopID := loopGoroutine(t, l)
	var got []int // loop-owned: no lock
	done := make(chan struct{})
	for i := range 100 {
		if err := l.CallSoon(func() {
			if id := goid(); id != loopID {
				t.Errorf("ran on goroutine %d, want loop goroutine %d", id, loopID)
			}
			got = append(got, i)
			if i == 99 {
				close(done)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	for i, v := range got {
		if v != i {
			t.Fatalf("CallSoon order: %v", got)
		}
	}
}

func TestCallLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(Options{QueueSize: 1})
		l.Start()
		loopID := loopGoroutine(t, l)

		ran := make(chan uint64, 1)
		stop := l.CallLater(5*time.Second, func() { ran <- goid() })
		start := time.Now()
		if id := <-ran; id != loopID {
			t.Errorf("ran on goroutine %d, want loop goroutine %d", id, loopID)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("ran after %v (fake clock), want 5s", d)
		}
		if stop() {
			t.Error("stop after the call reported true")
		}

		stopped := l.CallLater(time.Second, func() { t.Error("stopped call ran") })
		if !stopped() {
			t.Error("stop before the call reported false")
		}
		if stopped() {
			t.Error("second stop reported true")
		}
		time.Sleep(2 * time.Second) // fake clock: past the stopped call's time
		synctest.Wait()

		// A full CallSoon queue does not drop a CallLater call.
		hold, held := make(chan struct{}), make(chan struct{})
		if err := l.CallSoon(func() { close(held); <-hold }); err != nil {
			t.Fatal(err)
		}
		<-held
		if err := l.CallSoon(func() {}); err != nil {
			t.Fatal(err)
		}
		late := make(chan struct{})
		l.CallLater(0, func() { close(late) })
		time.Sleep(time.Millisecond)
		close(hold)
		<-late

		// Pending at Shutdown: stopped, never run.
		pending := l.CallLater(time.Hour, func() { t.Error("call pending at Shutdown ran") })
		if err := l.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if pending() {
			t.Error("stop after Shutdown reported true")
		}
		time.Sleep(2 * time.Hour)
		if l.CallLater(0, func() { t.Error("CallLater after Shutdown ran") })() {
			t.Error("stop of CallLater after Shutdown reported true")
		}
		synctest.Wait()
	})
}

func TestShutdownSoft(t *testing.T) {
	l := New(Options{Workers: 1})
	l.Start()
	loopID := loopGoroutine(t, l)
	b := newBlocker(5)
	var callbacks atomic.Int32
	cb := func(f *Future[int]) {
		if goid() != loopID {
			t.Error("callback off the loop goroutine")
		}
		if v, err := f.Result(context.Background()); err != nil || v != 1 {
			t.Errorf("Result = %d, %v", v, err)
		}
		callbacks.Add(1)
	}
	for range 5 {
		Submit(l, b.handler).AddDoneCallback(cb)
	}
	<-b.started

	shut := make(chan error)
	go func() { shut <- l.Shutdown(context.Background()) }()
	<-l.closing // Shutdown has begun
	if err := Submit(l, okHandler).Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit during Shutdown: got %v, want ErrClosed", err)
	}
	if err := l.CallSoon(func() {}); !errors.Is(err, ErrClosed) {
		t.Errorf("CallSoon during Shutdown: got %v, want ErrClosed", err)
	}
	close(b.release)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if n := callbacks.Load(); n != 5 {
		t.Errorf("%d callbacks ran before Shutdown returned, want 5", n)
	}
	if s := l.Stats(); s.Completed != 5 || s.Failed != 0 || s.Queued != 0 || s.Running != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestShutdownHard(t *testing.T) {
	l := New(Options{Workers: 1})
	l.Start()
	b := newBlocker(1)
	var cause error
	var callbacks atomic.Int32
	cb := func(*Future[int]) { callbacks.Add(1) }
	running := Submit(l, func(ctx context.Context) (int, error) {
		v, err := b.ctxHandler(ctx)
		cause = context.Cause(ctx)
		return v, err
	})
	running.AddDoneCallback(cb)
	<-b.started
	queued := Submit(l, func(context.Context) (int, error) {
		t.Error("queued handler ran after a hard stop")
		return 0, nil
	})
	queued.AddDoneCallback(cb)

	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if err := running.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("running handler: got %v, want context.Canceled", err)
	}
	if !errors.Is(cause, ErrClosed) {
		t.Errorf("context cause %v, want ErrClosed", cause)
	}
	if err := queued.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("queued handler: got %v, want ErrClosed", err)
	}
	if n := callbacks.Load(); n != 2 {
		t.Errorf("%d callbacks ran, want 2", n)
	}
	// A second Shutdown has nothing left to do.
	if err := l.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
}

func TestShutdownConcurrentCalls(t *testing.T) {
	l := New(Options{})
	l.Start()
	b := newBlocker(1)
	f := Submit(l, b.handler)
	<-b.started
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- l.Shutdown(context.Background()) })
	}
	close(b.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	}
	if err := f.Err(); err != nil {
		t.Error(err)
	}
}

func TestShutdownNeverStarted(t *testing.T) {
	l := New(Options{})
	f := NewFuture[int](l)
	ran := false
	f.AddDoneCallback(func(*Future[int]) { ran = true })
	f.Resolve(1, nil) // the loop is not running: the callback waits
	if ran {
		t.Fatal("callback ran before Start or Shutdown")
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Error("Shutdown of a never-started loop dropped a pending callback")
	}
}

func TestCallbacksBeforeStartRunOnStart(t *testing.T) {
	l := New(Options{})
	f := NewFuture[int](l)
	ran := make(chan struct{})
	f.AddDoneCallback(func(*Future[int]) { close(ran) })
	f.Resolve(1, nil)
	l.Start()
	defer l.Shutdown(context.Background())
	<-ran
}
