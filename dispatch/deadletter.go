package dispatch

import (
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// DeadLetter is a frame a sink will never take: the sink rejected it
// (a permanent error), or it ran out of attempts or age. It keeps the
// frame whole so that an operator can inspect it and replay it later.
type DeadLetter struct {
	Sink     string
	Frame    *serialcb.Frame
	Err      string
	Attempts int
	FailedAt time.Time
}

// DeadLetterStore keeps dead letters durably. Append returns once the
// letters are stored (as durable as the store promises); until then the
// frames stay in the sink's spool, so a crash between the two cannot lose
// them. It is called from worker goroutines, one call at a time per store.
type DeadLetterStore interface {
	Append(letters []DeadLetter) error
}
