package spool

import (
	"os"
	"path/filepath"
	"testing"
)

func activePath(s *Spool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.path(s.segs[len(s.segs)-1].id)
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// openMapped opens a spool in dir whose active segment is mapped, closed at
// the end of the test, or skips the test where segments are not mapped.
func openMapped(t *testing.T, dir string) *Spool {
	t.Helper()
	s, err := Open(Options{Dir: dir, Sync: SyncInterval, SegmentSize: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.wmap == nil {
		t.Skip("segment not mapped here")
	}
	return s
}

// TestMappedSegment: the active segment is preallocated and mapped, the
// frames stored into it read back, and sealing it (Close, a roll) leaves
// the file at the size of its records, so a reopen finds no damage.
func TestMappedSegment(t *testing.T) {
	dir := t.TempDir()
	const seg = 1 << 20
	s, err := Open(Options{Dir: dir, Sync: SyncInterval, SegmentSize: seg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	active := activePath(s)
	if s.wmap == nil || fileSize(t, active) != seg {
		t.Skipf("segment not mapped here (size %d): no fallocate on this file system", fileSize(t, active))
	}
	for i := range 100 {
		if err := s.Append(mkFrames("p", i, 1, 64)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := readAll(t, s, 1000)
	if len(got) != 100 || got[99].Seq != 99 {
		t.Fatalf("read %d frames back", len(got))
	}
	bytes := s.Stats().Bytes
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fileSize(t, active); n != bytes {
		t.Fatalf("closed segment is %d bytes, its records %d", n, bytes)
	}

	// A roll seals the full segment the same way.
	s, err = Open(Options{Dir: dir, Sync: SyncInterval, SegmentSize: 64 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r := s.Recovery(); len(r.Damage) != 0 || r.Frames != 100 {
		t.Fatalf("reopen: %+v", r)
	}
	first := activePath(s)
	for i := 100; activePath(s) == first; i++ {
		if err := s.Append(mkFrames("p", i, 1, 64)); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	sealed := s.segs[len(s.segs)-2].size
	s.mu.Unlock()
	if n := fileSize(t, first); n != sealed {
		t.Fatalf("rolled segment is %d bytes, its records %d", n, sealed)
	}
}

// TestMappedSegmentCrashTail: the files as a crash leaves them (the active
// segment still preallocated, zeros after the last record) recover every
// frame without reporting damage, and the zeros are cut.
func TestMappedSegmentCrashTail(t *testing.T) {
	dir := t.TempDir()
	s := openMapped(t, dir)
	if err := s.Append(mkFrames("p", 0, 50, 64)); err != nil {
		t.Fatal(err)
	}
	// Copy what is on the page cache now, as a kill -9 would leave it.
	crash := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crash, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Open(Options{Dir: crash, Sync: SyncInterval}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r := c.Recovery(); len(r.Damage) != 0 || r.Frames != 50 || r.TruncatedBytes != 0 {
		t.Fatalf("recovery of a preallocated segment: %+v", r)
	}
	if got, _ := readAll(t, c, 1000); len(got) != 50 {
		t.Fatalf("recovered %d frames, want 50", len(got))
	}
	if n, want := fileSize(t, filepath.Join(crash, filepath.Base(activePath(s)))), s.Stats().Bytes; n != want {
		t.Fatalf("recovered segment is %d bytes, its records %d", n, want)
	}
	sum, err := Inspect(dir) // the live spool, preallocation and all
	if err != nil || sum.Frames != 50 || sum.Damaged != 0 || sum.Bytes != s.Stats().Bytes {
		t.Fatalf("Inspect of the live spool: %+v, %v; want 50 frames, %d bytes, no damage", sum, err, s.Stats().Bytes)
	}
}

// TestMappedSegmentTruncatedUnderIt: a store into a mapping whose file was
// cut short by someone else faults; the Append fails with an error instead
// of killing the process, and the next Append goes through.
func TestMappedSegmentTruncatedUnderIt(t *testing.T) {
	dir := t.TempDir()
	s := openMapped(t, dir)
	if err := s.Append(mkFrames("p", 0, 1, 64)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(activePath(s), 0); err != nil {
		t.Fatal(err)
	}
	// The next store lands on a page past the new end of the file.
	if err := s.Append(mkFrames("p", 1, 1, 8000)); err == nil {
		t.Fatal("append into a truncated mapping succeeded")
	} else {
		t.Logf("append into a truncated mapping: %v", err)
	}
	if err := s.Append(mkFrames("p", 2, 1, 64)); err != nil {
		t.Fatalf("append after the fault: %v", err)
	}
}
