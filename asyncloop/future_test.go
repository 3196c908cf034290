package asyncloop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDoneCallbacks(t *testing.T) {
	l := startLoop(t, Options{Workers: 8})
	loopID := loopGoroutine(t, l)
	const futures, perFuture = 200, 3
	var inCallback atomic.Int32
	var wg sync.WaitGroup
	wg.Add(futures * perFuture * 2)
	cb := func(f *Future[int]) {
		defer wg.Done()
		if inCallback.Add(1) != 1 {
			t.Error("two callbacks overlapped")
		}
		if id := goid(); id != loopID {
			t.Errorf("callback on goroutine %d, want loop goroutine %d", id, loopID)
		}
		if f.Err() == ErrNotDone {
			t.Error("callback ran before the future was done")
		}
		runtime.Gosched() // give an overlap a chance to show
		inCallback.Add(-1)
	}
	for i := range futures {
		f := Submit(l, func(context.Context) (int, error) { return i, nil })
		for range perFuture {
			f.AddDoneCallback(cb) // before or after completion: racing
		}
		go func() {
			<-f.Done()
			for range perFuture {
				f.AddDoneCallback(cb) // certainly after completion
			}
		}()
	}
	wg.Wait()
}

func TestDoneCallbackOrder(t *testing.T) {
	l := startLoop(t, Options{})
	f := NewFuture[int](l)
	var got []int // loop-owned
	done := make(chan struct{})
	for i := range 5 {
		f.AddDoneCallback(func(*Future[int]) { got = append(got, i) })
	}
	f.Resolve(7, nil)
	f.AddDoneCallback(func(*Future[int]) { got = append(got, 5) })
	f.AddDoneCallback(func(f *Future[int]) {
		// Added from a callback: runs in a later batch, still once.
		f.AddDoneCallback(func(*Future[int]) { got = append(got, 7); close(done) })
		got = append(got, 6)
	})
	<-done
	if want := "[0 1 2 3 4 5 6 7]"; fmt.Sprint(got) != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestCallbacksAfterShutdownRunSynchronously(t *testing.T) {
	l := New(Options{})
	l.Start()
	done := Submit(l, okHandler)
	pending := NewFuture[int](l)
	if _, err := done.Result(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	me := goid()
	ran := 0
	cb := func(*Future[int]) {
		if goid() != me {
			t.Error("callback after Shutdown ran on another goroutine")
		}
		ran++
	}
	done.AddDoneCallback(cb)
	if ran != 1 {
		t.Errorf("callback added after Shutdown: ran %d times before returning, want 1", ran)
	}
	pending.AddDoneCallback(cb)
	pending.Resolve(1, nil)
	if ran != 2 {
		t.Errorf("callback of a future resolved after Shutdown: ran %d times, want 2 in all", ran-1)
	}
}

func TestResolve(t *testing.T) {
	l := startLoop(t, Options{})
	errBad := errors.New("bad")
	tests := []struct {
		name    string
		v       int
		err     error
		wantErr error
	}{
		{"value", 3, nil, nil},
		{"error", 0, errBad, errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFuture[int](l)
			if err := f.Err(); err != ErrNotDone {
				t.Errorf("pending Err = %v, want ErrNotDone", err)
			}
			if !f.Resolve(tt.v, tt.err) {
				t.Fatal("first Resolve reported false")
			}
			if f.Resolve(99, nil) || f.Cancel() {
				t.Error("Resolve or Cancel on a done future reported true")
			}
			v, err := f.Result(context.Background())
			if v != tt.v || !errors.Is(err, tt.wantErr) || !errors.Is(f.Err(), tt.wantErr) {
				t.Errorf("got %d, %v; want %d, %v", v, err, tt.v, tt.wantErr)
			}
		})
	}
}

func TestResultWithDoneContext(t *testing.T) {
	l := startLoop(t, Options{})
	f := NewFuture[int](l)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Result(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Result = %v, want context.Canceled", err)
	}
	if err := f.Err(); err != ErrNotDone {
		t.Errorf("future after giving up: %v, want still pending", err)
	}
	f.Resolve(5, nil)
	if v, err := f.Result(ctx); v != 5 || err != nil {
		t.Errorf("Result of a done future with a done ctx = %d, %v; want 5, nil", v, err)
	}
}

func TestCancel(t *testing.T) {
	t.Run("not started", func(t *testing.T) {
		l := startLoop(t, Options{Workers: 1})
		b := newBlocker(1)
		first := Submit(l, b.handler)
		<-b.started
		queued := Submit(l, func(context.Context) (int, error) {
			t.Error("cancelled handler ran")
			return 0, nil
		})
		if !queued.Cancel() {
			t.Fatal("Cancel of a queued future reported false")
		}
		if err := queued.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("Err = %v, want context.Canceled", err)
		}
		if queued.Cancel() {
			t.Error("second Cancel reported true")
		}
		close(b.release)
		if _, err := first.Result(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NewFuture", func(t *testing.T) {
		l := startLoop(t, Options{})
		f := NewFuture[string](l)
		if !f.Cancel() || !errors.Is(f.Err(), context.Canceled) {
			t.Errorf("Cancel of a pending NewFuture: Err %v", f.Err())
		}
	})
	t.Run("running, handler waits on Done", func(t *testing.T) {
		l := startLoop(t, Options{})
		b := newBlocker(1)
		f := Submit(l, b.ctxHandler)
		<-b.started
		if !f.Cancel() {
			t.Fatal("Cancel of a running future reported false")
		}
		if _, err := f.Result(context.Background()); !errors.Is(err, context.Canceled) {
			t.Errorf("Result = %v, want context.Canceled", err)
		}
	})
	t.Run("running, handler reads Err only", func(t *testing.T) {
		// Cancel before the context is materialised must still be seen.
		l := startLoop(t, Options{})
		b := newBlocker(1)
		f := Submit(l, func(ctx context.Context) (int, error) {
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("early: %w", err)
			}
			b.handler(ctx)
			return 0, ctx.Err()
		})
		<-b.started
		f.Cancel()
		close(b.release)
		if _, err := f.Result(context.Background()); !errors.Is(err, context.Canceled) {
			t.Errorf("Result = %v, want context.Canceled", err)
		}
	})
	t.Run("derived context", func(t *testing.T) {
		l := startLoop(t, Options{})
		b := newBlocker(1)
		f := Submit(l, func(ctx context.Context) (int, error) {
			child, cancel := context.WithTimeout(ctx, time.Hour)
			defer cancel()
			b.started <- struct{}{}
			<-child.Done()
			return 0, child.Err()
		})
		<-b.started
		f.Cancel()
		if _, err := f.Result(context.Background()); !errors.Is(err, context.Canceled) {
			t.Errorf("Result = %v, want context.Canceled", err)
		}
	})
}

