//go:build unix

package daemon

import (
	"os"
	"syscall"
)

// raiseHangup sends SIGHUP to the test process.
func raiseHangup() error { return syscall.Kill(os.Getpid(), syscall.SIGHUP) }
