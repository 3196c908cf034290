package dispatch_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
)

// After Drain returns nil, the daemon logs Stats; the last frames' done-callbacks
// may not have run yet, so Delivered+Failed < Submitted.
func TestStatsAddUpAfterDrain(t *testing.T) {
	bad := 0
	for range 300 {
		s := newScriptSink(nil)
		fx := start(t, zap.NewNop(), dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: s}}})
		fx.submit("p", 20)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := fx.d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if st := fx.d.Stats(); st.Delivered+st.Failed != st.Submitted {
			bad++
		}
		fx.stop(t, time.Second)
	}
	if bad > 0 {
		t.Errorf("%d/300: Stats right after a successful Drain did not add up", bad)
	}
}
