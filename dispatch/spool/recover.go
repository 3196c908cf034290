package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// Damage describes one damaged region found when opening a spool.
type Damage struct {
	// Segment is the segment file's name.
	Segment string
	// Offset and Length locate the damaged bytes in the file as found;
	// Length is -1 for a file that could not be read.
	Offset, Length int64
	// Reason says what was wrong ("CRC-32C mismatch", ...).
	Reason string
	// Action is "truncated" (a torn tail, cut from the file), "skipped"
	// (a damaged region followed by good records; readers jump over it),
	// "quarantined" (a .seg file that is no segment: without a segment
	// header, unreadable, not a regular file or not named as a segment;
	// renamed to NAME.corrupt and left for inspection) or "removed" (an
	// empty segment file: the frames written to it are lost).
	Action string
}

// RecoveryReport tells what Open found on disk.
type RecoveryReport struct {
	// Segments and Frames count the segment files kept and the
	// unacknowledged frames in them.
	Segments int
	Frames   uint64
	// AckReset is true when the ack file was there but unreadable while
	// segments existed: delivery restarts at the oldest frame kept. (A
	// missing ack file is a spool that never acknowledged a frame.)
	AckReset bool
	// Damage lists every damaged region; TruncatedBytes sums the bytes cut.
	Damage         []Damage
	TruncatedBytes int64
}

