package asyncloop

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// waitAllIdle waits until every worker has gone back to the idle list.
func waitAllIdle(l *Loop) {
	for {
		l.idleMu.Lock()
		n := len(l.idle)
		l.idleMu.Unlock()
		if n == l.opts.Workers {
			return
		}
		runtime.Gosched()
	}
}

// Tasks that come one at a time run on the worker that was idle last, not
// in turn on every worker of the pool: its stack is grown and warm.
func TestIdleWorkerReused(t *testing.T) {
	l := New(Options{Workers: 8})
	l.Start()
	defer l.Shutdown(context.Background())
	seen := map[string]int{}
	for range 40 {
		waitAllIdle(l)
		id, err := Submit(l, func(context.Context) (string, error) { return goroutineID(), nil }).Result(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		seen[id]++
	}
	if len(seen) != 1 {
		t.Fatalf("40 tasks, one at a time, ran on %d workers: %v; want 1", len(seen), seen)
	}
}

// With every worker busy, tasks wait in the shared queue and the workers
// take them as they finish; after Shutdown nothing is left unrun.
func TestHandOffAndQueueTogether(t *testing.T) {
	l := New(Options{Workers: 4, QueueSize: 1024})
	l.Start()
	release := make(chan struct{})
	var futs []*Future[int]
	for i := range 400 {
		futs = append(futs, Submit(l, func(context.Context) (int, error) {
			if i < 4 {
				<-release
			}
			return i, nil
		}))
	}
	close(release)
	for i, f := range futs {
		v, err := f.Result(context.Background())
		if err != nil || v != i {
			t.Fatalf("task %d: %d, %v", i, v, err)
		}
	}
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
