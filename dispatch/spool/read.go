package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Read returns up to max frames following those already handed out, in
// append order, and the cursor to pass to Ack once they are delivered. It
// does not wait: with nothing new it returns no frames (see Notify). The
// frames are freshly allocated and belong to the caller.
func (s *Spool) Read(max int) ([]*serialcb.Frame, Cursor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.read, ErrClosed
	}
	var out []*serialcb.Frame
	for len(out) < max {
		s.read = s.normalize(s.read)
		i := s.segIndex(s.read.seg)
		if i < 0 {
			break
		}
		sg := s.segs[i]
		if s.read.off >= sg.size {
			break // the active segment, fully read
		}
		limit := sg.size
		skipped := false
		for _, sp := range sg.skips {
			if s.read.off >= sp.start && s.read.off < sp.end {
				s.read.off = sp.end
				skipped = true
				break
			}
			if sp.start > s.read.off {
				limit = min(limit, sp.start)
				break
			}
		}
		if skipped {
			continue
		}
		frames, err := s.readChunk(sg, limit, max-len(out))
		if err != nil {
			return out, s.read, err
		}
		if out == nil {
			out = frames // usually the only chunk: no copy
		} else {
			out = append(out, frames...)
		}
	}
	return out, s.read, nil
}

func (s *Spool) segIndex(id uint64) int {
	i := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].id >= id })
	if i < len(s.segs) && s.segs[i].id == id {
		return i
	}
	return -1
}

// readChunk decodes up to max records of sg from the read cursor, not past
// limit, advancing the cursor. Called under mu.
func (s *Spool) readChunk(sg *segment, limit int64, max int) ([]*serialcb.Frame, error) {
	if s.rf == nil || s.rfSeg != sg.id {
		if s.rf != nil {
			s.rf.Close()
			s.rf = nil
		}
		f, err := os.Open(s.path(sg.id))
		if err != nil {
			return nil, fmt.Errorf("spool: read: %w", err)
		}
		s.rf, s.rfSeg = f, sg.id
	}
	// Read about what max records need (they are usually small), not a
	// whole chunk: a short read just means another pass.
	n := min(limit-s.read.off, readChunk, int64(max)*256+4096)
	for {
		if int64(cap(s.rbuf)) < n {
			s.rbuf = make([]byte, n)
		}
		buf := s.rbuf[:n]
		if _, err := s.rf.ReadAt(buf, s.read.off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("spool: read: %w", err)
		} else if err != nil {
			// The file is shorter than we know it to be: damaged under us.
			s.skipDamage(sg, limit, "segment shorter than written")
			return nil, nil
		}
		// Reuse the previous call's list: growing a fresh one from 64 to a
		// batch of 1,000 cost ~340 bytes of garbage per frame read.
		views := s.views[:0]
		p := 0
		for p < len(buf) && len(views) < max {
			v, rn, err := decodeRecord(buf[p:])
			if errors.Is(err, errShort) && p == 0 && rn > 0 && s.read.off+int64(rn) <= limit {
				n = int64(rn) // one record bigger than the chunk
				break
			}
			if errors.Is(err, errShort) && p > 0 {
				break // continue with the next chunk
			}
			if err != nil {
				frames := s.materialize(views)
				s.keepViews(views)
				s.skipDamage(sg, limit, reasonOf(err))
				return frames, nil
			}
			views = append(views, v)
			p += rn
			s.read.off += int64(rn)
			s.read.ord++
		}
		if p == 0 && len(views) == 0 && n > int64(len(buf)) {
			continue // grown for a big record
		}
		frames := s.materialize(views)
		s.keepViews(views)
		return frames, nil
	}
}

// keepViews keeps views' array for the next readChunk, without the
// references into rbuf (cleared so the list pins nothing when idle).
// A list grown past a few thousand records is let go.
func (s *Spool) keepViews(views []frameView) {
	clear(views)
	if cap(views) <= 4096 {
		s.views = views[:0]
	}
}

// skipDamage handles a bad record met while reading (the file changed after
// recovery): it resyncs to the next valid record, or skips to limit.
func (s *Spool) skipDamage(sg *segment, limit int64, reason string) {
	from := s.read.off
	to := limit
	data := make([]byte, limit-from)
	if n, _ := s.rf.ReadAt(data, from); n == len(data) {
		if q, ok := resync(data, 0, 0); ok {
			to = from + int64(q)
		}
	}
	sg.skips = append(sg.skips, span{from, to})
	slices.SortFunc(sg.skips, func(a, b span) int { return int(a.start - b.start) })
	s.read.off = to
	s.stats.CorruptRecords++
	s.log.Error("spool: damaged record while reading; skipped", zap.String("file", s.path(sg.id)),
		zap.Int64("offset", from), zap.Int64("bytes", to-from), zap.String("reason", reason))
}

