//go:build linux && 386

package spool

// pwriteOffsetArgs places pwrite64's offset as i386 wants it: low word
// first, in the next two registers.
func pwriteOffsetArgs(off int64) (a4, a5, a6 uintptr) {
	return uintptr(uint32(off)), uintptr(uint32(off >> 32)), 0
}
