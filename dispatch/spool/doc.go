// Package spool is an on-disk store-and-forward queue of frames for one
// sink: the read loop's frames are appended as group commits, a consumer
// reads them in order, delivers them, and acknowledges them. It survives
// restarts, kill -9 and (per the Sync policy) power cuts, and recovers from
// torn or corrupt files without refusing to start.
//
// # Use
//
//	s, err := spool.Open(spool.Options{Dir: dir, MaxBytes: 1 << 30}, log)
//	err = s.Append(batch)               // producer goroutine
//	frames, cur, err := s.Read(500)     // consumer goroutine; wait on s.Notify() when empty
//	err = s.Ack(cur)                    // after the sink accepted frames
//	s.Rewind()                          // after it failed: hand out again from the ack
//
// Append may run concurrently with Read, Ack, Rewind and Stats. The spool
// has one reader position: it is meant for one consumer.
//
// # Layout
//
// A directory holds numbered segment files (00000000000000000001.seg, ...),
// an ack file and a LOCK file (flock: one Spool per directory). A segment
// starts with the 8-byte magic "scbdspl1" and holds records:
//
//	u32 LE length of body | u32 LE CRC-32C (Castagnoli) of body | body
//	body = u8 version (1 or 2) | id [16] | uvarint seq | varint unix seconds |
//	       uvarint nanoseconds | uvarint len + port | uvarint len + payload
//	       [version 2: uvarint len + fields, the frame's decoded fields]
//
// Version 2 is written only for frames with fields; the others are version
// 1, byte for byte as before fields existed.
//
// A Cursor is a (segment, offset) position. The ack file holds the last
// acknowledged position (magic "scbdack1", segment, offset, CRC-32C). With
// SyncBatch it is replaced atomically (write temporary, fsync, rename, fsync
// directory); otherwise each Ack writes it in place (one write(2), no fsync)
// and Close fsyncs it.
// Segments are rolled at Options.SegmentSize; a segment is deleted once
// every record in it is acknowledged (the active segment is kept until it
// is rolled). Each Open starts a new segment, so records written after a
// restart never share a segment with recovered ones.
//
// # Durability (what a crash can lose)
//
// "Appended" means Append returned nil. kill -9 (process crash, kernel
// and disk fine) never loses an appended frame under any policy: data is
// in the page cache once write(2) returns. A power cut or kernel crash can
// lose:
//
//	SyncBatch    (default) nothing appended: Append returns after fsync.
//	             Cost: one fsync per Append call (group commit), so batch.
//	SyncInterval frames appended in the last SyncEvery (default 1 s)
//	             before the cut; segments are fsynced when rolled. The
//	             fsync comes SyncEvery after the first Append that follows
//	             the previous one: at most one per SyncEvery, none while
//	             idle (no timer runs).
//	SyncNone     anything not yet written back by the kernel (typically
//	             up to ~30 s on Linux: dirty_expire_centisecs); only Close
//	             fsyncs.
//
// A frame is lost only if it is lost before being acknowledged: after a
// restart, every frame after the last persisted ack is handed out again
// (at-least-once; sinks dedupe by id), except where a crash fell inside an
// Ack after it deleted the segments it acknowledged and before its ack
// reached the file: the spool then resumes at the oldest segment left,
// skipping only frames that interrupted Ack covered (see Recovery). Under SyncInterval and SyncNone the
// ack file is not fsynced until Close (the kernel writes it back, within
// 30 s by default on Linux), so a power cut may replay the frames
// acknowledged in that time, or all the segments kept if it tore the
// file; never less. A kill -9 replays no more than under SyncBatch.
// Read only hands out frames whose Append has completed (with SyncBatch:
// whose fsync has completed).
//
// # Recovery
//
// Open scans every segment. A record is bad if its length is out of range
// (< minimum body, > MaxRecordSize), the file ends inside it, its CRC-32C
// does not match or its body does not parse. Then:
//
//   - If a valid record follows (found at the bad record's claimed end, or
//     else by a byte-by-byte resync), only the damaged bytes are skipped:
//     later good records are kept and delivered. The bytes stay in the file
//     (nothing is rewritten) and readers jump over them.
//   - If no valid record follows, the damage is a torn tail (a write cut by
//     a crash): the file is truncated there. Damage in the last record of
//     a segment cannot be told from a torn write, so it is cut too.
//   - A .seg file that is no segment (no segment magic, unreadable, not a
//     regular file, or not named NNNNNNNNNNNNNNNNNNNN.seg) is renamed to
//     NAME.corrupt.
//   - An empty segment file (its header lost: a power cut before the
//     kernel wrote it back, a truncation) is removed: the frames written
//     to it are lost, and how many is not known.
//   - A damaged ack file restarts delivery at the oldest segment kept
//     (redelivery, not loss; Recovery().AckReset). A missing one is a spool
//     that never acknowledged a frame: not damage.
//   - An ack file naming a segment that is gone restarts delivery at the
//     oldest segment kept. That is what a crash inside Ack leaves: Ack
//     deletes the segments its cursor covers before it replaces the ack
//     file (so acking frees a full disk even when the ack file cannot be
//     written). Delivery then resumes after the last Ack that returned and
//     no later than the cursor of the one interrupted; the frames skipped
//     were covered by that Ack, so delivered.
//
// Every region and file is logged at error level with its file, counted in
// Stats.CorruptRecords and listed in Recovery(). Open never fails because of damage. Resync can
// in theory accept bytes inside a damaged record's payload that happen to
// form a valid record (a 32-bit CRC over a plausible length must match):
// only adversarial payloads that embed spool records make that likely.
//
// # Capacity and overflow
//
// Options.MaxBytes caps the segment files (acknowledged records count
// until their segment is deleted; SegmentSize is lowered to MaxBytes/4 so
// the cap is reachable in whole segments). When an Append would pass it:
//
//	DropOldest (default) whole segments are deleted, oldest first, even if
//	           not yet acknowledged; their undelivered frames are counted
//	           in Stats.DroppedFrames and logged at error level with the
//	           file. Frames Read had handed out count only if they are not
//	           acknowledged before a Rewind or Close.
//	Block      Append returns ErrFull and writes nothing; the caller stops
//	           reading (the device's buffer fills) and retries after Ack.
//
// Unless Options.SegmentSize is set, a segment is at most an eighth of the
// room the spool has on its file system at Open (free space plus its own
// files, 64 KiB at least), so a drop on a full disk that is smaller than
// the cap frees about an eighth of the backlog, not most of it.
//
// A full disk (ENOSPC) is handled the same way: a partial write is cut back
// so the spool stays consistent, a fully acknowledged active segment is
// recycled, DropOldest drops old segments and retries, and otherwise
// Append returns an error matching both ErrFull and syscall.ENOSPC. The
// spool keeps working once space returns.
package spool
