//go:build !linux

package main

// heldExclusively reports false: only Linux can ask a tty whether it is
// held exclusively.
func heldExclusively(string) (bool, error) { return false, nil }
