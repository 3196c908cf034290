package bench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb"
)

// benchDaemon runs the daemon's pipeline on fresh virtual ports: the
// read loops submit each frame to the dispatcher, and a done-callback on its
// future (run on the event loop, one at a time) records the latency from the
// frame's timestamp to the acknowledgement of every routed sink.
func runPipeline(ctx context.Context, fl Options, sink configs.Sink, log *zap.Logger) (Result, error) {
	pairs, err := openPairs(fl.Ports)
	if err != nil {
		return Result{}, err
	}
	defer closePairs(pairs)
	cfg := &configs.Config{DrainTimeout: 10 * time.Second}
	if fl.Spool {
		dir, err := os.MkdirTemp("", "serialcbd-bench-state-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		cfg.StateDir = dir
	}
	for i, p := range pairs {
		cfg.Ports = append(cfg.Ports, configs.Port{Name: fmt.Sprintf("bench%d", i), Path: p.Path(), Baud: 115200})
	}
	cfg.Sinks = []configs.Sink{sink}
	if err := cfg.Validate(); err != nil {
		return Result{}, daemon.Usagef("--sink %q: %v", fl.Sink, err)
	}
	d, err := daemon.New(cfg, log, daemon.Options{})
	if err != nil {
		return Result{}, err
	}
	acks := newAckRecorder(fl)
	acks.base = time.Now() // before any goroutine that reads it starts
	onDone := acks.done

	var res Result
	err = d.RunWith(ctx, func(f serialcb.Frame) {
		acks.stamp(f)
		d.Submit(f).AddDoneCallback(onDone)
	}, func(ctx context.Context) error {
		m0 := readMeter()
		start := time.Since(acks.base)
		sent, werr := writeAll(ctx, pairs, fl, acks.base)
		res.Sent = sent
		acks.wait(ctx, sent)
		elapsed := time.Duration(acks.last.Load()) - start
		if acks.completed.Load() < int64(sent) {
			elapsed = time.Since(acks.base) - start
		}
		m1 := readMeter()
		res.Delivered = int(acks.delivered.Load())
		res.Failed = int(acks.failed.Load())
		res.finish(fl, m0, m1, elapsed, &acks.hist)
		return werr
	})
	return res, err
}

// ackRecorder keeps each in-flight frame's send time, indexed by port and
// sequence number in a ring, so that the done-callback needs no per-frame
// closure; the ring is larger than the frames a port can have in flight
// (the sink's queue cap), and a slot taken by a later frame is detected.
type ackRecorder struct {
	base      time.Time
	portIdx   map[string]int
	rings     [][]tsSlot
	hist      histogram // loop goroutine only
	completed atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	unmatched atomic.Int64
	last      atomic.Int64 // ns since base of the latest acknowledgement
	progress  chan struct{}
}

type tsSlot struct {
	seq uint64
	ts  int64
}

const ackRing = 1 << 16

func newAckRecorder(fl Options) *ackRecorder {
	a := &ackRecorder{portIdx: make(map[string]int), progress: make(chan struct{}, 1)}
	for i := range fl.Ports {
		a.portIdx[fmt.Sprintf("bench%d", i)] = i
		a.rings = append(a.rings, make([]tsSlot, min(ackRing, share(fl.Frames, fl.Ports, i)+1)))
	}
	return a
}

// stamp runs on the port's read loop, before Submit hands the frame over.
func (a *ackRecorder) stamp(f serialcb.Frame) {
	r := a.rings[a.portIdx[f.Port]]
	r[f.Seq%uint64(len(r))] = tsSlot{seq: f.Seq, ts: parseTS(f.Payload)}
}

// done runs on the event loop goroutine, one call at a time.
func (a *ackRecorder) done(fut *asyncloop.Future[dispatch.Receipt]) {
	now := int64(time.Since(a.base))
	if fut.Err() != nil {
		a.failed.Add(1)
	} else {
		a.delivered.Add(1)
		rc, _ := fut.Result(context.Background())
		if i, ok := a.portIdx[rc.Port]; ok {
			r := a.rings[i]
			if s := r[rc.Seq%uint64(len(r))]; s.seq == rc.Seq {
				a.hist.record(now - s.ts)
			} else {
				a.unmatched.Add(1)
			}
		}
	}
	a.last.Store(now)
	a.completed.Add(1)
	select {
	case a.progress <- struct{}{}:
	default:
	}
}

// wait returns once want frames completed, ctx ends, or nothing completes
// for benchStall.
func (a *ackRecorder) wait(ctx context.Context, want int) {
	stall := time.NewTimer(benchStall)
	defer stall.Stop()
	for a.completed.Load() < int64(want) {
		select {
		case <-a.progress:
			stall.Reset(benchStall)
		case <-stall.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
