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
	dev, err := openDevices(fl)
	if err != nil {
		return Result{}, err
	}
	defer dev.close()
	cfg := &configs.Config{DrainTimeout: 10 * time.Second}
	if fl.Spool {
		dir, err := os.MkdirTemp("", "serialcbd-bench-state-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		cfg.StateDir = dir
	}
	for i, path := range dev.paths() {
		cfg.Ports = append(cfg.Ports, configs.Port{Name: fmt.Sprintf("bench%d", i), Path: path, Baud: 115200})
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
	if c, ok := dev.(*child); ok {
		acks.base = c.baseTime()
	}
	onDone := acks.done

	var res Result
	err = d.RunWith(ctx, func(f serialcb.Frame) {
		acks.stamp(f)
		d.Submit(f).AddDoneCallback(onDone)
	}, func(ctx context.Context) error {
		st0 := d.Stats()
		m0 := readMeter()
		start := time.Since(acks.base)
		sent, werr := dev.write(ctx, acks.base)
		res.Sent = sent
		acks.wait(ctx, sent)
		elapsed := time.Duration(acks.last.Load()) - start
		if acks.completed.Load() < int64(sent) {
			elapsed = time.Since(acks.base) - start
		}
		if fl.Spool && fl.Rate > 0 {
			// Count the delivery of the last frames too: an open-loop
			// run's cost is everything its frames caused.
			waitDelivered(ctx, d)
		}
		m1 := readMeter()
		st1 := d.Stats()
		res.Delivered = int(acks.delivered.Load())
		res.Failed = int(acks.failed.Load())
		res.finish(fl, m0, m1, elapsed, &acks.hist)
		syncs, renames := diskOps(st0, st1)
		res.costs(m0, m1, dev, syncs, renames)
		return werr
	})
	return res, err
}

// waitDelivered returns once every sink's spool is empty, ctx ends, or
// nothing is delivered for benchStall. It polls (a benchmark may).
func waitDelivered(ctx context.Context, d *daemon.Daemon) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last, since := uint64(0), time.Now()
	for {
		left, delivered := uint64(0), uint64(0)
		for _, s := range d.Stats().Sinks {
			delivered += s.Delivered
			if s.Spool != nil {
				left += s.Spool.Frames
			}
		}
		if left == 0 {
			return
		}
		if delivered != last {
			last, since = delivered, time.Now()
		} else if time.Since(since) > benchStall {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// diskOps returns the fsyncs (spools and sinks) and renames (spools)
// between two snapshots.
func diskOps(a, b dispatch.Stats) (syncs, renames uint64) {
	for i, s := range b.Sinks {
		if i >= len(a.Sinks) {
			break
		}
		syncs += s.Syncs - a.Sinks[i].Syncs
		if s.Spool != nil && a.Sinks[i].Spool != nil {
			syncs += s.Spool.Syncs - a.Sinks[i].Spool.Syncs
			renames += s.Spool.Renames - a.Sinks[i].Spool.Renames
		}
	}
	return syncs, renames
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
	want      atomic.Int64 // frames to wait for; done signals progress at it
	progress  chan struct{}
}

type tsSlot struct {
	seq uint64
	ts  int64
}

const ackRing = 1 << 16

func newAckRecorder(fl Options) *ackRecorder {
	a := &ackRecorder{portIdx: make(map[string]int), progress: make(chan struct{}, 1)}
	a.want.Store(int64(fl.Frames))
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
	// Only the last frame wakes wait: a wake-up per frame would be
	// counted as the pipeline's CPU (at 10 frames/s, a tenth of it).
	if a.completed.Add(1) >= a.want.Load() {
		select {
		case a.progress <- struct{}{}:
		default:
		}
	}
}

// wait returns once want frames completed, ctx ends, or nothing completes
// for benchStall.
func (a *ackRecorder) wait(ctx context.Context, want int) {
	a.want.Store(int64(want))
	stall := time.NewTimer(benchStall)
	defer stall.Stop()
	seen := a.completed.Load()
	for seen < int64(want) {
		select {
		case <-a.progress:
		case <-stall.C:
			if a.completed.Load() == seen {
				return
			}
			stall.Reset(benchStall)
		case <-ctx.Done():
			return
		}
		seen = a.completed.Load()
	}
}