// materialize copies views into frames that own their bytes: one slab for
// the payloads and fields, and one for the frames.
func (s *Spool) materialize(views []frameView) []*serialcb.Frame {
	if len(views) == 0 {
		return nil
	}
	total := 0
	for i := range views {
		total += len(views[i].payload) + len(views[i].fields)
	}
	slab := make([]byte, 0, total)
	frames := make([]serialcb.Frame, len(views))
	out := make([]*serialcb.Frame, len(views))
	for i := range views {
		v := &views[i]
		if string(v.port) != s.lastPort {
			s.lastPort = string(v.port)
		}
		start := len(slab)
		slab = append(slab, v.payload...)
		frames[i] = serialcb.Frame{
			ID:         v.id,
			Port:       s.lastPort,
			Seq:        v.seq,
			ReceivedAt: v.receivedAt(),
			Payload:    slab[start:len(slab):len(slab)],
		}
		if len(v.fields) > 0 {
			start = len(slab)
			slab = append(slab, v.fields...)
			frames[i].Fields = slab[start:len(slab):len(slab)]
		}
		out[i] = &frames[i]
	}
	return out
}

// Ack records that every frame up to c has been delivered. Segments wholly
// before c are deleted and c is persisted (written to a temporary file,
// fsynced unless SyncNone, renamed over the ack file), so that after a
// restart reading resumes at c. Acking a cursor at or before the current
// ack position is a no-op.
func (s *Spool) Ack(c Cursor) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if c.ord > s.inflightFrom && s.inflightTo > s.inflightFrom {
		s.inflightFrom = min(c.ord, s.inflightTo) // delivered after all
	}
	if !s.ack.before(c) {
		s.mu.Unlock()
		return nil
	}
	i := s.segIndex(c.seg)
	if i < 0 || c.off < segHeaderSize || c.off > s.segs[i].size {
		s.mu.Unlock()
		return fmt.Errorf("%w: %v", ErrBadCursor, c)
	}
	c = s.normalize(c)
	s.ack = c
	if s.read.before(c) {
		s.read = c
	}
	gone := s.pruneAcked()
	s.mu.Unlock()
	errs := []error{s.removeSegments(gone)}
	if err := s.writeAck(c); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: ack: %w", err)
	}
	return nil
}

// pruneAcked takes the segments wholly before the ack position out of the
// spool and returns them for removeSegments. Called under mu.
func (s *Spool) pruneAcked() []*segment {
	var gone []*segment
	for len(s.segs) > 1 && s.segs[0].id < s.ack.seg {
		sg := s.segs[0]
		gone = append(gone, sg)
		s.segs = s.segs[1:]
		s.bytes -= sg.size
		if s.rf != nil && s.rfSeg == sg.id {
			s.rf.Close()
			s.rf = nil
		}
	}
	return gone
}

// writeAck persists c atomically. Deleted segments need no extra care: a
// stale ack naming a deleted segment makes recovery start at the oldest
// segment left, which is at or before c.
func (s *Spool) writeAck(c Cursor) error {
	b := make([]byte, 0, ackFileSize)
	b = append(b, ackMagic...)
	b = binary.LittleEndian.AppendUint64(b, c.seg)
	b = binary.LittleEndian.AppendUint64(b, uint64(c.off))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(s.opts.Dir, ackTmpFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && s.opts.Sync != SyncNone {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.opts.Dir, ackFile))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if s.opts.Sync != SyncNone {
		return syncDir(s.opts.Dir)
	}
	return nil
}

// readAck returns the persisted ack position; ok is false if the file is
// missing or damaged.
func readAck(path string) (seg uint64, off int64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) != ackFileSize || string(b[:len(ackMagic)]) != ackMagic {
		return 0, 0, false
	}
	body := b[:ackFileSize-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[ackFileSize-4:]) {
		return 0, 0, false
	}
	seg = binary.LittleEndian.Uint64(b[len(ackMagic):])
	off = int64(binary.LittleEndian.Uint64(b[len(ackMagic)+8:]))
	return seg, off, off >= segHeaderSize
}

// Rewind makes Read hand out again every frame after the acknowledged
// position, after a failed delivery.
func (s *Spool) Rewind() {
	s.mu.Lock()
	s.read = s.ack
	s.mu.Unlock()
	s.loseInflight("rewound")
}

// loseInflight counts and logs the frames handed out before DropOldest
// deleted their segment and not acknowledged since: they will not be
// handed out again.
func (s *Spool) loseInflight(why string) {
	s.mu.Lock()
	if s.inflightTo <= s.inflightFrom {
		s.mu.Unlock()
		return
	}
	n := s.inflightTo - s.inflightFrom
	s.inflightFrom = s.inflightTo
	s.stats.DroppedFrames += n
	total := s.stats.DroppedFrames
	s.mu.Unlock()
	s.log.Error("spool overflow: frames in flight when their segment was DROPPED were not delivered", zap.String("reason", why),
		zap.String("dir", s.opts.Dir), zap.Uint64("dropped_frames", n), zap.Uint64("dropped_total", total))
}
