//go:build !unix && !windows

package spool

import (
	"errors"
	"os"
	"runtime"
)

// errNotSupported is what the platform seams below return until this
// platform has its own implementation (as Unix and Windows do).
var errNotSupported = errors.New("spool: not supported on " + runtime.GOOS + " yet: the spool needs a file lock")

// errWouldBlock is what lockDir returns when another process holds the lock.
var errWouldBlock = errors.New("spool: locked by another process")

// lockDir would take an exclusive, non-blocking lock on the spool's lock
// file; on this platform it fails, so a spool never opens unlocked.
func lockDir(*os.File) error { return errNotSupported }

// diskFree would be the free space of the filesystem that holds dir;
// without it the spool keeps its default segment size.
func diskFree(string) (int64, error) { return 0, errNotSupported }
