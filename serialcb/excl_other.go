//go:build !linux

package serialcb

// HeldExclusively reports false: only Linux can ask a tty whether it is
// held exclusively.
func HeldExclusively(string) (bool, error) { return false, nil }
