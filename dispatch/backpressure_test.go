package dispatch_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// A healthy sink that is merely slower than the input throttles Submit
// (back-pressure on the read loop) instead of dropping frames.
func TestBackpressureOnSlowHealthySinkLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var maxPending int64
		var fx *fixture
		s := newScriptSink(func(int, []*serialcb.Frame) error {
			time.Sleep(2 * time.Millisecond)
			if p := fx.d.Stats().Sinks[0].Pending; p > maxPending {
				maxPending = p
			}
			return nil
		})
		fx = start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "slow", Sink: s, Options: dispatch.Options{MaxBatch: 10, MaxPending: 50}}}})
		futs := fx.submit("p", 2000)
		ok, errs := results(t, futs)
		if err := fx.stop(t, time.Second); err != nil {
			t.Fatal(err)
		}
		if ok != 2000 || len(errs) > 0 {
			t.Fatalf("ok %d, failed %d: %v", ok, len(errs), errs[:min(1, len(errs))])
		}
		st := fx.d.Stats()
		if st.Throttled == 0 {
			t.Error("Submit never waited for the slow sink")
		}
		if maxPending > 50 {
			t.Errorf("pending reached %d, cap 50", maxPending)
		}
	})
}

// A sink that fails is not waited for: frames past its queue fail for it at
// once, and the other sink gets every frame without delay.
func TestFailingSinkIsNotWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := newScriptSink(func(int, []*serialcb.Frame) error { return errors.New("connection refused") })
		up := newScriptSink(nil)
		fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{
			{Name: "down", Sink: down, Options: dispatch.Options{MaxPending: 20, Retry: dispatch.RetryPolicy{Initial: time.Hour, Max: time.Hour}}},
			{Name: "up", Sink: up},
		}})
		t0 := time.Now()
		futs := fx.submit("p", 500)
		if waited := time.Since(t0); waited > 0 {
			t.Errorf("Submit waited %v for a failing sink", waited)
		}
		synctest.Wait()
		if st := fx.d.Stats(); !st.Sinks[0].Down || st.Sinks[1].Down {
			t.Errorf("down flags %v/%v, want the failing sink down and the other up", st.Sinks[0].Down, st.Sinks[1].Down)
		}
		if n, _ := up.count(); n != 500 {
			t.Errorf("the healthy sink got %d of 500 while the other was down", n)
		}
		_ = fx.stop(t, time.Second) // the down sink's retry is cut short: its frames fail with ErrStopped
		_, errs := results(t, futs)
		backlog := 0
		for _, err := range errs {
			if errors.Is(err, dispatch.ErrBacklogFull) {
				backlog++
			}
		}
		if backlog < 400 {
			t.Errorf("%d frames failed with ErrBacklogFull, want most of the 500", backlog)
		}
		// Until its first write fails the sink is not known to be down, so
		// Submit may wait briefly; the time check above shows it is brief.
	})
}
