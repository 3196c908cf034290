package spool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/serialcb"
)

// writeSegment makes a spool in a new directory holding frames in its first
// segment and returns the directory, the segment path and the offset of
// each record (plus the end).
func writeSegment(t *testing.T, frames []*serialcb.Frame) (dir, seg string, offs []int64) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(Options{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(frames); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seg = filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segExt))
	off := segHeaderSize
	for _, f := range frames {
		offs = append(offs, off)
		off += int64(recordSize(f))
	}
	offs = append(offs, off)
	if fi, err := os.Stat(seg); err != nil || fi.Size() != off {
		t.Fatalf("segment %v size, want %d: %v", fi, off, err)
	}
	return dir, seg, offs
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// Cutting the last segment at every byte inside its last record (a torn
// write) keeps every earlier record, cuts exactly the torn bytes and reports
// them; the spool then works normally.
func TestTornTailEveryOffset(t *testing.T) {
	in := mkFrames("ttyS0", 1, 5, 40)
	master, seg, offs := writeSegment(t, in)
	last, end := offs[4], offs[5]
	for cut := last + 1; cut < end; cut++ {
		dir := copyDir(t, master)
		p := filepath.Join(dir, filepath.Base(seg))
		if err := os.Truncate(p, cut); err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zapcore.WarnLevel)
		s, err := Open(Options{Dir: dir}, zap.New(core))
		if err != nil {
			t.Fatalf("cut %d: Open: %v", cut, err)
		}
		r := s.Recovery()
		if len(r.Damage) != 1 || r.Damage[0].Action != "truncated" || r.Damage[0].Offset != last ||
			r.TruncatedBytes != cut-last || s.Stats().TruncatedBytes != cut-last {
			t.Fatalf("cut %d: report %+v", cut, r)
		}
		if logs.Len() == 0 {
			t.Fatalf("cut %d: damage not logged", cut)
		}
		if fi, _ := os.Stat(p); fi.Size() != last {
			t.Fatalf("cut %d: file is %d bytes, want %d", cut, fi.Size(), last)
		}
		if err := s.Append(mkFrames("ttyS0", 6, 1, 40)); err != nil {
			t.Fatal(err)
		}
		got, _ := readAll(t, s, 100)
		if len(got) != 5 || got[3].Seq != 4 || got[4].Seq != 6 {
			t.Fatalf("cut %d: got %d frames", cut, len(got))
		}
		for i := range 4 {
			if !sameFrame(got[i], in[i]) {
				t.Fatalf("cut %d: frame %d differs", cut, i)
			}
		}
		s.Close()
	}
}

// Damage in the middle of a segment is skipped: the records after it are
// kept and delivered. Damage in the last record cannot be told from a torn
// write, so it is cut.
func TestCorruptRecord(t *testing.T) {
	in := mkFrames("ttyS0", 1, 6, 30)
	master, seg, offs := writeSegment(t, in)
	tests := []struct {
		name     string
		at       int64
		xor      byte
		wantSeqs []uint64
		action   string
		reason   string
	}{
		{"body byte of record 3", offs[2] + recHeaderSize + 20, 0x01, []uint64{1, 2, 4, 5, 6}, "skipped", "CRC-32C mismatch"},
		{"crc of record 3", offs[2] + 5, 0x80, []uint64{1, 2, 4, 5, 6}, "skipped", "CRC-32C mismatch"},
		{"length of record 3 (shorter)", offs[2], 0x01, []uint64{1, 2, 4, 5, 6}, "skipped", ""},
		{"length of record 3 (huge)", offs[2] + 3, 0x40, []uint64{1, 2, 4, 5, 6}, "skipped", "bad length field"},
		{"first record", offs[0] + recHeaderSize + 1, 0xff, []uint64{2, 3, 4, 5, 6}, "skipped", "CRC-32C mismatch"},
		{"last record", offs[5] + recHeaderSize + 30, 0x01, []uint64{1, 2, 3, 4, 5}, "truncated", "CRC-32C mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, master)
			p := filepath.Join(dir, filepath.Base(seg))
			b, _ := os.ReadFile(p)
			b[tt.at] ^= tt.xor
			if err := os.WriteFile(p, b, 0o640); err != nil {
				t.Fatal(err)
			}
			s := open(t, Options{Dir: dir})
			r := s.Recovery()
			if len(r.Damage) != 1 || r.Damage[0].Action != tt.action || (tt.reason != "" && r.Damage[0].Reason != tt.reason) {
				t.Fatalf("report %+v", r)
			}
			if s.Stats().CorruptRecords != 1 {
				t.Fatalf("stats %+v", s.Stats())
			}
			got, c := readAll(t, s, 2)
			var seqs []uint64
			for _, f := range got {
				seqs = append(seqs, f.Seq)
				if !sameFrame(f, in[f.Seq-1]) {
					t.Fatalf("frame %d differs", f.Seq)
				}
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tt.wantSeqs) {
				t.Fatalf("seqs %v, want %v", seqs, tt.wantSeqs)
			}
			// Acking past the damage and reopening: nothing comes back.
			if err := s.Ack(c); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = open(t, Options{Dir: dir})
			if got, _ := readAll(t, s, 10); len(got) != 0 {
				t.Fatalf("%d frames after ack and reopen", len(got))
			}
		})
	}
}

