// Package vport makes virtual serial ports from pseudo-terminals, inside the
// process: a Pair is a pty whose slave end is what a serial reader opens
// (Path) and whose master end plays the device (Write, Read). It replaces
// `socat -d -d pty,raw,echo=0,link=PATH -` in tests, benchmarks and the demo
// command, with no external tool.
//
// Both ends are raw: every byte value, including NUL, 0xff, '\r' and the
// terminal control characters, passes through unchanged.
//
// Pseudo-terminals exist on Linux only here; on other systems Open and
// OpenLink return an error wrapping errors.ErrUnsupported.
package vport
