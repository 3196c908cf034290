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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Errors returned by a Spool. Match them with errors.Is.
var (
	// ErrFull is returned by Append under the Block policy when the batch
	// would push the spool past MaxBytes, under any policy when one batch
	// is larger than MaxBytes, and (wrapped together with the syscall
	// error) when the disk is full and nothing can be dropped.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned by calls on a closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrLocked is returned by Open when another Spool (in this or another
	// process) has the directory open.
	ErrLocked = errors.New("spool: directory is locked by another spool")
	// ErrTooLarge is returned by Append for a frame whose record would
	// exceed MaxRecordSize, and (with ErrFull) for a batch larger than
	// MaxBytes.
	ErrTooLarge = errors.New("spool: frame too large")
	// ErrBadCursor is returned by Ack for a cursor past the end of the
	// spool or not on a record boundary this Spool handed out.
	ErrBadCursor = errors.New("spool: bad cursor")
)

const (
	segExt      = ".seg"
	ackFile     = "ack"
	ackTmpFile  = "ack.tmp"
	lockFile    = "LOCK"
	ackMagic    = "scbdack1"
	ackFileSize = len(ackMagic) + 8 + 8 + 4
	readChunk   = 256 << 10
)

// Cursor is a position in the spool: the point just after the last frame a
// Read returned. It is valid only for the Spool that returned it.
type Cursor struct {
	seg uint64
	off int64
	ord uint64 // records before this position since Open (for Stats)
}

// String shows the position as segment:offset.
func (c Cursor) String() string { return fmt.Sprintf("%020d:%d", c.seg, c.off) }

func (c Cursor) before(d Cursor) bool {
	return c.seg < d.seg || c.seg == d.seg && c.off < d.off
}

// Stats is a snapshot of a spool's state and counters.
type Stats struct {
	// Frames is the number of unacknowledged frames in the spool.
	Frames uint64
	// Unread is the number of those not yet handed out by Read.
	Unread uint64
	// Bytes is the size of all segment files.
	Bytes int64
	// Segments is the number of segment files.
	Segments int
	// DroppedFrames counts unacknowledged frames deleted by DropOldest
	// since Open (some may have been handed out by Read already).
	DroppedFrames uint64
	// CorruptRecords counts damaged regions (each one or more records)
	// found since Open, at recovery or while reading.
	CorruptRecords uint64
	// TruncatedBytes counts bytes of torn tails cut at recovery.
	TruncatedBytes int64
	// WriteErrors counts Appends that failed on I/O (disk full...).
	WriteErrors uint64
	// SyncErrors counts background fsync failures (SyncInterval).
	SyncErrors uint64
}

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

// Spool is an on-disk, append-only queue of frames for one consumer. Append
// may run in one goroutine while Read, Ack and Rewind run in another.
type Spool struct {
	opts Options
	log  *zap.Logger
	lock *os.File

	// appendMu serialises Append, the active segment's writes and rolls.
	// Lock order: appendMu, ackMu, mu.
	appendMu sync.Mutex
	buf      []byte
	wsize    int64 // bytes in the active file (== its published size between Appends)
	broken   bool  // the active file's tail could not be truncated after an error: roll

	ackMu sync.Mutex // serialises Ack's file work

	mu    sync.Mutex
	wf    *os.File // active segment; set under appendMu and mu
	segs  []*segment
	bytes int64
	read  Cursor
	ack   Cursor
	rf    *os.File
	rfSeg uint64
	rbuf  []byte
	// views is readChunk's scratch list of decoded records; they alias
	// rbuf and are copied out by materialize before readChunk returns.
	views    []frameView
	dirty    bool
	closed   bool
	stats    Stats
	report   RecoveryReport
	lastPort string

	notify chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

// Open opens the spool in opts.Dir, creating it if needed, and recovers it:
// every segment is scanned, damaged regions are skipped or cut (see the
// package documentation), and reading resumes after the last persisted
// acknowledgement. Damage never makes Open fail; it is logged and reported
// by Recovery. New frames always go to a fresh segment.
func Open(opts Options, log *zap.Logger) (*Spool, error) {
	autoSegment := opts.SegmentSize == 0
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create dir: %w", err)
	}
	// Without a cap the disk is the cap: segments of at most an eighth of
	// the filesystem keep drop-oldest granular on a small disk.
	var fs syscall.Statfs_t
	if autoSegment && opts.MaxBytes == 0 && syscall.Statfs(opts.Dir, &fs) == nil {
		if size := int64(fs.Blocks) * int64(fs.Bsize) / 8; size > 0 && opts.SegmentSize > size {
			opts.SegmentSize = max(size, minSegmentSize)
		}
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, opts.Dir)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", opts.Dir, err)
	}
	s := &Spool{
		opts:   opts,
		log:    log.With(zap.String("spool", opts.Dir)),
		lock:   lock,
		notify: make(chan struct{}, 1),
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if opts.Sync == SyncInterval {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

func (s *Spool) path(id uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", id, segExt))
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
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, segExt) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
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
		if err := f.Sync(); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("spool: create segment: %w", err)
		}
		if err := syncDir(s.opts.Dir); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return f, nil
}

