//go:build !linux

package bench

import "time"

// threadCPU is not measured on this platform: the writer's CPU stays in the
// process's figure.
func threadCPU() (time.Duration, bool) { return 0, false }

// monoNow is not shared between processes here: writers stay in process.
func monoNow() (int64, bool) { return 0, false }

// diskWrites is not measured on this platform.
func diskWrites() (int64, bool) { return 0, false }
