package spool

import (
	"errors"
	"os"
	"time"

	"go.uber.org/zap"
)

func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.syncNow()
		}
	}
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
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.mu.Lock()
		s.dirty = true
		s.stats.SyncErrors++
		s.mu.Unlock()
		s.log.Error("spool: background fsync failed; recent frames may not survive a power cut", zap.Error(err))
	}
}
