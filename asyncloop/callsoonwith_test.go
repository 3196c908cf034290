package asyncloop

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestCallSoonWithInterleavedOrder: CallSoon and CallSoonWith share one
// queue, so calls of either from one goroutine run in call order, on the
// loop goroutine; several producers each keep their own order.
func TestCallSoonWithInterleavedOrder(t *testing.T) {
	l := startLoop(t, Options{QueueSize: 8}) // small: producers also wait for room
	loopID := loopGoroutine(t, l)
	const producers, calls = 4, 500
	got := make([][]int, producers) // loop-owned: no lock
	var wrongGoroutine int          // loop-owned
	record := func(p, i int) {
		if goid() != loopID {
			wrongGoroutine++
		}
		got[p] = append(got[p], i)
	}
	type arg struct{ p, i int }
	recordArg := func(v any) { a := v.(*arg); record(a.p, a.i) }
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range calls {
				var err error
				if i%3 == 0 { // irregular interleaving: runs of two of one kind
					err = l.CallSoon(func() { record(p, i) })
				} else {
					err = l.CallSoonWith(recordArg, &arg{p, i})
				}
				if err != nil {
					t.Errorf("producer %d call %d: %v", p, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	done := make(chan struct{})
	if err := l.CallSoonWith(func(v any) { close(v.(chan struct{})) }, done); err != nil {
		t.Fatal(err)
	}
	<-done
	if wrongGoroutine != 0 {
		t.Errorf("%d calls ran off the loop goroutine", wrongGoroutine)
	}
	for p, seq := range got {
		if len(seq) != calls {
			t.Fatalf("producer %d: %d calls ran, want %d", p, len(seq), calls)
		}
		for i, v := range seq {
			if v != i {
				t.Fatalf("producer %d: call %d ran at position %d (order %v)", p, v, i, seq)
			}
		}
	}
}

func TestCallSoonWithRejected(t *testing.T) {
	ran := func(any) { t.Error("rejected call ran") }
	l := New(Options{})
	if err := l.CallSoonWith(ran, nil); !errors.Is(err, ErrNotRunning) {
		t.Errorf("before Start: got %v, want ErrNotRunning", err)
	}
	l.Start()
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.CallSoonWith(ran, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("after Shutdown: got %v, want ErrClosed", err)
	}
}

// TestCallSoonWithDrainedBySoftShutdown: calls queued before Shutdown run
// during it, in order with CallSoon's, as a drain relies on.
func TestCallSoonWithDrainedBySoftShutdown(t *testing.T) {
	l := New(Options{})
	l.Start()
	hold, held := make(chan struct{}), make(chan struct{})
	if err := l.CallSoon(func() { close(held); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-held
	var got []int // loop-owned, read after Shutdown
	appendArg := func(v any) { got = append(got, *v.(*int)) }
	for i := range 6 {
		var err error
		if i%2 == 0 {
			err = l.CallSoonWith(appendArg, &i)
		} else {
			err = l.CallSoon(func() { got = append(got, i) })
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	shut := make(chan error)
	go func() { shut <- l.Shutdown(context.Background()) }()
	for l.CallSoonWith(appendArg, new(int)) == nil { // until Shutdown has begun
		runtime.Gosched()
	}
	close(hold)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// The calls made while waiting for Shutdown to begin ran too (zeros);
	// the first six are in call order.
	if len(got) < 6 {
		t.Fatalf("ran %v, want 0..5 first", got)
	}
	for i := range 6 {
		if got[i] != i {
			t.Fatalf("ran %v, want 0..5 first", got)
		}
	}
}

func TestCallSoonWithQueueFull(t *testing.T) {
	nop := func(any) {}
	// fill holds the loop goroutine in one call and queues one more, so
	// that a queue of 1 is full; release lets it go.
	fill := func(t *testing.T, l *Loop) (release func()) {
		t.Helper()
		hold, held := make(chan struct{}), make(chan struct{})
		if err := l.CallSoonWith(func(any) { close(held); <-hold }, nil); err != nil {
			t.Fatal(err)
		}
		<-held
		if err := l.CallSoonWith(nop, nil); err != nil {
			t.Fatal(err)
		}
		return func() { close(hold) }
	}
	t.Run("FailFast", func(t *testing.T) {
		l := startLoop(t, Options{QueueSize: 1, OnFull: FailFast})
		release := fill(t, l)
		defer release()
		if err := l.CallSoonWith(nop, nil); !errors.Is(err, ErrQueueFull) {
			t.Errorf("got %v, want ErrQueueFull", err)
		}
		if err := l.CallSoon(func() {}); !errors.Is(err, ErrQueueFull) {
			t.Errorf("CallSoon on the shared queue: got %v, want ErrQueueFull", err)
		}
	})
	t.Run("Block times out", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := New(Options{QueueSize: 1, BlockTimeout: 3 * time.Second})
			l.Start()
			release := fill(t, l)
			start := time.Now()
			if err := l.CallSoonWith(nop, nil); !errors.Is(err, ErrQueueFull) {
				t.Errorf("got %v, want ErrQueueFull", err)
			}
			if waited := time.Since(start); waited != 3*time.Second {
				t.Errorf("waited %v (fake clock), want BlockTimeout 3s", waited)
			}
			release()
			if err := l.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	})
	// In a bubble, so that synctest.Wait makes sure the producer is
	// blocked in the wait path before room is made or Shutdown begins.
	t.Run("Block gets room", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := New(Options{QueueSize: 1, BlockTimeout: time.Hour})
			l.Start()
			release := fill(t, l)
			ran := make(chan int, 1)
			errc := make(chan error)
			go func() { errc <- l.CallSoonWith(func(v any) { ran <- *v.(*int) }, new(7)) }()
			synctest.Wait() // blocked on the full queue
			release()       // the loop takes the queued call, which makes room
			if err := <-errc; err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if v := <-ran; v != 7 {
				t.Errorf("ran with %d, want 7", v)
			}
			if err := l.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	})
	t.Run("Block released by Shutdown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := New(Options{QueueSize: 1, BlockTimeout: time.Hour})
			l.Start()
			release := fill(t, l)
			errc := make(chan error)
			go func() { errc <- l.CallSoonWith(func(any) { t.Error("refused call ran") }, nil) }()
			synctest.Wait() // blocked on the full queue
			shut := make(chan error)
			go func() { shut <- l.Shutdown(context.Background()) }()
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Errorf("blocked call: got %v, want ErrClosed", err)
			}
			release()
			if err := <-shut; err != nil {
				t.Error(err)
			}
		})
	})
}

// embedding is a struct with a Future inside, as a caller of Init has.
type embedding struct {
	payload []byte
	fut     Future[int]
}

func TestInitEmbedded(t *testing.T) {
	l := startLoop(t, Options{})
	loopID := loopGoroutine(t, l)
	e := &embedding{payload: []byte("x")}
	e.fut.Init(l)
	f := &e.fut
	if err := f.Err(); err != ErrNotDone {
		t.Errorf("pending Err = %v, want ErrNotDone", err)
	}
	cb := make(chan uint64, 1)
	f.AddDoneCallback(func(*Future[int]) { cb <- goid() })
	done := f.Done()
	if !f.Resolve(5, nil) || f.Resolve(6, nil) {
		t.Error("Resolve: want true then false")
	}
	<-done
	if v, err := f.Result(context.Background()); v != 5 || err != nil {
		t.Errorf("Result = %d, %v; want 5, nil", v, err)
	}
	if id := <-cb; id != loopID {
		t.Errorf("callback ran on goroutine %d, want loop goroutine %d", id, loopID)
	}

	c := &embedding{}
	c.fut.Init(l)
	if !c.fut.Cancel() || !errors.Is(c.fut.Err(), context.Canceled) {
		t.Errorf("Cancel: Err = %v, want context.Canceled", c.fut.Err())
	}
}

// failEmbeddedAndDrop fails the future of a fresh embedding and drops it.
//
//go:noinline
func failEmbeddedAndDrop(l *Loop, err error) {
	e := &embedding{payload: make([]byte, 64)}
	e.fut.Init(l)
	e.fut.Resolve(0, err)
}

// TestInitEmbeddedUnobservedFailure: the unread-failure report works for a
// future inside a larger allocation too (its cleanup is attached to an
// interior pointer, which runs once the whole struct is unreachable).
func TestInitEmbeddedUnobservedFailure(t *testing.T) {
	reports := make(chan error, 10)
	l := startLoop(t, Options{OnUnobserved: func(err error) { reports <- err }})
	failEmbeddedAndDrop(l, errUnobserved)
	deadline := time.After(time.Minute) // a bound, not a synchronisation
	for got := false; !got; {
		runtime.GC()
		select {
		case err := <-reports:
			if err != errUnobserved {
				t.Fatalf("reported %v, want %v", err, errUnobserved)
			}
			got = true
		case <-deadline:
			t.Fatal("unobserved failure of an embedded future was never reported")
		default:
			runtime.Gosched()
		}
	}
}

// TestCallSoonWithAndInitAllocs: a pointer argument costs CallSoonWith no
// allocation, and a struct embedding its future is one allocation in all.
func TestCallSoonWithAndInitAllocs(t *testing.T) {
	l := startLoop(t, Options{})
	done := make(chan struct{}, 1)
	signal := func(v any) { v.(chan struct{}) <- struct{}{} }
	e := &embedding{}
	if got := testing.AllocsPerRun(1000, func() {
		if err := l.CallSoonWith(signal, done); err != nil {
			t.Fatal(err)
		}
		<-done
	}); got != 0 {
		t.Errorf("CallSoonWith with a pointer arg: %v allocs per call, want 0", got)
	}
	held := &embedding{}
	ptrArg := func(v any) { _ = v.(*embedding); done <- struct{}{} }
	if got := testing.AllocsPerRun(1000, func() {
		if err := l.CallSoonWith(ptrArg, held); err != nil {
			t.Fatal(err)
		}
		<-done
	}); got != 0 {
		t.Errorf("CallSoonWith with a *struct arg: %v allocs per call, want 0", got)
	}
	cb := func(*Future[int]) { done <- struct{}{} }
	if got := testing.AllocsPerRun(1000, func() {
		e = &embedding{}
		e.fut.Init(l)
		e.fut.AddDoneCallback(cb)
		e.fut.Resolve(1, nil)
		<-done
	}); got > 1 {
		t.Errorf("embedded future + Init + Resolve + callback: %v allocs, want ≤ 1 (the struct)", got)
	}
	_ = e
}
