package spool

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// openLogged opens a spool whose logs the test reads.
func openLogged(t *testing.T, opts Options) (*Spool, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := Open(opts, zap.New(core))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

// A clean restart of a spool that never acknowledged anything (its sink
// never delivered, or it never had frames) is not damage.
func TestCleanReopenWithoutAckIsNotDamage(t *testing.T) {
	for _, frames := range []int{0, 20} {
		t.Run(fmt.Sprintf("%d frames", frames), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, Options{Dir: dir})
			if frames > 0 {
				if err := s.Append(mkFrames("p", 1, frames, 16)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			s, logs := openLogged(t, Options{Dir: dir})
			if r := s.Recovery(); r.AckReset || len(r.Damage) != 0 || r.Frames != uint64(frames) {
				t.Errorf("recovery %+v, want no damage and %d frames", r, frames)
			}
			for _, e := range logs.All() {
				if e.Level >= zapcore.WarnLevel || strings.Contains(e.Message, "damage") {
					t.Errorf("clean reopen logged %v %q %v", e.Level, e.Message, e.ContextMap())
				}
			}
			got, _ := readAll(t, s, 100)
			if len(got) != frames {
				t.Errorf("%d frames read back, want %d", len(got), frames)
			}
		})
	}
}

// An ack file that exists but cannot be read is damage (delivery restarts
// at the oldest frame kept), and says so.
func TestDamagedAckIsReported(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	if err := s.Append(mkFrames("p", 1, 10, 16)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, ackFile), []byte("garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	s, logs := openLogged(t, Options{Dir: dir})
	if !s.Recovery().AckReset {
		t.Error("a damaged ack file is not reported")
	}
	if logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("ack").Len() == 0 {
		t.Errorf("no warning about the ack file: %v", logs.All())
	}
}

// lossLogged returns the error-level entries that name file.
func lossLogged(logs *observer.ObservedLogs, file string) []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, file) {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// The frames of a segment the file system emptied (a power cut after the
// file was created, a truncation) are lost: logged at error level with the
// file, and counted.
func TestEmptiedLastSegmentIsALoss(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	if err := s.Append(mkFrames("p", 1, 10_000, 8)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	segs := segFiles(t, dir)
	last := filepath.Base(segs[len(segs)-1])
	if err := os.Truncate(filepath.Join(dir, last), 0); err != nil {
		t.Fatal(err)
	}
	s, logs := openLogged(t, Options{Dir: dir})
	r := s.Recovery()
	if len(r.Damage) != 1 || r.Damage[0].Segment != last {
		t.Fatalf("recovery %+v, want the emptied segment %s as damage", r, last)
	}
	if st := s.Stats(); st.CorruptRecords != 1 {
		t.Errorf("CorruptRecords = %d, want 1", st.CorruptRecords)
	}
	if len(lossLogged(logs, last)) == 0 {
		t.Errorf("no error naming %s: %v", last, logs.All())
	}
}

// The frames written before a file was emptied are counted when the ack
// tells how far the segment went.
func TestEmptiedSegmentBehindTheAck(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	if err := s.Append(mkFrames("p", 1, 100, 8)); err != nil {
		t.Fatal(err)
	}
	_, c, _ := s.Read(40)
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	segs := segFiles(t, dir)
	last := filepath.Base(segs[len(segs)-1])
	if err := os.Truncate(filepath.Join(dir, last), 0); err != nil {
		t.Fatal(err)
	}
	s, logs := openLogged(t, Options{Dir: dir})
	if r := s.Recovery(); len(r.Damage) != 1 || r.Damage[0].Segment != last {
		t.Fatalf("recovery %+v, want %s as damage", r, last)
	}
	if len(lossLogged(logs, last)) == 0 {
		t.Errorf("no error naming %s: %v", last, logs.All())
	}
	if err := s.Append(mkFrames("p", 101, 5, 8)); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, s, 100)
	checkSeqs(t, got, 101, 105) // the spool carries on
}

// A .seg file that is not a segment (a foreign name, a directory, a
// dangling link) is renamed *.corrupt, counted and logged with its name.
func TestForeignSegFilesAreQuarantined(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	if err := s.Append(mkFrames("p", 1, 3, 8)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	foreign := []string{"notes.seg", "00000000000000000077.seg", "00000000000000000078.seg"}
	if err := os.WriteFile(filepath.Join(dir, foreign[0]), []byte("not a segment"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, foreign[1]), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, foreign[2])); err != nil {
		t.Fatal(err)
	}
	s, logs := openLogged(t, Options{Dir: dir})
	r := s.Recovery()
	if len(r.Damage) != len(foreign) {
		t.Errorf("recovery %+v, want %d quarantined files", r, len(foreign))
	}
	if st := s.Stats(); st.CorruptRecords != uint64(len(foreign)) {
		t.Errorf("CorruptRecords = %d, want %d", st.CorruptRecords, len(foreign))
	}
	for _, name := range foreign {
		if _, err := os.Lstat(filepath.Join(dir, name+".corrupt")); err != nil {
			t.Errorf("%s not renamed *.corrupt: %v", name, err)
		}
		if len(lossLogged(logs, name)) == 0 {
			t.Errorf("no error naming %s", name)
		}
	}
	got, _ := readAll(t, s, 100)
	checkSeqs(t, got, 1, 3)
}

// Frames handed out by Read when their segment is dropped are not counted
// as dropped once they are delivered (acknowledged); they are when they
// can no longer be (Rewind, Close).
func TestDropOldestCountsOnlyLostFrames(t *testing.T) {
	fill := func(t *testing.T, s *Spool) Cursor {
		t.Helper()
		if err := s.Append(mkFrames("p", 1, 10, 64)); err != nil {
			t.Fatal(err)
		}
		_, c, _ := s.Read(5) // in flight
		for i := 11; i <= 200; i++ {
			if err := s.Append(mkFrames("p", i, 1, 64)); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	t.Run("delivered", func(t *testing.T) {
		s := open(t, Options{Dir: t.TempDir(), MaxBytes: 4096})
		c := fill(t, s)
		if err := s.Ack(c); err != nil {
			t.Fatal(err)
		}
		got, _ := readAll(t, s, 1000)
		st := s.Stats()
		if uint64(len(got))+st.DroppedFrames+5 != 200 {
			t.Fatalf("%d read, stats %+v: want read + dropped + 5 delivered = 200", len(got), st)
		}
	})
	t.Run("rewound", func(t *testing.T) {
		s := open(t, Options{Dir: t.TempDir(), MaxBytes: 4096})
		fill(t, s)
		s.Rewind() // the 5 will not be handed out again: lost
		got, _ := readAll(t, s, 1000)
		if st := s.Stats(); uint64(len(got))+st.DroppedFrames != 200 {
			t.Fatalf("%d read, stats %+v: want read + dropped = 200", len(got), st)
		}
	})
}

// Segments are sized from the free space too, so that a drop on a full
// disk frees a small part of the backlog, not most of it.
func TestAutoSegmentSize(t *testing.T) {
	tests := []struct {
		name                string
		seg, maxBytes       int64 // after Options.withDefaults
		fsAvail, spoolBytes int64
		want                int64
	}{
		{"big disk", 8 << 20, 1 << 30, 100 << 30, 0, 8 << 20},
		{"10 MB free, 1 GiB cap", 8 << 20, 1 << 30, 10 << 20, 0, 10 << 20 / 8},
		{"full disk, 12 MB spooled", 8 << 20, 1 << 30, 0, 12 << 20, 12 << 20 / 8},
		{"nearly nothing", 8 << 20, 1 << 30, 1 << 10, 0, minAutoSegmentSize},
		{"small cap wins", 1 << 20, 4 << 20, 100 << 30, 0, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := autoSegmentSize(tt.seg, tt.fsAvail, tt.spoolBytes); got != tt.want {
				t.Errorf("autoSegmentSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// On a real small disk (a 1 MiB tmpfs) with the default 1 GiB cap, a drop
// on the full disk removes about an eighth of the backlog, not most of it.
func TestFullSmallDiskDropsLittle(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o750)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	s := open(t, Options{Dir: filepath.Join(mnt, "spool"), MaxBytes: 1 << 30})
	for i := 1; i <= 20_000; i += 10 {
		before := s.Stats()
		if err := s.Append(mkFrames("p", i, 10, 100)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		after := s.Stats()
		if dropped := after.DroppedFrames - before.DroppedFrames; dropped > 0 {
			if share := float64(dropped) / float64(before.Frames); share > 0.2 {
				t.Fatalf("one drop removed %d of %d frames (%.0f%%), want at most ~1/8", dropped, before.Frames, 100*share)
			}
			t.Logf("first drop: %d of %d frames", dropped, before.Frames)
			return
		}
	}
	t.Fatal("the disk never filled")
}