// The ack position is restored even when it lies after a skipped region.
func TestAckAfterSkippedRegion(t *testing.T) {
	in := mkFrames("p", 1, 6, 30)
	dir, seg, offs := writeSegment(t, in)
	s := open(t, Options{Dir: dir})
	fs, _, _ := s.Read(4)
	checkSeqs(t, fs, 1, 4)
	_, c, _ := s.Read(0)
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, _ := os.ReadFile(seg)
	b[offs[1]+recHeaderSize+3] ^= 1 // damage record 2, before the ack
	os.WriteFile(seg, b, 0o640)
	s = open(t, Options{Dir: dir})
	got, _ := readAll(t, s, 10)
	checkSeqs(t, got, 5, 6)
	if st := s.Stats(); st.Frames != 2 || st.CorruptRecords != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Damage appearing after Open (the file changed under the spool) is met by
// Read, skipped and counted; later records still come through.
func TestCorruptionWhileRunning(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	in := mkFrames("p", 1, 6, 30)
	if err := s.Append(in); err != nil {
		t.Fatal(err)
	}
	seg := segFiles(t, dir)[0]
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := segHeaderSize + 2*int64(recordSize(in[0])) + recHeaderSize + 1
	f.WriteAt([]byte{0xAA, 0xBB}, off)
	f.Close()
	got, _ := readAll(t, s, 100)
	var seqs []uint64
	for _, f := range got {
		seqs = append(seqs, f.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 4 5 6]" || s.Stats().CorruptRecords != 1 {
		t.Fatalf("seqs %v, stats %+v", seqs, s.Stats())
	}
}

const (
	childEnv     = "SPOOL_TEST_KILL9_DIR"
	childSyncEnv = "SPOOL_TEST_KILL9_SYNC" // the child's Sync mode
)

// runChild is the body of the process TestKill9 kills: it appends batches of
// 10 frames forever, printing "A <last seq>" after each Append returned, and
// after every 5th batch reads and acks everything, printing "R <seq>"
// before calling Ack and "K <seq>" after it returned. Each line reaches the
// pipe in one write(2) before the step it announces, so the parent reads
// exactly what the child had done (or begun) when it died.
func runChild(dir string) {
	mode, err := ParseSyncMode(os.Getenv(childSyncEnv))
	if err != nil {
		fmt.Println("E", err)
		os.Exit(3)
	}
	s, err := Open(Options{Dir: dir, SegmentSize: 4096, Sync: mode}, nil)
	if err != nil {
		fmt.Println("E", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	for seq, batch := 1, 1; ; batch++ {
		if err := s.Append(mkFrames("p", seq, 10, 50)); err != nil {
			fmt.Println("E", err)
			os.Exit(3)
		}
		seq += 10
		fmt.Fprintf(out, "A %d\n", seq-1)
		if batch%5 == 0 {
			fs, c, err := s.Read(1 << 20)
			if err != nil || len(fs) == 0 {
				fmt.Println("E read", err)
				os.Exit(3)
			}
			last := fs[len(fs)-1].Seq
			fmt.Fprintf(out, "R %d\n", last)
			out.Flush()
			if err := s.Ack(c); err != nil {
				fmt.Println("E ack", err)
				os.Exit(3)
			}
			fmt.Fprintf(out, "K %d\n", last)
		}
		out.Flush()
	}
}

// TestKillInsideAck builds what a kill -9 inside Ack leaves on disk: Ack
// deletes the segments wholly before the new position first, then replaces
// the ack file, and the kill came in between (with SyncBatch, usually
// during the ack file's fsync). The old ack then names a deleted segment
// and delivery resumes at the oldest segment left: after the old ack, at or
// before the new one, and not at a multiple of the batch the consumer acks.
// Nothing is lost: the frames skipped are those the interrupted Ack covered,
// so they were delivered.
func TestKillInsideAck(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, SegmentSize: 4096}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// The child of TestKill9 in miniature: 10 frames per Append (900
	// bytes: 40 frames per 4 KiB segment), an Ack every 50 frames.
	cycle := func(from int) Cursor {
		for seq := from; seq < from+50; seq += 10 {
			if err := s.Append(mkFrames("p", seq, 10, 50)); err != nil {
				t.Fatal(err)
			}
		}
		fs, c, err := s.Read(1000)
		if err != nil || len(fs) != 50 {
			t.Fatalf("read %d frames: %v", len(fs), err)
		}
		return c
	}
	if err := s.Ack(cycle(1)); err != nil { // frames 1..50: the ack lies in segment 2 (41..80)
		t.Fatal(err)
	}
	oldAck, err := os.ReadFile(filepath.Join(dir, ackFile))
	if err != nil {
		t.Fatal(err)
	}
	oldSeg, _, _ := readAck(filepath.Join(dir, ackFile))
	if err := s.Ack(cycle(51)); err != nil { // frames 51..100: deletes segment 2
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.path(oldSeg)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment %d, wholly acknowledged, still there: %v", oldSeg, err)
	}
	// The kill came before the rename: the old ack file, the new one
	// perhaps written to ack.tmp.
	if err := os.Rename(filepath.Join(dir, ackFile), filepath.Join(dir, ackTmpFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ackFile), oldAck, 0o640); err != nil {
		t.Fatal(err)
	}

	s = open(t, Options{Dir: dir, SegmentSize: 4096})
	if r := s.Recovery(); r.AckReset || len(r.Damage) != 0 {
		t.Fatalf("recovery %+v", r)
	}
	got, _ := readAll(t, s, 1000)
	checkSeqs(t, got, 81, 100) // segment 3's first frame: 51..80 were covered by the interrupted Ack
}

// TestKill9 kills a real process (SIGKILL, no Close, no deferred code) while
// it appends and acks, then reopens its spool: every frame whose Append
// returned and that no Ack had covered comes back, in order, and no frame
// whose Ack returned does.
//
// An Ack the kill interrupted may have taken effect in part: it deletes the
// segments it covers before it replaces the ack file, and recovery then
// starts at the oldest segment left (see TestKillInsideAck). So delivery
// resumes after the last Ack that returned (K) and at most right after the
// last Ack begun (R), not necessarily at either.
//
// Under SyncInterval the ack is written in place without an fsync: a kill -9
// must not lose it either (rounds 3 to 5).
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for round := range 6 {
		mode := SyncBatch
		if round >= 3 {
			mode = SyncInterval
		}
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, childSyncEnv+"="+mode.String())
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill at the first line of kind killOn after killAt lines (the
		// child may be well ahead of what was read by then: round 1 tends
		// to hit an Ack under way), then read what the child had written
		// before it died, to the end.
		sc := bufio.NewScanner(stdout)
		lastA, lastR, lastK, lines, killed := 0, 0, 0, 0, false
		killAt, killOn := 200+137*(round%3), []string{"A", "R", "A"}[round%3]
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 || f[0] == "E" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child: %q", sc.Text())
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "A":
				lastA = n
			case "R":
				lastR = n
			case "K":
				lastK = n
			}
			if lines++; lines >= killAt && f[0] == killOn && !killed {
				cmd.Process.Kill() // SIGKILL
				killed = true
			}
		}
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child output ended before the kill: %v", sc.Err())
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL: %v", err)
		}

		s, err := Open(Options{Dir: dir}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := readAll(t, s, 1000)
		s.Close()
		if len(got) == 0 {
			if lastA > lastR {
				t.Fatalf("spool empty, but frames up to %d appended and acks begun only up to %d", lastA, lastR)
			}
			continue
		}
		first := int(got[0].Seq)
		if first <= lastK {
			t.Fatalf("resumed at %d, but the Ack up to %d had returned", first, lastK)
		}
		if first > lastR+1 {
			t.Fatalf("resumed at %d: frames %d..%d lost (acks begun only up to %d)", first, lastR+1, first-1, lastR)
		}
		for i, f := range got {
			if int(f.Seq) != first+i {
				t.Fatalf("gap or disorder at %d: seq %d", i, f.Seq)
			}
		}
		if end := int(got[len(got)-1].Seq); end < lastA {
			t.Fatalf("lost frames: appended up to %d, recovered up to %d", lastA, end)
		}
		t.Logf("round %d (%v): appended ≥%d, ack returned ≥%d, begun ≥%d; recovered %d..%d", round, mode, lastA, lastK, lastR, first, got[len(got)-1].Seq)
	}
}

