//go:build linux

package spool

import (
	"fmt"
	"os"
	"runtime/debug"
	"syscall"
)

// maxMapSize bounds the segments that are mapped: a 32-bit board has a few
// hundred MiB of address space to spare, and the default segment is 8 MiB.
const maxMapSize = 64 << 20

// mapSegment preallocates the new segment f to size bytes and maps it
// shared, so that an append is a copy into the page cache instead of a
// pwrite. It returns nil, leaving f as it was, where that cannot be done
// (no fallocate on this file system, a full disk, no address space):
// appends then take the pwrite path.
//
// Why: a pwrite that extends a file changes its size and mtime, which ext4
// journals on every append; at 180 frames/s that was ~15 % of serialcbd's
// CPU. Stores into a shared mapping dirty the page (and update mtime) once
// per page and write-back, the page cache is the same one pwrite fills
// (readers' preads and fsync see the stores; a kill -9 loses nothing), and
// fallocate reserves the blocks first, so a full disk is an error here and
// never a SIGBUS at a store. What is left of the preallocation past the
// last record is zeros: sealing cuts it off (sealMap), and recovery takes a
// zero tail for the clean end it is (scanSegment).
func mapSegment(f *os.File, size int64) []byte {
	if size <= segHeaderSize || size > maxMapSize {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var m []byte
	_ = rc.Control(func(fd uintptr) {
		if syscall.Fallocate(int(fd), 0, 0, size) != nil {
			_ = syscall.Ftruncate(int(fd), segHeaderSize) // a partial allocation
			return
		}
		b, err := syscall.Mmap(int(fd), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			_ = syscall.Ftruncate(int(fd), segHeaderSize)
			return
		}
		// No readahead on a fault: it would zero-fill up to 32 pages past
		// the one stored to, which a line at 10 frames/s reaches minutes
		// later, if the kernel has not reclaimed them by then (seen: at
		// 10 frames/s the mapped stores' share of the CPU fell from 3.9 %
		// to 2.3 %, readahead's from 2.3 % to 0.4 %; max rate unchanged
		// within the noise).
		_ = syscall.Madvise(b, syscall.MADV_RANDOM)
		m = b
	})
	return m
}

// copyToMap stores b at off in the mapping m. A fault (the file truncated
// under the spool by someone else, an I/O error reading a page back) is
// returned as an error instead of killing the process.
func copyToMap(m, b []byte, off int64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("spool: store into mapped segment faulted (its file was cut short or a page cannot be read back): %v", r)
		}
	}()
	copy(m[off:], b)
	return nil
}

func unmapSegment(m []byte) { _ = syscall.Munmap(m) }
