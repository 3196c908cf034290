package asyncloop

import (
	"bytes"
	"context"
	"errors"
	"log"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestCancelRunningHandlerIgnoringContext: Cancel ends the future at once,
// as asyncio's cancel does, even when the handler never looks at its
// context; its callbacks run; the handler's late result is discarded and
// counted once it returns.
func TestCancelRunningHandlerIgnoringContext(t *testing.T) {
	l := New(Options{Workers: 1})
	l.Start()
	b := newBlocker(1)
	f := Submit(l, b.handler) // ignores ctx
	cbErr := make(chan error, 1)
	f.AddDoneCallback(func(f *Future[int]) { cbErr <- f.Err() })
	<-b.started

	if !f.Cancel() {
		t.Fatal("Cancel of a running future reported false")
	}
	<-f.Done() // done before the handler returns
	if err := <-cbErr; !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Errorf("callback saw %v, want ErrCancelled (also context.Canceled)", err)
	}
	if v, err := f.Result(context.Background()); v != 0 || !errors.Is(err, ErrCancelled) {
		t.Errorf("Result = %d, %v; want 0, ErrCancelled", v, err)
	}
	if f.Cancel() || f.Resolve(5, nil) {
		t.Error("Cancel or Resolve after Cancel reported true")
	}

	close(b.release) // the handler returns 1, nil: discarded
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Result(context.Background()); v != 0 || !errors.Is(err, ErrCancelled) {
		t.Errorf("after the handler returned: Result = %d, %v; want 0, ErrCancelled", v, err)
	}
	st := l.Stats()
	if st.Submitted != 1 || st.Failed != 1 || st.Completed != 0 || st.Running != 0 {
		t.Errorf("stats %+v: want 1 submitted, 1 failed, none running", st)
	}
}

// TestCancelledIsNotHandlerCanceled: errors.Is(err, ErrCancelled) is true
// only for a future stopped by Cancel, not for a handler that returned
// context.Canceled itself (from a context of its own); both match
// context.Canceled.
func TestCancelledIsNotHandlerCanceled(t *testing.T) {
	l := startLoop(t, Options{Workers: 2})
	own := Submit(l, func(context.Context) (int, error) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return 0, ctx.Err()
	})
	_, err := own.Result(context.Background())
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCancelled) {
		t.Errorf("handler's own context.Canceled: %v; want context.Canceled and not ErrCancelled", err)
	}

	b := newBlocker(1)
	running := Submit(l, b.ctxHandler)
	<-b.started
	running.Cancel()
	queued := NewFuture[int](l)
	queued.Cancel()
	for name, f := range map[string]*Future[int]{"running": running, "pending": queued} {
		_, err := f.Result(context.Background())
		if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s future after Cancel: %v; want ErrCancelled and context.Canceled", name, err)
		}
	}
	if ErrCancelled.Error() == context.Canceled.Error() {
		t.Error("ErrCancelled reads like context.Canceled in a log")
	}
}

// TestCallbackPanic: a panicking done-callback, CallSoon or CallLater
// function is recovered, counted and reported; the callbacks after it and
// the loop go on.
func TestCallbackPanic(t *testing.T) {
	var mu sync.Mutex
	var reported []*PanicError
	l := startLoop(t, Options{OnCallbackPanic: func(pe *PanicError) {
		mu.Lock()
		reported = append(reported, pe)
		mu.Unlock()
		panic("the reporter panics too") // dropped
	}})

	f := Submit(l, func(context.Context) (int, error) { return 1, nil })
	after := make(chan int, 1)
	f.AddDoneCallback(func(*Future[int]) { panic("callback boom") })
	f.AddDoneCallback(func(f *Future[int]) { v, _ := f.Result(context.Background()); after <- v })
	if v := <-after; v != 1 {
		t.Errorf("second callback saw %d", v)
	}

	// Each panicking function signals (in a deferred call, which runs
	// before the loop recovers) that it ran.
	soonRan, laterRan := make(chan struct{}), make(chan struct{})
	if err := l.CallSoon(func() { defer close(soonRan); panic("soon boom") }); err != nil {
		t.Fatal(err)
	}
	l.CallLater(0, func() { defer close(laterRan); panic("later boom") })
	<-soonRan
	<-laterRan
	// The loop still runs callbacks; and this one runs after the recoveries
	// above have been counted.
	g := Submit(l, func(context.Context) (int, error) { return 2, nil })
	done := make(chan struct{})
	g.AddDoneCallback(func(*Future[int]) { close(done) })
	<-done

	if n := l.Stats().CallbackPanics; n != 3 {
		t.Errorf("Stats.CallbackPanics = %d, want 3", n)
	}
	mu.Lock()
	defer mu.Unlock()
	var values []string
	for _, pe := range reported {
		values = append(values, pe.Error())
		if !strings.Contains(string(pe.Stack), "robust_test.go") {
			t.Errorf("stack of %v does not show the callback:\n%s", pe.Value, pe.Stack)
		}
	}
	got := strings.Join(values, "; ")
	for _, want := range []string{"callback boom", "soon boom", "later boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("reported %q, missing %q", got, want)
		}
	}
}

// TestCallbackPanicLoggedByDefault: without OnCallbackPanic the panic goes
// to the standard logger, with its stack.
func TestCallbackPanicLoggedByDefault(t *testing.T) {
	var buf bytes.Buffer
	prev, flags := log.Writer(), log.Flags()
	log.SetOutput(&buf)
	log.SetFlags(0)
	t.Cleanup(func() { log.SetOutput(prev); log.SetFlags(flags) })

	l := New(Options{})
	l.Start()
	f := Submit(l, func(context.Context) (int, error) { return 1, nil })
	f.AddDoneCallback(func(*Future[int]) { panic("unreported boom") })
	ok := make(chan struct{})
	f.AddDoneCallback(func(*Future[int]) { close(ok) })
	<-ok
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "unreported boom") || !strings.Contains(out, "goroutine") {
		t.Errorf("log output %q: want the panic value and its stack", out)
	}
	if n := l.Stats().CallbackPanics; n != 1 {
		t.Errorf("Stats.CallbackPanics = %d, want 1", n)
	}
}

// TestHandlerGoexit: a handler that calls runtime.Goexit (as t.FailNow
// does) fails its future with ErrGoexit, and the worker it took with it is
// replaced: with a single worker, the next handler still runs.
func TestHandlerGoexit(t *testing.T) {
	l := New(Options{Workers: 1})
	l.Start()
	for i := range 3 {
		f := Submit(l, func(context.Context) (int, error) {
			runtime.Goexit()
			return 1, nil
		})
		if v, err := f.Result(context.Background()); v != 0 || !errors.Is(err, ErrGoexit) {
			t.Fatalf("round %d: Result = %d, %v; want 0, ErrGoexit", i, v, err)
		}
		g := Submit(l, func(context.Context) (int, error) { return 7, nil })
		if v, err := g.Result(context.Background()); v != 7 || err != nil {
			t.Fatalf("round %d: the next handler: %d, %v; want 7, nil (worker not replaced?)", i, v, err)
		}
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Submitted != 6 || st.Failed != 3 || st.Completed != 3 || st.Running != 0 {
		t.Errorf("stats %+v: want 6 submitted, 3 failed, 3 completed, none running", st)
	}
}
