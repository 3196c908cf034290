//go:build !(linux && (amd64 || arm64 || arm || 386 || riscv64 || loong64))

package spool

import "os"

// writeAtRaw is f.WriteAt here; see rawwrite_linux.go for why Linux differs.
func writeAtRaw(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) }
