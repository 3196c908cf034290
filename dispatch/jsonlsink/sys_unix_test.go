//go:build unix

package jsonlsink

import (
	"os"
	"syscall"
)

func currentUmask() os.FileMode {
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	return os.FileMode(umask)
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }
