package dispatch

import (
	"fmt"
	"strings"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Options are one sink's delivery settings. Zero values take the defaults.
type Options struct {
	// MaxBatch is the most frames one Write carries (default 500).
	MaxBatch int
	// Linger is how long a partial batch may wait to fill. Zero writes as
	// soon as the sink is free, so batches grow only under load (group
	// commit): low latency at low rates, big batches at high rates.
	Linger time.Duration
	// MaxInflight is how many Writes may run at once (default 1).
	MaxInflight int
	// MaxPending caps the frames waiting for this sink (default 10,000).
	// When it is reached while the sink is healthy (just behind), Submit
	// waits for room: the read loop pauses and the kernel's and device's
	// buffers absorb the burst. While the sink is failing, a frame past the
	// cap fails for this sink with ErrBacklogFull, counted and logged, so a
	// dead sink never stalls a port or the other sinks.
	MaxPending int
	Retry      RetryPolicy
	// OpenSpool, when set, makes the lane store-and-forward: every frame
	// is appended to the spool (by Submit itself for a frame that comes
	// alone, unless the spool fsyncs each append; else in group commits,
	// one Append in flight) before it counts as taken, and the sink is fed
	// from the spool, which is acknowledged as deliveries complete. A
	// frame's future then resolves once the frame is on disk; its delivery
	// is the lane's business (retries, dead letters, metrics). Frames
	// gather on disk while the sink is busy; Linger holds a Read of fewer
	// than MaxBatch frames so that frames that trickle in go to the sink
	// together.
	//
	// Start calls it (it does I/O); until then accepted frames wait in
	// memory, within MaxPending. The dead-letter store receives the frames
	// the sink will never take (permanent errors, MaxAttempts, MaxAge);
	// when nil they are logged, counted and dropped. The Dispatcher closes
	// both (the store when it is an io.Closer).
	OpenSpool func() (*spool.Spool, DeadLetterStore, error)
}

// RetryPolicy says how retryable failures are retried: exponential backoff
// from Initial to Max with jitter (a wait in [d/2, d]), at least as long as
// a RetryAfter error asks.
type RetryPolicy struct {
	Initial     time.Duration // default 100ms
	Max         time.Duration // default 30s
	MaxAttempts int           // 0: no limit
	MaxAge      time.Duration // 0: no limit; older frames (by received_at) give up
}

func (o Options) withDefaults() Options {
	if o.MaxBatch <= 0 {
		o.MaxBatch = 500
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 1
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10_000
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 100 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 30 * time.Second
	}
	o.Retry.Max = max(o.Retry.Max, o.Retry.Initial)
	return o
}

// Target is a named sink with its delivery settings.
type Target struct {
	Name    string
	Sink    Sink
	Options Options
}

// Config is what New needs.
type Config struct {
	Targets []Target
	// Routes are rules tried in order (see Route). No routes and no
	// DefaultSinks: every frame goes to every sink.
	Routes []Route
	// DefaultSinks get the frames that no route matches.
	DefaultSinks []string
	// UnroutedSink, when there are no DefaultSinks, gets the frames that
	// no route matches. Such frames count in Stats.Unrouted; without an
	// unrouted sink they are dropped (their futures fail with ErrUnrouted)
	// and logged at a limited rate.
	UnroutedSink string
}

// Receipt is the value of a frame's future.
type Receipt struct {
	ID    serialcb.ID
	Port  string
	Seq   uint64
	Sinks int // sinks that acknowledged the frame
}

// SinkError is one sink's final failure for a frame.
type SinkError struct {
	Sink     string
	Attempts int
	Err      error
}

func (e *SinkError) Error() string {
	return fmt.Sprintf("sink %s: %v (attempts: %d)", e.Sink, e.Err, e.Attempts)
}

// Unwrap returns the sink's error.
func (e *SinkError) Unwrap() error { return e.Err }

// DeliveryError is the error of a frame that some sink did not take.
type DeliveryError struct {
	Delivered int // sinks that acknowledged it
	Failed    []*SinkError
}

func (e *DeliveryError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		parts[i] = f.Error()
	}
	return fmt.Sprintf("not delivered to %d of %d sinks: %s", len(e.Failed), len(e.Failed)+e.Delivered, strings.Join(parts, "; "))
}

// Unwrap returns the per-sink errors, for errors.Is and errors.As.
func (e *DeliveryError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f
	}
	return errs
}

// Stats are counters safe to read from any goroutine.
type Stats struct {
	Submitted, Delivered, Failed uint64
	// Unrouted counts frames that no route matched and no default route
	// took. Those sent to the unrouted sink count in Delivered or Failed
	// too; dropped ones count here only (dropping them is what the routes
	// say, not a failure).
	Unrouted uint64
	// Throttled counts the times Submit waited for a healthy sink's queue
	// to have room (back-pressure on a read loop).
	Throttled uint64
	Sinks     []SinkStats
}

// SinkStats are one sink's counters.
type SinkStats struct {
	Name                       string
	Delivered, Failed, Retried uint64
	Pending, Inflight          int64
	// Down is true while the sink fails (retrying with backoff) or hangs
	// (a write has not completed for a second).
	Down bool
	// Spooled counts frames appended to the sink's spool; DeadLettered
	// those given up and handed to the dead-letter store (or dropped when
	// there is none). Spool is the spool's own snapshot; nil without one.
	Spooled, DeadLettered uint64
	Spool                 *spool.Stats
	// SpoolFailing is true while appends to the spool fail (a broken or
	// full disk under drop-oldest with nothing left to drop).
	SpoolFailing bool
	// Latency counts delivered frames by read → acknowledged time.
	Latency LatencyHistogram
	// Syncs counts the fsyncs the sink itself made, for a sink that counts
	// them (a SyncCounter: SQLite's checkpoints); the spool's are in Spool.
	Syncs uint64
}

// SyncCounter is an optional interface of a Sink that counts the fsync
// calls it makes, for benchmarks.
type SyncCounter interface {
	Syncs() uint64
}
