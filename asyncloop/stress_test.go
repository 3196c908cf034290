package asyncloop

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stress: concurrent Submit / Cancel / Resolve / AddDoneCallback / CallLater
// racing Shutdown (soft or hard). Every future must be done, every callback
// must run exactly once, and the counters must add up.
func TestStressSubmitCancelResolveShutdown(t *testing.T) {
	for iter := range 200 {
		hard := iter%2 == 1
		l := New(Options{Workers: 4, QueueSize: 16, BlockTimeout: 20 * time.Millisecond})
		l.Start()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var futs []*Future[int]
		var cbRuns sync.Map
		var cbTotal atomic.Int64
		for p := range 8 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(iter), uint64(p)))
				for i := range 200 {
					f := Submit(l, func(ctx context.Context) (int, error) {
						if r := i % 5; r == 0 {
							select {
							case <-ctx.Done():
								return 0, ctx.Err()
							case <-time.After(time.Millisecond):
							}
						}
						if i%7 == 0 {
							return 0, errors.New("x")
						}
						return i, nil
					})
					cb := func(f *Future[int]) {
						_ = f.Err()
						if _, loaded := cbRuns.LoadOrStore(f, true); loaded {
							t.Errorf("callback ran twice")
						}
						cbTotal.Add(1)
					}
					f.AddDoneCallback(cb)
					switch r.IntN(10) {
					case 0:
						f.Cancel()
					case 1:
						f.Resolve(-1, nil)
					}
					mu.Lock()
					futs = append(futs, f)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		ctx := context.Background()
		var cancel context.CancelFunc = func() {}
		if hard {
			ctx, cancel = context.WithTimeout(ctx, time.Millisecond)
		}
		_ = l.Shutdown(ctx)
		cancel()
		wg.Wait()
		for _, f := range futs {
			if f.Err() == ErrNotDone {
				t.Fatalf("iter %d: future not done after Shutdown", iter)
			}
		}
		if got := cbTotal.Load(); got != int64(len(futs)) {
			t.Fatalf("iter %d: %d callbacks for %d futures", iter, got, len(futs))
		}
		s := l.Stats()
		if s.Completed+s.Failed != s.Submitted || s.Submitted+s.Rejected != uint64(len(futs)) || s.Running != 0 {
			t.Fatalf("iter %d: stats %+v for %d futures", iter, s, len(futs))
		}
	}
}

// Stats right after Shutdown returns can show Completed+Failed > Submitted.
func TestStatsConsistentAfterShutdown(t *testing.T) {
	bad := 0
	for range 2000 {
		l := New(Options{Workers: 2})
		l.Start()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { Submit(l, okHandler) })
		}
		_ = l.Shutdown(context.Background())
		s := l.Stats()
		if s.Completed+s.Failed > s.Submitted {
			bad++
		}
		wg.Wait()
	}
	if bad > 0 {
		t.Errorf("%d/2000 snapshots after Shutdown had Completed+Failed > Submitted", bad)
	}
}
