//go:build linux && (amd64 || arm64 || arm || 386 || riscv64 || loong64)

package spool

import (
	"os"
	"syscall"
	"unsafe"
)

// rawWriteMax bounds the appends written with writeAtRaw. At the rates
// devices send, an append is one frame; bigger group commits come from a
// busy line and take the ordinary path.
const rawWriteMax = 16 << 10

// writeAtRaw is f.WriteAt for a small append made with RawSyscall, that
// is without telling Go's scheduler that the thread enters a syscall.
//
// Why: os.File.WriteAt goes through entersyscall, which wakes the
// runtime's sysmon thread whenever it sleeps (and at 1–200 frames/s it
// always does), so that sysmon can take the P back should the call block.
// That wake-up and sysmon's 20 µs polls until the process is idle again
// were 2–3 of the ~3.5 context switches a spooled frame cost at 180
// frames/s. A pwrite of a few hundred bytes at the end of a file whose
// last page was just written lands in the page cache; it blocks only
// under write-back throttling or a stalled journal, and then holds its P
// (with one P: the process) for as long, as a write on any thread would
// hold the spool's appends anyway.
func writeAtRaw(f *os.File, b []byte, off int64) (int, error) {
	if len(b) == 0 || len(b) > rawWriteMax {
		return f.WriteAt(b, off)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return f.WriteAt(b, off)
	}
	done := 0
	var errno syscall.Errno
	cerr := rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			a4, a5, a6 := pwriteOffsetArgs(off + int64(done))
			n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITE64, fd,
				uintptr(unsafe.Pointer(&b[done])), uintptr(len(b)-done), a4, a5, a6)
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				errno = e
				break
			}
			if n == 0 {
				errno = syscall.EIO // no progress: not a regular file's behaviour
				break
			}
			done += int(n)
		}
		return true
	})
	if cerr != nil {
		return done, cerr
	}
	if errno != 0 {
		return done, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
	}
	return done, nil
}
