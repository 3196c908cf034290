package dispatch_test

import (
	"runtime"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// R3: with OnFull FailFast, every rejected frame's future goes to the loop's
// unbounded completion list; while the loop goroutine is behind, memory grows
// with the input, not with any configured cap.
func TestHandoffRejectionsUseBoundedMemory(t *testing.T) {
	loop := asyncloop.New(asyncloop.Options{QueueSize: 64, Workers: 4, OnFull: asyncloop.FailFast})
	loop.Start()
	d, _ := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "s", Sink: newScriptSink(nil)}}}, zap.NewNop())
	hold, held := make(chan struct{}), make(chan struct{})
	_ = loop.CallSoon(func() { close(held); <-hold }) // a slow stretch of the loop goroutine
	<-held
	var gen serialcb.IDGen
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	payload := make([]byte, 64)
	for i := range 200_000 {
		now := time.Now()
		d.Submit(serialcb.Frame{ID: gen.New(now), Port: "p", Seq: uint64(i), ReceivedAt: now, Payload: payload})
	}
	after := heap()
	t.Logf("heap grew by %.1f MB for 200k rejected frames (queue cap 64)", float64(after-before)/1e6)
	close(hold)
	_ = loop.Shutdown(t.Context())
	if after-before > 20<<20 {
		t.Errorf("memory not bounded by the queue size")
	}
}
