//go:build !linux

package spool

import "os"

// mapSegment maps segments on Linux only (see mapwrite_linux.go); elsewhere
// appends are pwrites.
func mapSegment(*os.File, int64) []byte { return nil }

func copyToMap(m, b []byte, off int64) error { copy(m[off:], b); return nil }

func unmapSegment([]byte) {}
