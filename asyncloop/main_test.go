package asyncloop

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startLoop returns a started loop that is shut down (softly, with no
// deadline) when the test ends.
func startLoop(t testing.TB, opts Options) *Loop {
	t.Helper()
	l := New(opts)
	l.Start()
	t.Cleanup(func() {
		if err := l.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return l
}

// goid returns the current goroutine's id, to tell which goroutine ran a
// callback.
func goid() uint64 {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, err := strconv.ParseUint(s[:strings.IndexByte(s, ' ')], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// loopGoroutine returns the id of l's loop goroutine.
func loopGoroutine(t testing.TB, l *Loop) uint64 {
	t.Helper()
	ch := make(chan uint64, 1)
	if err := l.CallSoon(func() { ch <- goid() }); err != nil {
		t.Fatalf("CallSoon: %v", err)
	}
	return <-ch
}

// blocker is a handler that reports its start and then waits for release
// (or for its context when honourCtx is set).
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func newBlocker(n int) *blocker {
	return &blocker{started: make(chan struct{}, n), release: make(chan struct{})}
}

func (b *blocker) handler(ctx context.Context) (int, error) {
	b.started <- struct{}{}
	<-b.release
	return 1, nil
}

func (b *blocker) ctxHandler(ctx context.Context) (int, error) {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return 1, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