// recover rebuilds the in-memory state from the directory.
func (s *Spool) recover() error {
	dir := s.opts.Dir
	_ = os.Remove(filepath.Join(dir, ackTmpFile))
	ackSeg, ackOff, ackOK := readAck(filepath.Join(dir, ackFile))
	// A missing ack file is a spool that never acknowledged anything; one
	// that is there but unreadable is damage.
	_, statErr := os.Lstat(filepath.Join(dir, ackFile))
	ackDamaged := !ackOK && !errors.Is(statErr, os.ErrNotExist)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: read dir: %w", err)
	}
	rep := &s.report
	// quarantine sets a .seg file that is not a segment aside, as NAME.corrupt.
	quarantine := func(name string, length int64, reason string) error {
		rep.Damage = append(rep.Damage, Damage{Segment: name, Length: length, Reason: reason, Action: "quarantined"})
		p := filepath.Join(dir, name)
		s.nRenames.Add(1)
		if err := os.Rename(p, p+".corrupt"); err != nil {
			return fmt.Errorf("spool: quarantine %s: %w", name, err)
		}
		return nil
	}
	var ids []uint64
	for _, e := range entries {
		id, ok := segmentID(e)
		switch name := e.Name(); {
		case ok && name == filepath.Base(s.path(id)):
			ids = append(ids, id)
		case !strings.HasSuffix(name, segExt):
		case !e.Type().IsRegular():
			err = quarantine(name, -1, "not a regular file ("+e.Type().String()+")")
		default:
			err = quarantine(name, -1, "not a segment file name (20 digits and "+segExt+")")
		}
		if err != nil {
			return err
		}
	}
	slices.Sort(ids)
	maxID := uint64(0)
	if ackOK {
		maxID = ackSeg
	}
	var ord uint64
	haveAck := false
	for _, id := range ids {
		maxID = max(maxID, id)
		p := s.path(id)
		name := filepath.Base(p)
		data, err := os.ReadFile(p)
		if err != nil {
			if err := quarantine(name, -1, "unreadable: "+err.Error()); err != nil {
				return err
			}
			continue
		}
		if int64(len(data)) < segHeaderSize && strings.HasPrefix(segMagic, string(data)) {
			// Its header is missing: whatever was written to it is lost (a
			// power cut before the kernel wrote it back, a truncation),
			// unless the process died while creating it.
			reason := "empty file: the frames written to it are lost (their number is unknown), unless the process died while creating it"
			if ackOK && ackSeg == id && ackOff > segHeaderSize {
				reason = fmt.Sprintf("empty file, although the ack points %d bytes into it: the frames written to it after those delivered are lost (their number is unknown)", ackOff)
			}
			rep.Damage = append(rep.Damage, Damage{Segment: name, Length: int64(len(data)), Reason: reason, Action: "removed"})
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("spool: remove empty segment: %w", err)
			}
			continue
		}
		if string(data[:min(len(data), len(segMagic))]) != segMagic {
			if err := quarantine(name, int64(len(data)), "no segment header"); err != nil {
				return err
			}
			continue
		}
		want := int64(-1)
		if ackOK && id == ackSeg {
			want = ackOff
		}
		sc := scanSegment(data, want)
		for _, d := range sc.damage {
			action := "skipped"
			if d.cut {
				action = "truncated"
				rep.TruncatedBytes += d.length
			}
			rep.Damage = append(rep.Damage, Damage{Segment: name, Offset: d.off, Length: d.length, Reason: d.reason, Action: action})
		}
		if sc.end < int64(len(data)) {
			if err := os.Truncate(p, sc.end); err != nil {
				return fmt.Errorf("spool: truncate torn tail: %w", err)
			}
		}
		sg := &segment{id: id, size: sc.end, first: ord, count: sc.records, skips: sc.skips}
		ord += sc.records
		s.segs = append(s.segs, sg)
		s.bytes += sg.size
		if want >= 0 {
			haveAck = true
			s.ack = Cursor{seg: id, off: sc.ackOff, ord: sg.first + sc.ackRecords}
		}
	}
	switch {
	case haveAck:
	case ackOK && len(s.segs) > 0 && ackSeg > s.segs[len(s.segs)-1].id:
		// Everything on disk was acknowledged.
		s.ack = s.segs[len(s.segs)-1].end()
	case len(s.segs) > 0:
		// No ack, or its segment is gone: everything before the oldest
		// segment was acknowledged (or dropped).
		s.ack = s.segs[0].start()
		rep.AckReset = ackDamaged
	}
	// Every recovered segment is sealed: new frames go to a new one.
	nf, err := s.createSegment(maxID + 1)
	if err != nil {
		return err
	}
	s.wf, s.wsize = nf, segHeaderSize
	s.wmap = mapSegment(nf, s.opts.SegmentSize)
	s.segs = append(s.segs, &segment{id: maxID + 1, size: segHeaderSize, first: ord})
	s.bytes += segHeaderSize
	if len(s.segs) == 1 {
		s.ack = s.segs[0].start()
	}
	s.ack = s.normalize(s.ack)
	s.read = s.ack
	// Delete what is fully acknowledged, and empty sealed segments.
	var drop []*segment
	keep := s.segs[:0]
	for i, sg := range s.segs {
		if i < len(s.segs)-1 && (sg.id < s.ack.seg || sg.count == 0 && len(sg.skips) == 0) {
			drop = append(drop, sg)
			continue
		}
		keep = append(keep, sg)
	}
	s.segs = keep
	for _, sg := range drop {
		s.bytes -= sg.size
		if err := os.Remove(s.path(sg.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove acknowledged segment: %w", err)
		}
	}
	if s.opts.Sync != SyncNone {
		if err := s.syncDir(); err != nil {
			return err
		}
	}
	last := s.segs[len(s.segs)-1]
	rep.Segments = len(s.segs)
	rep.Frames = last.first + last.count - s.ack.ord
	s.stats.TruncatedBytes = rep.TruncatedBytes
	s.stats.CorruptRecords = uint64(len(rep.Damage))
	fields := []zap.Field{zap.Int("segments", rep.Segments), zap.Uint64("frames", rep.Frames), zap.Stringer("ack", s.ack)}
	for _, d := range rep.Damage {
		f := []zap.Field{zap.String("file", filepath.Join(dir, d.Segment)), zap.String("reason", d.Reason), zap.String("action", d.Action)}
		if d.Length >= 0 {
			f = append(f, zap.Int64("offset", d.Offset), zap.Int64("bytes", d.Length))
		}
		s.log.Error("spool damage found at recovery", f...)
	}
	if rep.AckReset {
		s.log.Warn("spool ack file damaged: delivery restarts at the oldest frame kept (frames may be delivered twice, none is lost)",
			zap.String("file", filepath.Join(dir, ackFile)))
	}
	if len(rep.Damage) > 0 {
		s.log.Warn("spool recovered with damage", append(fields, zap.Int("damaged_regions", len(rep.Damage)),
			zap.Int64("truncated_bytes", rep.TruncatedBytes))...)
	} else {
		s.log.Info("spool opened", fields...)
	}
	return nil
}

// normalize moves a cursor sitting at the end of a sealed segment (or in a
// segment already deleted) to the start of the next segment.
func (s *Spool) normalize(c Cursor) Cursor {
	for i, sg := range s.segs {
		if c.seg < sg.id {
			return sg.start()
		}
		if c.seg == sg.id {
			if c.off >= sg.size && i < len(s.segs)-1 {
				c = s.segs[i+1].start()
				continue
			}
			return c
		}
	}
	return c
}

// Recovery returns what Open found and did.
func (s *Spool) Recovery() RecoveryReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Damage = slices.Clone(r.Damage)
	return r
}
