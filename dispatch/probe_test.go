package dispatch_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Retried batches restart together when their timers fire, bypassing the
// "probe a failing sink with one batch" limit of pump.
func TestRetriesRespectProbeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failing atomic.Bool
		failing.Store(true)
		var maxWhileFailing atomic.Int32
		var s *scriptSink
		s = newScriptSink(func(call int, _ []*serialcb.Frame) error {
			if call > 12 {
				failing.Store(false)
				return nil
			}
			if call > 4 { // after the first round has failed
				if n := s.running.Load(); n > maxWhileFailing.Load() {
					maxWhileFailing.Store(n)
				}
			}
			time.Sleep(10 * time.Millisecond)
			return errors.New("down")
		})
		fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s,
			Options: dispatch.Options{MaxBatch: 1, MaxInflight: 4, Retry: dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 20 * time.Millisecond}}}}})
		results(t, fx.submit("p", 4))
		fx.stop(t, time.Second)
		if m := maxWhileFailing.Load(); m > 1 {
			t.Errorf("%d concurrent writes to a sink known to be failing (probe limit is 1)", m)
		}
	})
}
