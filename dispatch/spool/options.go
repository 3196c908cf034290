package spool

import (
	"errors"
	"fmt"
	"time"
)

// SyncMode says when appended records are forced to stable storage with
// fsync. See the package documentation for what each mode can lose.
type SyncMode int

const (
	// SyncBatch fsyncs every Append (one group commit) before it returns.
	// It is the default.
	SyncBatch SyncMode = iota
	// SyncInterval fsyncs at most every Options.SyncEvery from a background
	// goroutine; Append returns once the batch is in the page cache.
	SyncInterval
	// SyncNone never fsyncs records; the kernel writes them back when it
	// chooses. Close still fsyncs.
	SyncNone
)

// String returns the configuration name of m.
func (m SyncMode) String() string {
	switch m {
	case SyncBatch:
		return "batch"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	default:
		return fmt.Sprintf("SyncMode(%d)", int(m))
	}
}

// ParseSyncMode parses "batch", "interval" or "none".
func ParseSyncMode(s string) (SyncMode, error) {
	for _, m := range []SyncMode{SyncBatch, SyncInterval, SyncNone} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("spool: unknown sync mode %q (want batch, interval or none)", s)
}

// OverflowPolicy says what Append does when the spool would grow past
// Options.MaxBytes, or when the disk is full.
type OverflowPolicy int

const (
	// DropOldest deletes whole segments, oldest first, to make room. The
	// frames lost are counted in Stats.DroppedFrames and logged at error
	// level. It is the default.
	DropOldest OverflowPolicy = iota
	// Block makes Append return an error matching ErrFull and write
	// nothing; the caller applies back-pressure (stops reading the port and
	// lets the device's buffer fill) and retries after Ack frees space.
	Block
)

// String returns the configuration name of p.
func (p OverflowPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case Block:
		return "block"
	default:
		return fmt.Sprintf("OverflowPolicy(%d)", int(p))
	}
}

// ParseOverflowPolicy parses "drop-oldest" or "block".
func ParseOverflowPolicy(s string) (OverflowPolicy, error) {
	for _, p := range []OverflowPolicy{DropOldest, Block} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("spool: unknown overflow policy %q (want drop-oldest or block)", s)
}

// Defaults applied by Open to zero fields of Options.
const (
	DefaultSegmentSize = 8 << 20
	DefaultSyncEvery   = time.Second
	// minSegmentSize keeps tiny caps from making one segment per record.
	minSegmentSize = 256
)

// Options configures a Spool. Only Dir is required.
type Options struct {
	// Dir holds the spool's files; it is created if missing. One spool per
	// directory: Open locks it.
	Dir string
	// SegmentSize is the size at which the active segment file is closed
	// and a new one started (default 8 MiB, or an eighth of the
	// filesystem when that is smaller and MaxBytes is 0). A batch is never split, so a
	// segment can exceed it by one batch. Space is reclaimed a whole
	// segment at a time. With MaxBytes set it is lowered to MaxBytes/4 so
	// that dropping a segment frees at most a quarter of the cap.
	SegmentSize int64
	// MaxBytes caps the bytes of all segment files (acknowledged records
	// still in a segment count until the segment is deleted). 0 means no
	// cap other than the disk.
	MaxBytes int64
	// Overflow is applied when MaxBytes would be exceeded or the disk is
	// full (default DropOldest).
	Overflow OverflowPolicy
	// Sync is the fsync policy (default SyncBatch).
	Sync SyncMode
	// SyncEvery is the fsync period of SyncInterval (default 1 s).
	SyncEvery time.Duration
}

// ErrBadOptions is wrapped by Open for invalid Options.
var ErrBadOptions = errors.New("spool: bad options")

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: Dir is empty", ErrBadOptions)
	}
	if o.SegmentSize < 0 || o.MaxBytes < 0 || o.SyncEvery < 0 {
		return o, fmt.Errorf("%w: negative SegmentSize, MaxBytes or SyncEvery", ErrBadOptions)
	}
	if o.Sync < SyncBatch || o.Sync > SyncNone {
		return o, fmt.Errorf("%w: unknown %v", ErrBadOptions, o.Sync)
	}
	if o.Overflow < DropOldest || o.Overflow > Block {
		return o, fmt.Errorf("%w: unknown %v", ErrBadOptions, o.Overflow)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.MaxBytes > 0 && o.SegmentSize > o.MaxBytes/4 {
		o.SegmentSize = o.MaxBytes / 4
	}
	if o.SegmentSize < minSegmentSize {
		o.SegmentSize = minSegmentSize
	}
	if o.MaxBytes > 0 && o.MaxBytes < 2*o.SegmentSize {
		return o, fmt.Errorf("%w: MaxBytes %d is below two segments of %d bytes", ErrBadOptions, o.MaxBytes, o.SegmentSize)
	}
	if o.SyncEvery == 0 {
		o.SyncEvery = DefaultSyncEvery
	}
	return o, nil
}
