package daemon

import (
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// At the rates serial devices send (1–1,000 frames/s) each frame wakes a
// few goroutines in turn: the read loop, the event loop, a worker for the
// spool append and back. With two or more Ps the runtime hands each wake-up
// to another thread, which spins looking for work before it sleeps again:
// measured at 180 frames/s, three hand-offs per frame cost 222 µs of CPU
// with GOMAXPROCS=2 and 39 µs with GOMAXPROCS=1, against 44 µs for the bare
// read loop (docs/PERFORMANCE.md). So while frames trickle in, the daemon
// runs on one P, and it takes every P back as soon as they flow.
const (
	// procsWindow is the period over which the frame rate is judged.
	procsWindow = time.Second
	// procsLow is the rate (frames per procsWindow) under which one P is
	// enough: at ~100 µs per frame, 1,000 frames/s is a tenth of a core.
	procsLow = 1000
	// procsHigh is the count within one window past which every P is
	// taken back at once, without waiting for the window to end.
	procsHigh = 2000
)

// procGovernor sets GOMAXPROCS from the frame rate it observes. It runs no
// timer: it judges the rate when a frame arrives, so an idle daemon stays
// idle. The zero value is disabled; newProcGovernor enables it.
type procGovernor struct {
	max   int          // GOMAXPROCS to restore; 0 = disabled
	start atomic.Int64 // UnixNano at which the current window began
	n     atomic.Int64 // frames in the current window
	low   atomic.Bool  // GOMAXPROCS is 1
}

// newProcGovernor returns a governor, disabled when there is only one P
// anyway or the GOMAXPROCS environment variable sets the count.
func newProcGovernor() *procGovernor {
	g := &procGovernor{}
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return g
	}
	if n := runtime.GOMAXPROCS(0); n > 1 {
		g.max = n
	}
	return g
}

// observe counts a frame read at now; any goroutine.
func (g *procGovernor) observe(now time.Time) {
	if g == nil || g.max == 0 {
		return
	}
	n := g.n.Add(1)
	if n > procsHigh && g.low.Load() && g.low.CompareAndSwap(true, false) {
		runtime.GOMAXPROCS(g.max)
	}
	t := now.UnixNano()
	s := g.start.Load()
	if t-s < int64(procsWindow) || !g.start.CompareAndSwap(s, t) {
		return
	}
	// This frame closes the window (after an idle gap, a long one: the
	// rate was low). It starts the next.
	g.n.Add(-n)
	if n < procsLow && !g.low.Load() && g.low.CompareAndSwap(false, true) {
		runtime.GOMAXPROCS(1)
	}
}

// restore gives back every P; for a stop, so that draining runs on all.
func (g *procGovernor) restore() {
	if g != nil && g.max > 0 && g.low.CompareAndSwap(true, false) {
		runtime.GOMAXPROCS(g.max)
	}
}
