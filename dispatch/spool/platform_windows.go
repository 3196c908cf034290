package spool

import (
	"os"

	"golang.org/x/sys/windows"
)

// errWouldBlock is what lockDir returns when another process holds the lock.
var errWouldBlock = windows.ERROR_LOCK_VIOLATION

// lockDir takes an exclusive lock on the first byte of the spool's lock
// file, failing at once if another process holds it; Windows releases it
// when the handle is closed or the process dies.
func lockDir(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}

// diskFree is the bytes this user may still write on the volume that holds
// dir (quotas included).
func diskFree(dir string) (int64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return int64(avail), nil
}

// syncDir does nothing on Windows: a directory handle cannot be flushed
// (FlushFileBuffers needs write access, which a directory does not give),
// and NTFS journals the renames and creations that syncDir makes durable
// elsewhere.
func syncDir(string) error { return nil }
