package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"
)

// segment is one segment file as the spool knows it.
type segment struct {
	id    uint64
	size  int64  // bytes of the file holding whole, published records
	first uint64 // ordinal of its first record
	count uint64
	skips []span // damaged regions readers jump over
}

func (sg *segment) end() Cursor { return Cursor{seg: sg.id, off: sg.size, ord: sg.first + sg.count} }

func (sg *segment) start() Cursor { return Cursor{seg: sg.id, off: segHeaderSize, ord: sg.first} }

func (s *Spool) path(id uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", id, segExt))
}

func (s *Spool) createSegment(id uint64) (*os.File, error) {
	f, err := os.OpenFile(s.path(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: create segment: %w", err)
	}
	if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("spool: create segment: %w", err)
	}
	if s.opts.Sync != SyncNone {
		if err := s.fsync(f); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("spool: create segment: %w", err)
		}
		if err := s.syncDir(); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return f, nil
}

// makeRoom applies the overflow policy for a batch of n bytes.
func (s *Spool) makeRoom(n int64) error {
	limit := s.opts.MaxBytes
	if limit == 0 {
		return nil
	}
	if n+segHeaderSize > limit {
		return fmt.Errorf("%w: %w: a %d-byte batch exceeds MaxBytes %d", ErrFull, ErrTooLarge, n, limit)
	}
	if s.willRoll(n) {
		n += segHeaderSize
	}
	for {
		s.mu.Lock()
		total, nsegs := s.bytes, len(s.segs)
		activeEmpty := s.segs[nsegs-1].count == 0
		s.mu.Unlock()
		if total+n <= limit {
			return nil
		}
		if s.opts.Overflow == Block {
			if s.recycleAcked() {
				continue // only an acknowledged active segment was in the way
			}
			return fmt.Errorf("%w: %d bytes spooled + %d > MaxBytes %d", ErrFull, total, n, limit)
		}
		if nsegs == 1 {
			if activeEmpty {
				return nil // cannot happen with SegmentSize <= MaxBytes/4
			}
			if err := s.roll(); err != nil {
				return fmt.Errorf("spool: append: %w", err)
			}
		}
		s.dropOldest("MaxBytes reached")
	}
}

// willRoll reports whether a batch of n bytes goes to a new segment.
func (s *Spool) willRoll(n int64) bool {
	return s.broken || s.wsize > segHeaderSize && s.wsize+n > s.opts.SegmentSize
}

// roll seals the active segment and starts a new one. Called under appendMu.
func (s *Spool) roll() error {
	if !s.broken {
		s.unmapActive(true)
	}
	if s.opts.Sync != SyncNone && !s.broken {
		if err := s.fsync(s.wf); err != nil {
			return fmt.Errorf("sync sealed segment: %w", err)
		}
	}
	s.mu.Lock()
	last := s.segs[len(s.segs)-1]
	id, first := last.id+1, last.first+last.count
	s.mu.Unlock()
	f, err := s.createSegment(id)
	if err != nil {
		return err
	}
	s.unmapActive(false) // a broken segment's, if still there
	m := mapSegment(f, s.opts.SegmentSize)
	s.mu.Lock()
	old := s.wf
	s.wf, s.wsize, s.broken = f, segHeaderSize, false
	s.wmap = m
	s.segs = append(s.segs, &segment{id: id, size: segHeaderSize, first: first})
	s.bytes += segHeaderSize
	s.mu.Unlock()
	if err := old.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.log.Warn("spool: close sealed segment", zap.Error(err))
	}
	return nil
}

