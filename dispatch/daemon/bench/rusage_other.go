//go:build !unix

package bench

import (
	"errors"
	"runtime"
	"time"
)

// rusage would return the process's CPU time and peak resident set size;
// on this platform the report shows neither.
func rusage() (cpu time.Duration, maxRSSKiB int64, err error) {
	return 0, 0, errors.New("bench: CPU time and peak RSS are not supported on " + runtime.GOOS + " yet")
}
