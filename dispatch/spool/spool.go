package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

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
	// DroppedFrames counts frames deleted by DropOldest since Open that
	// were not delivered: those not yet handed out by Read, and those
	// handed out but neither acknowledged before a Rewind or Close (a
	// frame acknowledged after its segment was dropped was delivered).
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
	// Syncs counts the fsync calls made since Open (segments, the ack
	// file, the directory), Renames the files renamed: what the spool
	// costs the disk, for benchmarks.
	Syncs, Renames uint64
}

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
	ackf  *os.File   // the ack file, overwritten in place (not SyncBatch); under ackMu

	nSyncs, nRenames atomic.Uint64
	appended         atomic.Uint64 // frames appended since Open

	mu sync.Mutex
	wf *os.File // active segment; set under appendMu and mu
	// wmap is wf mapped (mapwrite_linux.go), nil when appends are
	// pwrites. Used and set under appendMu.
	wmap  []byte
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
	// dropped in flight: the ordinals [from, to) of frames Read had handed
	// out when DropOldest deleted their segment. They count as dropped only
	// if they cannot be delivered any more (Rewind, Close); an Ack past
	// them says they were.
	inflightFrom, inflightTo uint64

	notify chan struct{}
	kick   chan struct{} // SyncInterval: the segment became dirty; 1-buffered
	stop   chan struct{}
	done   chan struct{}
}

// minAutoSegmentSize is the smallest segment autoSegmentSize chooses: on a
// nearly full disk, smaller segments would roll (and fsync) too often.
const minAutoSegmentSize = 64 << 10

// autoSegmentSize lowers a default segment size seg to an eighth of the
// room the spool has on its file system (free bytes plus the bytes of its
// segments), so that a drop-oldest on a full disk frees about an eighth of
// the backlog rather than most of it.
func autoSegmentSize(seg, free, spoolBytes int64) int64 {
	return min(seg, max((free+spoolBytes)/8, minAutoSegmentSize))
}

// segmentBytes sums the sizes of the segment files in dir.
func segmentBytes(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		if _, ok := segmentID(e); ok {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
	}
	return n
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
	// The disk may be smaller than the cap: segments of at most an eighth
	// of the room the spool has (free space plus its own files) keep a drop
	// on a full disk to a small part of the backlog.
	if autoSegment {
		if free, err := diskFree(opts.Dir); err == nil {
			opts.SegmentSize = autoSegmentSize(opts.SegmentSize, free, segmentBytes(opts.Dir))
		}
	}
	lock, err := os.OpenFile(filepath.Join(opts.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("spool: open lock: %w", err)
	}
	if err := lockDir(lock); err != nil {
		lock.Close()
		if errors.Is(err, errWouldBlock) {
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
		s.kick = make(chan struct{}, 1)
		go s.syncLoop()
	}
	return s, nil
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

// write appends buf (count records) to the active segment, rolling first if
// it is full, and publishes it. On error the file is cut back.
func (s *Spool) write(buf []byte, count uint64) error {
	if s.willRoll(int64(len(buf))) {
		if err := s.roll(); err != nil {
			return err
		}
	}
	off := s.wsize
	if s.wmap != nil && off+int64(len(buf)) > int64(len(s.wmap)) {
		// A batch bigger than the segment (the first of a fresh one):
		// back to pwrite, on a file of its real size, so that a reader
		// never sees preallocated zeros in the middle of records.
		s.unmapActive(true)
	}
	var err error
	if s.wmap != nil {
		err = copyToMap(s.wmap, buf, off)
	} else {
		_, err = writeAtRaw(s.wf, buf, off)
	}
	if err == nil && s.opts.Sync == SyncBatch {
		err = s.fsync(s.wf)
	}
	if err != nil {
		// Cut back what may have reached the file. After a failed fsync
		// the page cache can no longer be trusted either, so the records
		// are dropped and the caller retries them. A mapping goes first:
		// a store past the cut would fault.
		s.unmapActive(false)
		if terr := s.wf.Truncate(off); terr != nil {
			s.broken = true
			s.log.Error("spool: cannot cut back a failed write; sealing the segment", zap.Error(terr))
		}
		return err
	}
	s.wsize += int64(len(buf))
	s.appended.Add(count)
	s.mu.Lock()
	sg := s.segs[len(s.segs)-1]
	sg.size += int64(len(buf))
	sg.count += count
	s.bytes += int64(len(buf))
	if !s.dirty {
		s.dirty = true
		s.kickSync()
	}
	s.mu.Unlock()
	return nil
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
	st.Syncs, st.Renames = s.nSyncs.Load(), s.nRenames.Load()
	return st
}

// Close stops the background fsync (SyncInterval), fsyncs the active
// segment whatever the Sync policy (and the ack file unless SyncNone), and
// releases the directory. It is idempotent.
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
	s.loseInflight("closed")
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	var err error
	if !s.broken {
		s.unmapActive(true)
		if serr := s.fsync(s.wf); serr != nil {
			err = fmt.Errorf("spool: close: %w", serr)
		}
	}
	if s.ackf != nil {
		if s.opts.Sync != SyncNone {
			if serr := s.fsync(s.ackf); serr != nil {
				err = errors.Join(err, fmt.Errorf("spool: close: ack file: %w", serr))
			}
		}
		s.ackf.Close()
		s.ackf = nil
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

// MaxAppendBytes is the most bytes of records one Append should carry so
// that it always fits (0: no limit).
func (s *Spool) MaxAppendBytes() int64 {
	if s.opts.MaxBytes == 0 {
		return 0
	}
	return s.opts.SegmentSize
}

// Appended counts the frames appended since Open: one atomic load, for a
// consumer that wants to know whether frames came since it last looked.
func (s *Spool) Appended() uint64 { return s.appended.Load() }

// SyncsEachAppend reports whether Append waits for an fsync (SyncBatch):
// such appends are best grouped, not made one per frame.
func (s *Spool) SyncsEachAppend() bool { return s.opts.Sync == SyncBatch }

// RecordSize is the bytes f takes in a segment.
func RecordSize(f *serialcb.Frame) int64 { return int64(recordSize(f)) }
