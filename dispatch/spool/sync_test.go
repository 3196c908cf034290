package spool

import (
	"testing"
	"testing/synctest"
	"time"
)

// Under SyncInterval the spool fsyncs once per SyncEvery while frames flow,
// whatever the number of Appends and Acks, renames nothing, and does
// nothing at all while idle.
func TestSyncIntervalCostsOneFsyncPerPeriod(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(Options{Dir: dir, Sync: SyncInterval, SyncEvery: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		base := s.Stats() // Open's own fsyncs (the new segment, the directory)
		const periods = 5
		seq := 0
		for range periods * 100 { // 100 appends and acks per period
			if err := s.Append(mkFrames("p", seq, 1, 64)); err != nil {
				t.Fatal(err)
			}
			seq++
			fs, c, err := s.Read(10)
			if err != nil || len(fs) != 1 {
				t.Fatalf("read %d frames, %v", len(fs), err)
			}
			if err := s.Ack(c); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // the last period's fsync
		synctest.Wait()
		st := s.Stats()
		if n := st.Syncs - base.Syncs; n < periods-1 || n > periods+1 {
			t.Errorf("%d fsyncs over %d periods of 100 appends and acks, want about %d", n, periods, periods)
		}
		if st.Renames != base.Renames {
			t.Errorf("%d renames, want none", st.Renames-base.Renames)
		}
		idle := st.Syncs
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := s.Stats().Syncs - idle; n != 0 {
			t.Errorf("%d fsyncs in an idle hour", n)
		}
	})
}

// TestSyncAlignsToPeriod: the background fsync ends on a multiple of
// SyncEvery (dispatch/tick), where the other per-period work of the
// process is due too, never later than SyncEvery after the write.
func TestSyncAlignsToPeriod(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(Options{Dir: dir, Sync: SyncInterval, SyncEvery: time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// synctest's clock starts on a whole second; write 300 ms past it.
		time.Sleep(300 * time.Millisecond)
		base := s.Stats().Syncs
		if err := s.Append(mkFrames("p", 0, 1, 64)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(699 * time.Millisecond)
		synctest.Wait()
		if n := s.Stats().Syncs - base; n != 0 {
			t.Fatalf("%d fsyncs before the whole second", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := s.Stats().Syncs - base; n != 1 {
			t.Fatalf("%d fsyncs at the whole second, want 1", n)
		}
	})
}
