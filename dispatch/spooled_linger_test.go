package dispatch_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// lingerTarget is spooledTarget with a Linger that never ends during a test.
func lingerTarget(t *testing.T, s dispatch.Sink, maxBatch int) dispatch.Target {
	tg := spooledTarget("s", s, openSpool(t, t.TempDir()), nil)
	tg.Options.MaxBatch = maxBatch
	tg.Options.Linger = time.Hour
	return tg
}

// Frames that trickle in (each on disk before the next arrives) wait in the
// spool for Linger and reach the sink as one batch; a drain does not wait.
func TestSpooledLaneLingerGathersTricklingFrames(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(b))
		return nil
	})
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{lingerTarget(t, sink, 50)}})
	for range 10 {
		if ok, errs := results(t, fx.submit("p", 1)); ok != 1 {
			t.Fatalf("not spooled: %v", errs)
		}
	}
	if err := fx.stop(t, 10*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 1 || sizes[0] != 10 {
		t.Fatalf("batches %v, want one of 10", sizes)
	}
}

// Linger holds a Read only while fewer than MaxBatch frames wait: a full
// batch goes at once.
func TestSpooledLaneLingerEndsAtMaxBatch(t *testing.T) {
	got := make(chan int, 10)
	sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
		got <- len(b)
		return nil
	})
	fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{lingerTarget(t, sink, 5)}})
	for range 10 {
		if ok, errs := results(t, fx.submit("p", 1)); ok != 1 {
			t.Fatalf("not spooled: %v", errs)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < 10; {
		select {
		case k := <-got:
			if k != 5 {
				t.Fatalf("batch of %d, want 5", k)
			}
			n += k
		case <-ctx.Done():
			t.Fatalf("%d frames delivered before the drain, want 10 in batches of 5", n)
		}
	}
	if err := fx.stop(t, 10*time.Second); err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// The linger ends on the next multiple of Linger on the clock (dispatch/tick),
// where the spool's fsync and the other lanes' batches are due too: a
// frame spooled 300 ms past a whole second goes at the whole second.
func TestSpooledLaneLingerEndsOnMultiple(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		batches := make(chan int, 10)
		sink := newScriptSink(func(_ int, b []*serialcb.Frame) error {
			batches <- len(b)
			return nil
		})
		tg := lingerTarget(t, sink, 50)
		tg.Options.Linger = time.Second
		// synctest's clock starts on a whole second.
		time.Sleep(300 * time.Millisecond)
		fx := start(t, zaptest.NewLogger(t), dispatch.Config{Targets: []dispatch.Target{tg}})
		defer func() { // also on a failure: the bubble must end with no goroutine left
			if err := fx.stop(t, 10*time.Second); err != nil {
				t.Errorf("drain: %v", err)
			}
		}()
		if ok, errs := results(t, fx.submit("p", 1)); ok != 1 {
			t.Fatalf("not spooled: %v", errs)
		}
		time.Sleep(699 * time.Millisecond)
		synctest.Wait()
		if n := len(batches); n != 0 {
			t.Fatalf("%d batches before the whole second", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := len(batches); n != 1 {
			t.Fatalf("%d batches at the whole second, want 1", n)
		}
	})
}
