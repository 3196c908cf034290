package dispatch

import (
	"context"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/serialcb"
)

// batch is one Write's frames. A memory lane's batch carries the items
// whose futures wait on it; a spooled lane's carries the spool chunk its
// frames were read from.
type batch struct {
	items    []*item
	frames   []*serialcb.Frame
	chunk    *chunk
	attempts int
}

// subset returns a batch of the frames at idx, keeping the attempt count.
func (b *batch) subset(idx []int) *batch {
	if len(idx) == len(b.frames) {
		return b
	}
	sb := &batch{frames: make([]*serialcb.Frame, len(idx)), chunk: b.chunk, attempts: b.attempts}
	if b.items != nil {
		sb.items = make([]*item, len(idx))
	}
	for j, i := range idx {
		sb.frames[j] = b.frames[i]
		if b.items != nil {
			sb.items[j] = b.items[i]
		}
	}
	return sb
}

func seq(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// start submits one Write of b to the loop's workers.
func (l *lane) start(b *batch) {
	if l.inflight == 0 {
		l.progress.Store(time.Now().UnixNano())
	}
	b.attempts++
	l.setInflight(1)
	fut := asyncloop.Submit(l.d.loop, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, l.sink.Write(ctx, b.frames)
	})
	fut.AddDoneCallback(func(f *asyncloop.Future[struct{}]) { l.finish(b, f.Err()) })
}

// stopped settles a batch the lane will not write because the dispatcher
// is stopping: a memory lane's frames fail with ErrStopped; a spooled
// lane's stay unacknowledged in the spool for the next start.
func (l *lane) stopped(b *batch) {
	if b.chunk == nil {
		l.fail(b.items, b.attempts, ErrStopped)
	}
}
