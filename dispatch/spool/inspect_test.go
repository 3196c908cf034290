package spool

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func checkSummary(t *testing.T, dir string, want Summary) {
	t.Helper()
	got, err := Inspect(dir)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if got.Frames != want.Frames || got.Bytes != want.Bytes || got.Segments != want.Segments ||
		!got.Oldest.Equal(want.Oldest) || !got.Newest.Equal(want.Newest) ||
		got.Damaged != want.Damaged || got.Quarantined != want.Quarantined {
		t.Errorf("Inspect:\n got %+v\nwant %+v", got, want)
	}
}

// Inspect agrees with the open Spool's own Stats (frames after the ack,
// bytes, segments) and finds the time range, without taking the lock.
func TestInspectWhileOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentSize: 4096})
	frames := mkFrames("gps", 1, 200, 50)
	for i := 0; i < len(frames); i += 20 {
		if err := s.Append(frames[i : i+20]); err != nil {
			t.Fatal(err)
		}
	}
	fs, cur, err := s.Read(70)
	if err != nil || len(fs) != 70 {
		t.Fatalf("Read: %d %v", len(fs), err)
	}
	if err := s.Ack(cur); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Segments < 3 {
		t.Fatalf("want several segments, have %d", st.Segments)
	}
	checkSummary(t, dir, Summary{Frames: st.Frames, Bytes: st.Bytes, Segments: st.Segments,
		Oldest: frames[70].ReceivedAt, Newest: frames[199].ReceivedAt})

	// Everything acknowledged: nothing waits.
	_, cur = readAll(t, s, 1000)
	if err := s.Ack(cur); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	checkSummary(t, dir, Summary{Bytes: st.Bytes, Segments: st.Segments})
}

// A torn record at the end of the newest segment is an Append in progress,
// not damage; a damaged record in an older segment is counted, and the
// frames around it still are.
func TestInspectTornAndDamaged(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentSize: 2048})
	frames := mkFrames("gps", 1, 60, 40)
	for i := 0; i < len(frames); i += 10 {
		if err := s.Append(frames[i : i+10]); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, dir)
	newest := segs[len(segs)-1]
	half := appendRecord(nil, mkFrames("gps", 61, 1, 40)[0])
	half = half[:len(half)/2]
	f, err := os.OpenFile(newest, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(half); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := Summary{Frames: st.Frames, Bytes: st.Bytes + int64(len(half)), Segments: st.Segments,
		Oldest: frames[0].ReceivedAt, Newest: frames[59].ReceivedAt}
	checkSummary(t, dir, want)

	// Flip a byte inside the second record of the oldest segment.
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := decodeRecord(data[segHeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	data[int(segHeaderSize)+n+20] ^= 0xff
	if err := os.WriteFile(segs[0], data, 0o640); err != nil {
		t.Fatal(err)
	}
	want.Frames--
	want.Damaged = 1
	checkSummary(t, dir, want)

	// The same torn tail in an older segment is damage (Open would cut it).
	if err := os.WriteFile(segs[1], append(mustRead(t, segs[1]), half...), 0o640); err != nil {
		t.Fatal(err)
	}
	want.Bytes += int64(len(half))
	want.Damaged = 2
	checkSummary(t, dir, want)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Without an ack file every frame is waiting; quarantined files
// and a missing directory are reported.
func TestInspectNoAckAndQuarantine(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	frames := mkFrames("gps", 1, 5, 10)
	if err := s.Append(frames); err != nil {
		t.Fatal(err)
	}
	_, cur := readAll(t, s, 2)
	if err := s.Ack(cur); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ackFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000000.seg.corrupt"), []byte("junk"), 0o640); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, dir, Summary{Frames: 5, Bytes: st.Bytes, Segments: st.Segments, Quarantined: 1,
		Oldest: frames[0].ReceivedAt, Newest: frames[4].ReceivedAt})
	if _, err := Inspect(filepath.Join(dir, "none")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing dir: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// Inspect runs safely next to a producer and a consumer: every snapshot is
// within what the spool held (run under -race).
func TestInspectConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentSize: 1024, Sync: SyncNone})
	frames := mkFrames("gps", 1, 2000, 30)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := 0; i < len(frames); i += 25 {
			if err := s.Append(frames[i : i+25]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for {
			fs, cur, err := s.Read(40)
			if err != nil {
				t.Error(err)
				return
			}
			if len(fs) > 0 {
				if err := s.Ack(cur); err != nil {
					t.Error(err)
					return
				}
				continue
			}
			select {
			case <-done:
				if st := s.Stats(); st.Frames == 0 {
					return
				}
			case <-s.Notify():
			}
		}
	})
	for range 50 {
		sum, err := Inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Frames > uint64(len(frames)) || sum.Damaged != 0 {
			t.Fatalf("snapshot %+v", sum)
		}
		if !sum.Oldest.IsZero() && sum.Oldest.Before(frames[0].ReceivedAt.Add(-time.Nanosecond)) {
			t.Fatalf("oldest %v before the first frame", sum.Oldest)
		}
	}
	wg.Wait()
	checkSummary(t, dir, Summary{Bytes: s.Stats().Bytes, Segments: s.Stats().Segments})
}
