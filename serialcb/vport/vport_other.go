//go:build !linux

package vport

import (
	"errors"
	"fmt"
	"runtime"
)

var errUnsupported = fmt.Errorf("vport: pseudo-terminal pairs are not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Pair is one pseudo-terminal; on this system none can be made.
type Pair struct{}

// Open fails with an error wrapping errors.ErrUnsupported on this system.
func Open() (*Pair, error) { return nil, errUnsupported }

// OpenLink fails with an error wrapping errors.ErrUnsupported on this system.
func OpenLink(path string) (*Pair, error) { return nil, errUnsupported }

// Path returns "".
func (p *Pair) Path() string { return "" }

// SlavePath returns "".
func (p *Pair) SlavePath() string { return "" }

// Write fails: there is no pseudo-terminal on this system.
func (p *Pair) Write(b []byte) (int, error) { return 0, errUnsupported }

// Read fails: there is no pseudo-terminal on this system.
func (p *Pair) Read(b []byte) (int, error) { return 0, errUnsupported }

// Close does nothing.
func (p *Pair) Close() error { return nil }