// Recovery returns what Open found and did.
func (s *Spool) Recovery() RecoveryReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Damage = slices.Clone(r.Damage)
	return r
}

// Notify returns a channel that receives a value after an Append adds
// frames, so a consumer can wait for work instead of polling Read. It has
// a buffer of one: several Appends may produce one wake-up.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Append writes frames as one group commit: a single write and, with
// SyncBatch, a single fsync before it returns. When it returns nil the
// frames are in the spool (durable as the Sync policy says) and visible to
// Read. On error nothing of the batch is visible and the spool stays
// usable; the caller may retry the same batch (a retry may store frames
// twice only if the error came after the data reached the file and its
// removal failed too; ids make that harmless).
//
// Past MaxBytes, DropOldest deletes the oldest segments first and Block
// returns ErrFull. On a full disk (ENOSPC) DropOldest also drops old
// segments and retries; when nothing is left to drop, the error wraps both
// ErrFull and the system error.
func (s *Spool) Append(frames []*serialcb.Frame) error {
	if len(frames) == 0 {
		return nil
	}
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	buf := s.buf[:0]
	for _, f := range frames {
		if recordSize(f) > MaxRecordSize {
			return fmt.Errorf("%w: %d-byte payload", ErrTooLarge, len(f.Payload))
		}
		buf = appendRecord(buf, f)
	}
	if cap(buf) <= 4<<20 {
		s.buf = buf
	}
	if err := s.makeRoom(int64(len(buf))); err != nil {
		return err
	}
	for {
		err := s.write(buf, uint64(len(frames)))
		if err == nil {
			break
		}
		s.mu.Lock()
		s.stats.WriteErrors++
		s.mu.Unlock()
		if errors.Is(err, syscall.ENOSPC) {
			if s.recycleAcked() || s.opts.Overflow == DropOldest && (s.dropOldest("disk full") || s.dropActive("disk full")) {
				continue
			}
			return fmt.Errorf("spool: append %d frames: %w: %w", len(frames), ErrFull, err)
		}
		return fmt.Errorf("spool: append %d frames: %w", len(frames), err)
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
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

// write appends buf (count records) to the active segment, rolling first if
// it is full, and publishes it. On error the file is cut back.
func (s *Spool) write(buf []byte, count uint64) error {
	if s.willRoll(int64(len(buf))) {
		if err := s.roll(); err != nil {
			return err
		}
	}
	off := s.wsize
	_, err := s.wf.WriteAt(buf, off)
	if err == nil && s.opts.Sync == SyncBatch {
		err = s.wf.Sync()
	}
	if err != nil {
		// Cut back what may have reached the file. After a failed fsync
		// the page cache can no longer be trusted either, so the records
		// are dropped and the caller retries them.
		if terr := s.wf.Truncate(off); terr != nil {
			s.broken = true
			s.log.Error("spool: cannot cut back a failed write; sealing the segment", zap.Error(terr))
		}
		return err
	}
	s.wsize += int64(len(buf))
	s.mu.Lock()
	sg := s.segs[len(s.segs)-1]
	sg.size += int64(len(buf))
	sg.count += count
	s.bytes += int64(len(buf))
	s.dirty = true
	s.mu.Unlock()
	return nil
}

// willRoll reports whether a batch of n bytes goes to a new segment.
func (s *Spool) willRoll(n int64) bool {
	return s.broken || s.wsize > segHeaderSize && s.wsize+n > s.opts.SegmentSize
}

// roll seals the active segment and starts a new one. Called under appendMu.
func (s *Spool) roll() error {
	if s.opts.Sync != SyncNone && !s.broken {
		if err := s.wf.Sync(); err != nil {
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
	s.mu.Lock()
	old := s.wf
	s.wf, s.wsize, s.broken = f, segHeaderSize, false
	s.segs = append(s.segs, &segment{id: id, size: segHeaderSize, first: first})
	s.bytes += segHeaderSize
	s.mu.Unlock()
	if err := old.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		s.log.Warn("spool: close sealed segment", zap.Error(err))
	}
	return nil
}

// dropOldest deletes the oldest sealed segment, counting and logging the
// unacknowledged frames it held. It reports false if there is none.
func (s *Spool) dropOldest(why string) bool {
	s.mu.Lock()
	if len(s.segs) < 2 {
		s.mu.Unlock()
		return false
	}
	sg := s.segs[0]
	s.segs = s.segs[1:]
	s.bytes -= sg.size
	var lost uint64
	if end := sg.first + sg.count; end > s.ack.ord {
		lost = end - max(s.ack.ord, sg.first)
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
	s.log.Error("spool overflow: oldest frames DROPPED", zap.String("reason", why), zap.Uint64("segment", sg.id),
		zap.Uint64("dropped_frames", lost), zap.Uint64("dropped_total", total), zap.Int64("max_bytes", s.opts.MaxBytes))
	return true
}

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
	s.log.Error("spool: damaged record while reading; skipped", zap.Uint64("segment", sg.id),
		zap.Int64("offset", from), zap.Int64("length", to-from), zap.String("reason", reason))
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

func (s *Spool) removeSegments(gone []*segment) error {
	var errs []error
	for _, sg := range gone {
		if err := os.Remove(s.path(sg.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// recycleAcked frees the space of a fully acknowledged active segment when
// the disk is full: Ack never deletes the active segment, and on a full
// disk a new one may not fit before the old one is gone. The file is closed
// and removed first, then a new segment is started (with a higher id, so a
// stale ack file can never cover new records). It reports whether it freed
// anything; it runs at most once per active segment. Called under appendMu.
// dropActive drops the frames of the active segment when it is the only
// one and the disk is full: the segment is deleted first (a new one needs
// the space), then a new one is started. Called under appendMu.
func (s *Spool) dropActive(why string) bool {
	s.mu.Lock()
	act := s.segs[len(s.segs)-1]
	if len(s.segs) != 1 || act.count == 0 {
		s.mu.Unlock()
		return false
	}
	if s.rf != nil && s.rfSeg == act.id {
		s.rf.Close()
		s.rf = nil
	}
	s.mu.Unlock()
	s.broken = true // whatever happens next, write() must roll
	s.wf.Close()
	if err := os.Remove(s.path(act.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: remove active segment to free the full disk", zap.Error(err))
		return false
	}
	if err := s.roll(); err != nil {
		return true // the next write retries the roll; dropOldest then accounts for act
	}
	return s.dropOldest(why)
}

func (s *Spool) recycleAcked() bool {
	s.mu.Lock()
	act := s.segs[len(s.segs)-1]
	if s.broken || act.count == 0 || s.ack.seg != act.id || s.ack.off < act.size {
		s.mu.Unlock()
		return false
	}
	if s.rf != nil && s.rfSeg == act.id {
		s.rf.Close()
		s.rf = nil
	}
	s.mu.Unlock()
	s.broken = true // whatever happens next, write() must roll
	s.wf.Close()
	if err := os.Remove(s.path(act.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("spool: remove acknowledged active segment", zap.Error(err))
		return false
	}
	if err := s.roll(); err != nil {
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
}

// Stats returns a snapshot of the spool's state and counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	last := s.segs[len(s.segs)-1]
	end := last.first + last.count
	st.Frames = end - min(end, s.ack.ord)
	st.Unread = end - min(end, s.read.ord)
	st.Bytes = s.bytes
	st.Segments = len(s.segs)
	return st
}

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

// Close stops the background fsync (SyncInterval), fsyncs the active
// segment whatever the Sync policy, and releases the directory. It is
// idempotent.
func (s *Spool) Close() error {
	s.appendMu.Lock()
	defer s.appendMu.Unlock()
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	var err error
	if !s.broken {
		if serr := s.wf.Sync(); serr != nil {
			err = fmt.Errorf("spool: close: %w", serr)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	if s.wf != nil {
		s.wf.Close()
	}
	if s.rf != nil {
		s.rf.Close()
	}
	s.lock.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: sync dir: %w", err)
	}
	return nil
}

// MaxAppendBytes is the most bytes of records one Append should carry so
// that it always fits (0: no limit).
func (s *Spool) MaxAppendBytes() int64 {
	if s.opts.MaxBytes == 0 {
		return 0
	}
	return s.opts.SegmentSize
}

// RecordSize is the bytes f takes in a segment.
func RecordSize(f *serialcb.Frame) int64 { return int64(recordSize(f)) }
