package sqlsink

import (
	"context"
	"database/sql"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/tick"
)

// SQLite's own checkpoint runs inside the commit that pushes the
// write-ahead log past 1,000 pages: that commit copies the pages into the
// database file and fsyncs it, and every frame queued behind it waits. At
// 1,000 frames/s that put the p99 latency 2.9–3.4 ms above the raw port
// path (measured with `serialcbd bench --rate 1000`). So a checkpointer
// goroutine copies the log on its own connection, concurrently with the
// commits, and the writer's own checkpoint is left as a backstop.
//
// A checkpoint costs two fsyncs (the log, then the database file) and
// rewrites every page the commits since the last one touched, so it runs
// rarely: at the first multiple of checkpointEvery (dispatch/tick: at most
// checkpointEvery, and in the same wake-up as the spool's fsync and the
// lanes' batches) after the first commit that follows the previous one,
// or sooner once checkpointRows rows have been committed. While
// nothing is written the goroutine sleeps with no timer armed, and a
// commit wakes it only when no checkpoint is pending.
const (
	// checkpointEvery bounds the checkpoints (and their fsyncs) to one per
	// period while frames flow. 5 s: at most 0.4 fsyncs/s from
	// checkpoints at the rates devices send, and a log of at most a few
	// MiB at 10,000 frames/s. Before it was 100 ms: 20 fsyncs/s at 180
	// frames/s.
	checkpointEvery = 5 * time.Second
	// checkpointRows makes the checkpoint come sooner at high rates, so
	// that the log (about 250 bytes per row) stays well under walLimitPages
	// and the writer's backstop checkpoint, which stalls commits, stays a
	// backstop.
	checkpointRows = 65536
	// walLimitPages is the writer connection's wal_autocheckpoint. The
	// checkpointer's PASSIVE checkpoints never block a commit, but the log
	// starts over only when it is wholly copied at the moment a write
	// begins, which commits back to back may never allow; past this many
	// pages (32 MiB at the 2 KiB pages of a database the sink made, 64 MiB
	// at 4 KiB) the committing writer checkpoints the few pages left
	// itself, and the log starts over.
	walLimitPages = 16384
)

// checkpointer copies the write-ahead log into the database file on its own
// connection. Sink.Start starts it, Sink.Close stops it.
type checkpointer struct {
	db    *sql.DB
	log   *zap.Logger
	every time.Duration
	rows  int64 // checkpointRows; tests shrink it

	syncs   atomic.Uint64 // fsyncs made by the checkpoints (two per checkpoint that copied pages)
	pending atomic.Bool   // a checkpoint is scheduled; commits need not wake run
	since   atomic.Int64  // rows committed since the last checkpoint began
	kick    chan struct{} // the first commit after a checkpoint; buffered, never blocks
	urgent  chan struct{} // since passed rows; buffered, never blocks
	// The previous checkpoint's log and backfilled frame counts; run only.
	lastLog, lastDone int64
	cancel            context.CancelFunc
	done              chan struct{} // closed when run returns
}

func startCheckpointer(db *sql.DB, log *zap.Logger, every time.Duration, rows int64) *checkpointer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checkpointer{
		db:     db,
		log:    log,
		every:  every,
		rows:   rows,
		kick:   make(chan struct{}, 1),
		urgent: make(chan struct{}, 1),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go c.run(ctx)
	return c
}

// committed tells the checkpointer that n rows were committed. It costs two
// atomic operations unless it is the first commit since a checkpoint or
// the one that makes the log long.
func (c *checkpointer) committed(n int) {
	if c.since.Add(int64(n)) >= c.rows {
		select {
		case c.urgent <- struct{}{}:
		default:
		}
	}
	if !c.pending.Load() && c.pending.CompareAndSwap(false, true) {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTimer(c.every)
	t.Stop() // armed after each kick; since Go 1.23 a stopped timer holds no stale tick
	var lastWarn time.Time
	failed := 0 // failures since the last warning
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		t.Reset(tick.Until(time.Now(), c.every))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.urgent:
			t.Stop()
		}
		// Commits from here on schedule the next checkpoint.
		c.since.Store(0)
		select {
		case <-c.urgent: // sent before the reset: stale
		default:
		}
		c.pending.Store(false)
		err := c.checkpoint(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// The frames are safe in the log, the next commit tries again,
			// and the writer's backstop checkpoint bounds the log's size.
			failed++
			if now := time.Now(); now.Sub(lastWarn) >= time.Minute {
				c.log.Warn("sqlite sink: checkpoint failed; the next commit tries again",
					zap.Int("failures", failed), zap.Error(err))
				lastWarn, failed = now, 0
			}
		}
	}
}

// checkpoint runs a PASSIVE checkpoint. With synchronous=NORMAL SQLite
// fsyncs the log and then the database file when the checkpoint copies
// anything (walCheckpoint), which it does when it backfills more frames
// than the previous one or the log started over in between.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	var busy, logFrames, done int64
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	if err != nil {
		return err
	}
	if done > 0 && (done > c.lastDone || logFrames < c.lastLog) {
		c.syncs.Add(2)
	}
	c.lastLog, c.lastDone = logFrames, done
	return nil
}

// stop ends the checkpointer and closes its connection; a checkpoint in
// progress is interrupted (SQLite leaves the files consistent).
func (c *checkpointer) stop() error {
	c.cancel()
	<-c.done
	return c.db.Close()
}
