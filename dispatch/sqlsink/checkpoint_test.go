package sqlsink

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
)

// startTuned opens a sink whose checkpointer runs every `every` and whose
// writer checkpoints past walLimit pages.
func startTuned(t *testing.T, every time.Duration, walLimit int) (*Sink, Config) {
	t.Helper()
	s, cfg := newSink(t, nil)
	s.ckptEvery, s.dsn = every, dsn(cfg, walLimit)
	startUntilEnd(t, s)
	return s, cfg
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// With the writer's checkpoint off, the rows reach the database file
// while the sink is open only through the checkpointer.
func TestCheckpointerCopiesLog(t *testing.T) {
	s, cfg := startTuned(t, 10*time.Millisecond, 0)
	checkpointsWhileOpen(t, s, cfg)
}

// Past the row count the checkpoint does not wait for its period.
func TestCheckpointerComesSoonerPastRows(t *testing.T) {
	s, cfg := newSink(t, nil)
	s.ckptEvery, s.ckptRows, s.dsn = time.Hour, 2000, dsn(cfg, 0)
	startUntilEnd(t, s)
	checkpointsWhileOpen(t, s, cfg)
}

func checkpointsWhileOpen(t *testing.T, s *Sink, cfg Config) {
	t.Helper()
	before := fileSize(t, cfg.Path)
	all := frames(10_000)
	for i := 0; i < len(all); i += 500 {
		if err := s.Write(t.Context(), all[i:i+500]); err != nil {
			t.Fatal(err)
		}
	}
	// Ten thousand rows and their index take well over 100 pages.
	want := before + 100*4096
	deadline := time.Now().Add(30 * time.Second)
	for fileSize(t, cfg.Path) < want {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes after 10,000 rows (%d before): the log was not checkpointed", fileSize(t, cfg.Path), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := count(t, openDB(t, cfg), "frames"); n != len(all) {
		t.Fatalf("%d rows, want %d", n, len(all))
	}
}

// Commits back to back may never leave the log wholly copied at the start
// of a write, so it could not start over; past the limit the writer's own
// checkpoint makes it. Without it this log grows past 8 MiB.
func TestCheckpointerBoundsLog(t *testing.T) {
	const limit = 64 // pages
	s, cfg := startTuned(t, 2*time.Millisecond, limit)
	all := frames(40_000)
	for i := 0; i < len(all); i += 100 {
		if err := s.Write(t.Context(), all[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	// The log holds at most the limit plus one commit, and a few commits
	// more when the writer's checkpoint found the checkpointer busy.
	const bound = 4 << 20
	if size := fileSize(t, cfg.Path+"-wal"); size > bound {
		t.Fatalf("write-ahead log %d bytes, want at most %d", size, bound)
	}
	if n := count(t, openDB(t, cfg), "frames"); n != len(all) {
		t.Fatalf("%d rows, want %d", n, len(all))
	}
}

// Close stops the checkpointer (TestMain checks for leaked goroutines) and
// still leaves the database complete on its own.
func TestCheckpointerStopsAtClose(t *testing.T) {
	s, cfg := newSink(t, nil)
	s.ckptEvery = time.Hour // a checkpoint is pending when Close comes
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), frames(100)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The last connection to close removes the log; a reader elsewhere
	// would leave it, empty.
	if fi, err := os.Stat(cfg.Path + "-wal"); err == nil && fi.Size() != 0 {
		t.Fatalf("write-ahead log %d bytes after Close, want it checkpointed", fi.Size())
	}
	if n := count(t, openDB(t, cfg), "frames"); n != 100 {
		t.Fatalf("%d rows, want 100", n)
	}
}

// The checkpoint comes at the next multiple of its period on the clock
// (dispatch/tick), where the spool's fsync and the lanes' batches are due
// too: a first commit 1.3 s past a whole 5 s is checkpointed at 5 s.
func TestCheckpointerEndsOnMultiple(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckpt.db")
	synctest.Test(t, func(t *testing.T) {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		c := startCheckpointer(db, zap.NewNop(), 5*time.Second, checkpointRows)
		defer func() {
			if err := c.stop(); err != nil {
				t.Error(err)
			}
		}()
		// synctest's clock starts on a whole 5 s.
		time.Sleep(1300 * time.Millisecond)
		c.committed(1)
		synctest.Wait()
		time.Sleep(3699 * time.Millisecond)
		synctest.Wait()
		if !c.pending.Load() {
			t.Fatal("checkpoint before the multiple of 5 s")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if c.pending.Load() {
			t.Fatal("no checkpoint at the multiple of 5 s")
		}
	})
}
