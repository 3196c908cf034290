//go:build unix

package bench

import (
	"runtime"
	"syscall"
	"time"
)

// rusage returns the process's CPU time (user + system) and its peak
// resident set size in KiB.
func rusage() (cpu time.Duration, maxRSSKiB int64, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, err
	}
	// Maxrss is KiB on Linux (bytes on Darwin) and an int32 on 32-bit
	// platforms.
	rss := int64(ru.Maxrss)
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		rss /= 1024
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rss, nil
}
