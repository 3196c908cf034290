//go:build unix

package spool

import (
	"os"
	"syscall"
)

// errWouldBlock is what lockDir returns when another process holds the lock.
var errWouldBlock = syscall.EWOULDBLOCK

// lockDir takes an exclusive, non-blocking lock on the spool's lock file; the
// lock goes with the file descriptor when the file is closed or the process
// dies.
func lockDir(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// diskFree is the bytes this user may still write on the filesystem that
// holds dir.
func diskFree(dir string) (int64, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * int64(fs.Bsize), nil // field types differ by platform
}