// dropOldest deletes the oldest sealed segment, counting and logging the
// frames it held that were not handed out yet; those handed out and not
// acknowledged yet are counted when they can no longer be delivered
// (loseInflight). It reports false if there is none.
func (s *Spool) dropOldest(why string) bool {
	s.mu.Lock()
	if len(s.segs) < 2 {
		s.mu.Unlock()
		return false
	}
	sg := s.segs[0]
	s.segs = s.segs[1:]
	s.bytes -= sg.size
	// Frames not handed out yet are lost now; those handed out (between
	// the ack and the read position) are lost only if never delivered.
	end := sg.first + sg.count
	from := min(max(s.ack.ord, sg.first), end)
	readTo := min(max(s.read.ord, from), end)
	lost, inflight := end-readTo, readTo-from
	if inflight > 0 {
		if s.inflightTo <= s.inflightFrom {
			s.inflightFrom = from
		}
		s.inflightTo = readTo
	}
	if s.ack.seg <= sg.id {
		s.ack = s.segs[0].start()
	}
	if s.read.seg <= sg.id {
		s.read = s.segs[0].start()
	}
	if s.rf != nil && s.rfSeg == sg.id {
		s.rf.Close()
		s.rf = nil
	}
	s.stats.DroppedFrames += lost
	total := s.stats.DroppedFrames
	s.mu.Unlock()
	if err := os.Remove(s.path(sg.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: remove dropped segment", zap.Error(err))
	}
	s.log.Error("spool overflow: oldest frames DROPPED", zap.String("reason", why), zap.String("file", s.path(sg.id)),
		zap.Uint64("dropped_frames", lost), zap.Uint64("in_flight", inflight), zap.Uint64("dropped_total", total),
		zap.Int64("max_bytes", s.opts.MaxBytes), zap.Int64("segment_bytes", sg.size))
	return true
}

func (s *Spool) removeSegments(gone []*segment) error {
	var errs []error
	for _, sg := range gone {
		if err := os.Remove(s.path(sg.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dropActive drops the frames of the active segment when it is the only
// one and the disk is full: the segment is deleted first (a new one needs
// the space), then a new one is started. Called under appendMu.
func (s *Spool) dropActive(why string) bool {
	freed, err := s.replaceActive("active segment to free the full disk", func(act *segment) bool {
		return len(s.segs) == 1 && act.count != 0
	})
	if !freed {
		return false
	}
	if err != nil {
		return true // the next write retries the roll; dropOldest then accounts for act
	}
	return s.dropOldest(why)
}

// recycleAcked frees the space of a fully acknowledged active segment when
// the disk is full: Ack never deletes the active segment, and on a full
// disk a new one may not fit before the old one is gone. The file is closed
// and removed first, then a new segment is started (with a higher id, so a
// stale ack file can never cover new records). It reports whether it freed
// anything; it runs at most once per active segment. Called under appendMu.
func (s *Spool) recycleAcked() bool {
	freed, err := s.replaceActive("acknowledged active segment", func(act *segment) bool {
		return !s.broken && act.count != 0 && s.ack.seg == act.id && s.ack.off >= act.size
	})
	if !freed {
		return false
	}
	if err != nil {
		return true // the next write retries the roll, then reports
	}
	s.mu.Lock()
	s.ack = s.normalize(s.ack)
	if s.read.before(s.ack) {
		s.read = s.ack
	}
	gone := s.pruneAcked()
	s.mu.Unlock()
	if err := s.removeSegments(gone); err != nil {
		s.log.Warn("spool: remove acknowledged segment", zap.Error(err))
	}
	return true
}

// unmapActive drops the active segment's mapping, if it has one, and with
// cut gives the file its real size (the preallocation past the last record
// goes). Called under appendMu.
func (s *Spool) unmapActive(cut bool) {
	if s.wmap == nil {
		return
	}
	unmapSegment(s.wmap)
	s.wmap = nil
	if cut {
		if err := s.wf.Truncate(s.wsize); err != nil {
			// Recovery takes the zero tail for the end it is.
			s.log.Warn("spool: cut the preallocated tail of a segment", zap.Error(err))
		}
	}
}

// replaceActive closes and deletes the active segment's file, when want
// (called under mu) says so, and starts a new segment. It reports whether
// the file is gone and the new segment's error (the next write retries the
// roll). Called under appendMu.
func (s *Spool) replaceActive(what string, want func(act *segment) bool) (freed bool, err error) {
	s.mu.Lock()
	act := s.segs[len(s.segs)-1]
	if !want(act) {
		s.mu.Unlock()
		return false, nil
	}
	if s.rf != nil && s.rfSeg == act.id {
		s.rf.Close()
		s.rf = nil
	}
	s.mu.Unlock()
	s.broken = true // whatever happens next, write() must roll
	s.unmapActive(false)
	s.wf.Close()
	if err := os.Remove(s.path(act.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: remove "+what, zap.Error(err))
		return false, nil
	}
	return true, s.roll()
}
