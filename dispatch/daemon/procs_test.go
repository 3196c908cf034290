package daemon

import (
	"runtime"
	"testing"
	"time"
)

// The governor drops to one P when a window of procsWindow saw fewer than
// procsLow frames (an idle gap counts as such a window), and takes every P
// back past procsHigh frames in a window, without waiting for it to end.
func TestProcGovernor(t *testing.T) {
	max := runtime.GOMAXPROCS(0)
	if max < 2 {
		t.Skip("GOMAXPROCS is 1: nothing to govern")
	}
	t.Cleanup(func() { runtime.GOMAXPROCS(max) })
	g := &procGovernor{max: max}
	t0 := time.Unix(1000, 0)
	g.observe(t0) // closes the empty window before the first frame
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after a first frame, want 1", n)
	}
	for i := range procsHigh + 1 {
		g.observe(t0.Add(time.Duration(i) * time.Microsecond))
	}
	if n := runtime.GOMAXPROCS(0); n != max {
		t.Fatalf("GOMAXPROCS %d after %d frames in a window, want %d", n, procsHigh+1, max)
	}
	// A busy window ends busy: every P stays.
	g.observe(t0.Add(procsWindow + time.Millisecond))
	if n := runtime.GOMAXPROCS(0); n != max {
		t.Fatalf("GOMAXPROCS %d after a busy window, want %d", n, max)
	}
	// A quiet window: one P.
	g.observe(t0.Add(2*procsWindow + 2*time.Millisecond))
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after a quiet window, want 1", n)
	}
	g.restore()
	if n := runtime.GOMAXPROCS(0); n != max {
		t.Fatalf("GOMAXPROCS %d after restore, want %d", n, max)
	}
}

// With GOMAXPROCS set in the environment the governor does nothing.
func TestProcGovernorRespectsEnvironment(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	if g := newProcGovernor(); g.max != 0 {
		t.Fatalf("governor enabled (max %d) although GOMAXPROCS is set", g.max)
	}
}
