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
	// Offset and Length locate the damaged bytes in the file as found.
	Offset, Length int64
	// Reason says what was wrong ("CRC-32C mismatch", ...).
	Reason string
	// Action is "truncated" (a torn tail, cut from the file), "skipped"
	// (a damaged region followed by good records; readers jump over it) or
	// "quarantined" (a file without a segment header, renamed to
	// NAME.corrupt and left for inspection).
	Action string
}

// RecoveryReport tells what Open found on disk.
type RecoveryReport struct {
	// Segments and Frames count the segment files kept and the
	// unacknowledged frames in them.
	Segments int
	Frames   uint64
	// AckReset is true when the ack file was missing or unreadable while
	// segments existed: delivery restarts at the oldest frame kept.
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
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: read dir: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		if id, ok := segmentID(e); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	maxID := uint64(0)
	if ackOK {
		maxID = ackSeg
	}
	rep := &s.report
	var ord uint64
	haveAck := false
	for _, id := range ids {
		maxID = max(maxID, id)
		p := s.path(id)
		name := filepath.Base(p)
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("spool: read segment: %w", err)
		}
		if int64(len(data)) < segHeaderSize && strings.HasPrefix(segMagic, string(data)) {
			// Created but its header never reached the disk: empty.
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("spool: remove empty segment: %w", err)
			}
			continue
		}
		if string(data[:min(len(data), len(segMagic))]) != segMagic {
			rep.Damage = append(rep.Damage, Damage{Segment: name, Length: int64(len(data)), Reason: "no segment header", Action: "quarantined"})
			if err := os.Rename(p, p+".corrupt"); err != nil {
				return fmt.Errorf("spool: quarantine segment: %w", err)
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
		rep.AckReset = !ackOK
	}
	// Every recovered segment is sealed: new frames go to a new one.
	nf, err := s.createSegment(maxID + 1)
	if err != nil {
		return err
	}
	s.wf, s.wsize = nf, segHeaderSize
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
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	last := s.segs[len(s.segs)-1]
	rep.Segments = len(s.segs)
	rep.Frames = last.first + last.count - s.ack.ord
	s.stats.TruncatedBytes = rep.TruncatedBytes
	s.stats.CorruptRecords = uint64(len(rep.Damage))
	fields := []zap.Field{zap.Int("segments", rep.Segments), zap.Uint64("frames", rep.Frames), zap.Stringer("ack", s.ack)}
	if len(rep.Damage) > 0 || rep.AckReset {
		for _, d := range rep.Damage {
			s.log.Error("spool damage found at recovery", zap.String("segment", d.Segment), zap.Int64("offset", d.Offset),
				zap.Int64("length", d.Length), zap.String("reason", d.Reason), zap.String("action", d.Action))
		}
		s.log.Warn("spool recovered with damage", append(fields, zap.Int("damaged_regions", len(rep.Damage)),
			zap.Int64("truncated_bytes", rep.TruncatedBytes), zap.Bool("ack_reset", rep.AckReset))...)
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
