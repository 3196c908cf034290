//go:build linux && arm

package spool

// pwriteOffsetArgs places pwrite64's offset as the ARM EABI wants it: a
// 64-bit argument starts at an even register, so a4 is padding.
func pwriteOffsetArgs(off int64) (a4, a5, a6 uintptr) {
	return 0, uintptr(uint32(off)), uintptr(uint32(off >> 32))
}