// TestDiskFull fills a real 64 KiB tmpfs. Append fails with an error that
// matches both ErrFull and ENOSPC, leaves the spool consistent, and works
// again once acks free space. With DropOldest, a full disk drops the oldest
// segments instead.
func TestDiskFull(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o750)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	t.Run("block", func(t *testing.T) {
		dir := filepath.Join(mnt, "block")
		defer os.RemoveAll(dir)
		// One big segment: the disk fills in the middle of a write, which
		// must be cut back, and acking frees nothing until the full, acked
		// active segment is recycled.
		s := open(t, Options{Dir: dir, SegmentSize: 1 << 20, Overflow: Block})
		appended := 0
		var err error
		for i := 0; i < 10000; i++ {
			if err = s.Append(mkFrames("p", appended+1, 10, 100)); err != nil {
				break
			}
			appended += 10
		}
		if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrFull) {
			t.Fatalf("Append on a full disk = %v", err)
		}
		t.Logf("error: %v", err)
		if s.Stats().WriteErrors == 0 {
			t.Fatal("WriteErrors not counted")
		}
		got, c := readAll(t, s, 1000)
		checkSeqs(t, got, 1, appended) // no partial batch visible
		if err := s.Ack(c); err != nil {
			t.Logf("Ack on a full disk: %v", err) // the ack file may not fit; segments are freed anyway
		}
		for i := range 5 {
			if err := s.Append(mkFrames("p", appended+1, 10, 100)); err != nil {
				t.Fatalf("Append %d after space returned: %v", i, err)
			}
			appended += 10
		}
		s.Close()
		s = open(t, Options{Dir: dir})
		if r := s.Recovery(); len(r.Damage) != 0 {
			t.Fatalf("damage after disk full: %+v", r)
		}
		got, _ = readAll(t, s, 1000)
		if len(got) == 0 || int(got[len(got)-1].Seq) != appended {
			t.Fatalf("after reopen: %d frames", len(got))
		}
		s.Close()
	})

	t.Run("drop-oldest", func(t *testing.T) {
		dir := filepath.Join(mnt, "drop")
		defer os.RemoveAll(dir)
		s := open(t, Options{Dir: dir, SegmentSize: 8192})
		const n = 2000
		for i := 1; i <= n; i += 10 {
			if err := s.Append(mkFrames("p", i, 10, 100)); err != nil {
				t.Fatalf("Append %d: %v", i, err)
			}
		}
		st := s.Stats()
		if st.DroppedFrames == 0 || st.Frames+st.DroppedFrames != n {
			t.Fatalf("stats %+v", st)
		}
		got, _ := readAll(t, s, 1000)
		checkSeqs(t, got, n-len(got)+1, n)
	})

	// The disk fills while the active segment is the only one (another
	// spool took the space): its frames are dropped, not the new ones.
	t.Run("drop-oldest, one segment", func(t *testing.T) {
		dir := filepath.Join(mnt, "one")
		defer os.RemoveAll(dir)
		s := open(t, Options{Dir: dir, SegmentSize: 1 << 20})
		const n = 2000
		for i := 1; i <= n; i += 10 {
			if err := s.Append(mkFrames("p", i, 10, 100)); err != nil {
				t.Fatalf("Append %d: %v", i, err)
			}
		}
		st := s.Stats()
		if st.DroppedFrames == 0 || st.Frames+st.DroppedFrames != n {
			t.Fatalf("stats %+v", st)
		}
		got, _ := readAll(t, s, 1000)
		checkSeqs(t, got, n-len(got)+1, n)
		s.Close()
		s = open(t, Options{Dir: dir, SegmentSize: 1 << 20})
		defer s.Close()
		if r := s.Recovery(); len(r.Damage) != 0 || r.Frames != uint64(len(got)) {
			t.Fatalf("after reopen: %+v, want %d frames", r, len(got))
		}
	})
}