// TestDerivedContextNeedsNoGoroutine checks that the lazily materialised
// handler context is recognised by the context package as a cancelCtx
// parent; otherwise every derived context would start a goroutine in
// propagateCancel.
func TestDerivedContextNeedsNoGoroutine(t *testing.T) {
	l := startLoop(t, Options{})
	var stacks []byte
	f := Submit(l, func(ctx context.Context) (int, error) {
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		timed, cancelTimed := context.WithTimeout(child, time.Hour)
		defer cancelTimed()
		stacks = make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		return 0, timed.Err()
	})
	if _, err := f.Result(context.Background()); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stacks, []byte("propagateCancel")) {
		t.Errorf("deriving from a handler context started a goroutine:\n%s", stacks)
	}
}

func TestHandlerContextEndsWithHandler(t *testing.T) {
	l := startLoop(t, Options{})
	tests := []struct {
		name        string
		materialise bool
	}{{"lazy", false}, {"materialised", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kept context.Context
			f := Submit(l, func(ctx context.Context) (int, error) {
				if tt.materialise {
					_ = ctx.Done()
				}
				if err := ctx.Err(); err != nil {
					t.Errorf("ctx.Err() in a running handler = %v", err)
				}
				kept = ctx
				return 0, nil
			})
			if err := f.Err(); err != nil && err != ErrNotDone {
				t.Fatal(err)
			}
			<-f.Done()
			if !errors.Is(kept.Err(), context.Canceled) {
				t.Errorf("context after the handler returned: Err %v", kept.Err())
			}
			<-kept.Done()
		})
	}
}

func TestResolveWhileRunningCancelsHandler(t *testing.T) {
	l := startLoop(t, Options{})
	b := newBlocker(1)
	handlerErr := make(chan error, 1)
	f := Submit(l, func(ctx context.Context) (int, error) {
		v, err := b.ctxHandler(ctx)
		handlerErr <- err
		return v, err
	})
	<-b.started
	if !f.Resolve(9, nil) {
		t.Fatal("Resolve of a running future reported false")
	}
	if err := <-handlerErr; !errors.Is(err, context.Canceled) {
		t.Errorf("handler saw %v, want context.Canceled", err)
	}
	if v, err := f.Result(context.Background()); v != 9 || err != nil {
		t.Errorf("Result = %d, %v; the first Resolve must win", v, err)
	}
}

