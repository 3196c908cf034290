//go:build linux && (amd64 || arm64 || riscv64 || loong64)

package spool

// pwriteOffsetArgs places pwrite64's offset in its argument registers.
func pwriteOffsetArgs(off int64) (a4, a5, a6 uintptr) { return uintptr(off), 0, 0 }
