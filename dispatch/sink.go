// Package dispatch routes frames to sinks and owns everything between the
// hand-off from a read loop and a sink's acknowledgement: per-sink queues,
// batching, retries with backoff, and the outcome of every frame.
//
// Sinks live in subpackages (httpsink, sqlsink, jsonlsink) and implement
// Sink. They report failures with the classified errors of this package;
// the retry policy is applied here, never inside a sink.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Sink delivers batches of frames to one destination.
//
// Write is called from one goroutine at a time per call, but several calls may
// run concurrently when the sink's lane allows more than one batch in flight.
// A nil return acknowledges every frame of the batch. An error applies to the
// whole batch unless it is (or wraps) a *BatchError, which gives each frame
// its own outcome. Errors are retried unless classified as permanent (see
// Permanent); RetryAfter asks for a minimum wait. Write must return promptly
// when ctx is cancelled.
//
// Close releases the sink's resources once no Write is running.
type Sink interface {
	Write(ctx context.Context, batch []*serialcb.Frame) error
	Close() error
}

// ErrPermanent marks an error that retrying cannot fix: a 4xx answer, a row
// the database rejects. Match it with errors.Is.
var ErrPermanent = errors.New("permanent failure")

// PermanentError wraps an error that must not be retried.
type PermanentError struct{ Err error }

// Permanent marks err as not retryable. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Is reports that a PermanentError matches ErrPermanent.
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }

// RetryAfterError is a retryable error with a minimum wait requested by the
// destination (HTTP Retry-After, a broker's back-off hint).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

// RetryAfter marks err as retryable no sooner than after d.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, After: d}
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// BatchError gives each frame of a batch its own outcome: Errs[i] is the
// error for batch[i], nil when that frame was delivered. Each error is
// classified on its own.
type BatchError struct{ Errs []error }

func (e *BatchError) Error() string {
	failed := 0
	var first error
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if first == nil {
		return "batch: no frame failed"
	}
	return fmt.Sprintf("%d of %d frames failed, first: %v", failed, len(e.Errs), first)
}

// IsPermanent reports whether err must not be retried.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// retryAfter returns the wait a destination asked for, if any.
func retryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}