var (
	errUnobserved = errors.New("nobody looked")
	errObserved   = errors.New("somebody looked")
)

// failAndDrop makes a failed future, optionally reads its error, and drops
// it; noinline keeps the future out of the caller's frame.
//
//go:noinline
func failAndDrop(l *Loop, err error, observe bool) {
	f := Submit(l, func(context.Context) (int, error) { return 0, err })
	<-f.Done() // waiting does not observe
	if observe {
		_ = f.Err()
	}
}

func TestUnobservedFailure(t *testing.T) {
	reports := make(chan error, 10)
	l := startLoop(t, Options{OnUnobserved: func(err error) { reports <- err }})
	failAndDrop(l, errObserved, true)
	failAndDrop(l, errUnobserved, false)

	deadline := time.After(time.Minute) // a bound, not a synchronisation
	for got := false; !got; {
		runtime.GC()
		select {
		case err := <-reports:
			if err != errUnobserved {
				t.Fatalf("reported %v, want only %v", err, errUnobserved)
			}
			got = true
		case <-deadline:
			t.Fatal("unobserved failure was never reported")
		default:
			runtime.Gosched()
		}
	}
	if n := l.Stats().Unobserved; n != 1 {
		t.Errorf("Stats.Unobserved = %d, want 1", n)
	}
}

// TestObservedFailureNotReported drives the cleanup by hand, because
// whether (and when) the collector runs one cannot be waited for.
func TestObservedFailureNotReported(t *testing.T) {
	reports := make(chan error, 10)
	l := startLoop(t, Options{OnUnobserved: func(err error) { reports <- err }})
	tests := []struct {
		name string
		read func(*Future[int])
	}{
		{"Err", func(f *Future[int]) { _ = f.Err() }},
		{"Result", func(f *Future[int]) { _, _ = f.Result(context.Background()) }},
		{"in a callback", func(f *Future[int]) {
			done := make(chan struct{})
			f.AddDoneCallback(func(f *Future[int]) { _ = f.Err(); close(done) })
			<-done
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFuture[int](l)
			f.Resolve(0, errObserved)
			tt.read(f)
			f.obs.collected()
		})
	}
	cancelled := NewFuture[int](l)
	cancelled.Cancel()
	if cancelled.obs != nil {
		t.Error("a future failed by its own Cancel is tracked as a failure")
	}
	// The reference case: the same path does report an unread failure.
	f := NewFuture[int](l)
	f.Resolve(0, errUnobserved)
	f.obs.collected()
	if err := <-reports; err != errUnobserved {
		t.Errorf("reported %v, want %v", err, errUnobserved)
	}
	if n := l.Stats().Unobserved; n != 1 {
		t.Errorf("Stats.Unobserved = %d, want 1", n)
	}
}

func TestRaceStress(t *testing.T) {
	l := startLoop(t, Options{Workers: 4, QueueSize: 64})
	const producers, perProducer = 8, 500
	var callbacks, resolvedByUs, cancelledByUs atomic.Int64
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 1))
			var inner sync.WaitGroup
			for i := range perProducer {
				f := Submit(l, func(ctx context.Context) (int, error) {
					if i%3 == 0 {
						<-ctx.Done()
						return 0, ctx.Err()
					}
					return i, nil
				})
				f.AddDoneCallback(func(*Future[int]) { callbacks.Add(1) })
				inner.Go(func() {
					switch rng := rand.New(rand.NewPCG(uint64(p), uint64(i))); rng.IntN(3) {
					case 0:
						if f.Cancel() {
							cancelledByUs.Add(1)
						}
					case 1:
						if f.Resolve(-1, nil) {
							resolvedByUs.Add(1)
						}
					default:
						if i%3 == 0 {
							f.Cancel() // else the handler waits for ever
						}
					}
					_, _ = f.Result(context.Background())
				})
				if rng.IntN(10) == 0 {
					runtime.Gosched()
				}
			}
			inner.Wait()
		})
	}
	wg.Wait()
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	total := int64(producers * perProducer)
	if callbacks.Load() != total {
		t.Errorf("%d callbacks, want %d", callbacks.Load(), total)
	}
	if s.Submitted+s.Rejected != uint64(total) || s.Completed+s.Failed != s.Submitted {
		t.Errorf("Stats = %+v do not add up to %d", s, total)
	}
	t.Logf("resolved by Resolve %d, by Cancel %d, stats %+v", resolvedByUs.Load(), cancelledByUs.Load(), s)
}
