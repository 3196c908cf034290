package spool

import (
	"errors"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/tick"
)

// syncLoop fsyncs the active segment at the first multiple of SyncEvery
// (dispatch/tick) after the first write that follows an fsync (write kicks
// it): at most SyncEvery later, and in the same wake-up as the process's
// other per-second work. While nothing is written it sleeps with no timer
// armed, so an idle spool costs no wake-up; while frames flow it fsyncs
// once per SyncEvery.
func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTimer(s.opts.SyncEvery)
	t.Stop() // since Go 1.23 a stopped timer holds no stale tick
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		t.Reset(tick.Until(time.Now(), s.opts.SyncEvery))
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-t.C:
		}
		s.syncNow()
	}
}

// kickSync tells syncLoop that the segment became dirty. Called under mu.
func (s *Spool) kickSync() {
	if s.kick == nil {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// fsync is f.Sync, counted in Stats.Syncs.
func (s *Spool) fsync(f *os.File) error {
	s.nSyncs.Add(1)
	return f.Sync()
}

// syncDir fsyncs the spool's directory, counted in Stats.Syncs.
func (s *Spool) syncDir() error {
	s.nSyncs.Add(1)
	return syncDir(s.opts.Dir)
}

// syncNow fsyncs the active segment if anything was written since the last
// fsync. A concurrent roll may close the file: it fsyncs before closing, so
// os.ErrClosed is not a failure.
func (s *Spool) syncNow() {
	s.mu.Lock()
	if !s.dirty || s.closed {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	f := s.wf
	s.mu.Unlock()
	if err := s.fsync(f); err != nil && !errors.Is(err, os.ErrClosed) {
		s.mu.Lock()
		if !s.dirty {
			s.dirty = true
			s.kickSync() // try again SyncEvery from now
		}
		s.stats.SyncErrors++
		s.mu.Unlock()
		s.log.Error("spool: background fsync failed; recent frames may not survive a power cut", zap.Error(err))
	}
}
