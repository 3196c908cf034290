package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChild(dir) // never returns: the child is killed or exits
	}
	goleak.VerifyTestMain(m)
}

// mkFrames returns n frames with seq from..from+n-1 and payloads of size
// bytes (size < 0: varied, including empty and every byte value).
func mkFrames(port string, from, n, size int) []*serialcb.Frame {
	var gen serialcb.IDGen
	base := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	out := make([]*serialcb.Frame, n)
	for i := range out {
		seq := from + i
		at := base.Add(time.Duration(seq) * time.Millisecond)
		var p []byte
		switch {
		case size >= 0:
			p = bytes.Repeat([]byte{byte(seq)}, size)
		case seq%3 == 0:
			p = nil
		default:
			p = make([]byte, seq%300)
			for j := range p {
				p[j] = byte(j * 7)
			}
		}
		out[i] = &serialcb.Frame{ID: gen.New(at), Port: port, Seq: uint64(seq), ReceivedAt: at, Payload: p}
	}
	return out
}

func open(t testing.TB, opts Options) *Spool {
	t.Helper()
	s, err := Open(opts, zap.NewNop())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func readAll(t testing.TB, s *Spool, chunk int) ([]*serialcb.Frame, Cursor) {
	t.Helper()
	var all []*serialcb.Frame
	var last Cursor
	for {
		fs, c, err := s.Read(chunk)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		last = c
		if len(fs) == 0 {
			return all, last
		}
		all = append(all, fs...)
	}
}

func sameFrame(a, b *serialcb.Frame) bool {
	return a.ID == b.ID && a.Port == b.Port && a.Seq == b.Seq && a.ReceivedAt.Equal(b.ReceivedAt) &&
		bytes.Equal(a.Payload, b.Payload)
}

func checkSeqs(t *testing.T, got []*serialcb.Frame, from, to int) {
	t.Helper()
	if len(got) != to-from+1 {
		t.Fatalf("got %d frames, want %d (seq %d..%d)", len(got), to-from+1, from, to)
	}
	for i, f := range got {
		if f.Seq != uint64(from+i) {
			t.Fatalf("frame %d: seq %d, want %d", i, f.Seq, from+i)
		}
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir()})
	in := mkFrames("ttyUSB0", 1, 40, -1)
	in = append(in,
		&serialcb.Frame{Port: "", Seq: 0, Payload: []byte{}},                                    // zero frame
		&serialcb.Frame{Port: strings.Repeat("p", 300), Seq: 1 << 63, Payload: []byte{0, 0xff}}, // long port, big seq
		&serialcb.Frame{Port: "x", ReceivedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},        // before 1970
		&serialcb.Frame{Port: "y", ReceivedAt: time.Date(3000, 1, 1, 0, 0, 0, 999999999, time.UTC)},
	)
	if err := s.Append(in[:10]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Notify():
	default:
		t.Fatal("Append did not signal Notify")
	}
	if err := s.Append(in[10:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(nil); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, s, 7)
	if len(got) != len(in) {
		t.Fatalf("read %d frames, want %d", len(got), len(in))
	}
	for i := range in {
		if !sameFrame(got[i], in[i]) {
			t.Fatalf("frame %d: got %+v, want %+v", i, got[i], in[i])
		}
		if got[i].ReceivedAt.Location() != time.UTC {
			t.Fatalf("frame %d: ReceivedAt not UTC", i)
		}
	}
	if !got[40].ReceivedAt.IsZero() {
		t.Fatalf("zero time came back as %v", got[40].ReceivedAt)
	}
	// Payloads are owned: writing one must not touch its neighbour.
	if len(got[1].Payload) > 0 && len(got[2].Payload) > 0 {
		_ = append(got[1].Payload, 0xEE)
		if !bytes.Equal(got[2].Payload, in[2].Payload) {
			t.Fatal("payloads share capacity")
		}
	}
	st := s.Stats()
	if st.Frames != uint64(len(in)) || st.Unread != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOrderAcrossSegmentsAndAckDeletes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentSize: 512})
	const n = 1000
	in := mkFrames("p", 1, n, 64)
	for i := 0; i < n; i += 7 {
		if err := s.Append(in[i:min(i+7, n)]); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Segments < 100 || len(segFiles(t, dir)) != st.Segments {
		t.Fatalf("want many segments, stats %+v, files %d", st, len(segFiles(t, dir)))
	}
	var got []*serialcb.Frame
	for {
		fs, c, err := s.Read(13)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 {
			break
		}
		got = append(got, fs...)
		if err := s.Ack(c); err != nil {
			t.Fatal(err)
		}
	}
	checkSeqs(t, got, 1, n)
	st := s.Stats()
	if st.Segments != 1 || st.Frames != 0 || len(segFiles(t, dir)) != 1 {
		t.Fatalf("after acking all: stats %+v, files %v", st, segFiles(t, dir))
	}
}

func TestReopenResumesAfterAck(t *testing.T) {
	for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNone} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentSize: 1024, Sync: mode, SyncEvery: 5 * time.Millisecond}
			s := open(t, opts)
			if err := s.Append(mkFrames("p", 1, 100, 20)); err != nil {
				t.Fatal(err)
			}
			fs, c, _ := s.Read(40)
			checkSeqs(t, fs, 1, 40)
			if err := s.Ack(c); err != nil {
				t.Fatal(err)
			}
			fs, _, _ = s.Read(20) // handed out, never acked
			checkSeqs(t, fs, 41, 60)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, _, err := s.Read(1); !errors.Is(err, ErrClosed) {
				t.Fatalf("Read after Close: %v", err)
			}
			if err := s.Append(mkFrames("p", 1, 1, 1)); !errors.Is(err, ErrClosed) {
				t.Fatalf("Append after Close: %v", err)
			}

			s = open(t, opts)
			if st := s.Stats(); st.Frames != 60 {
				t.Fatalf("after reopen Frames = %d, want 60", st.Frames)
			}
			if r := s.Recovery(); len(r.Damage) != 0 || r.AckReset || r.Frames != 60 {
				t.Fatalf("recovery %+v", r)
			}
			if err := s.Append(mkFrames("p", 101, 5, 20)); err != nil {
				t.Fatal(err)
			}
			got, _ := readAll(t, s, 9)
			checkSeqs(t, got, 41, 105)
		})
	}
}

func TestRewind(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), SegmentSize: 300})
	if err := s.Append(mkFrames("p", 1, 30, 10)); err != nil {
		t.Fatal(err)
	}
	fs, c, _ := s.Read(10)
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	fs, _, _ = s.Read(15)
	checkSeqs(t, fs, 11, 25)
	s.Rewind()
	got, _ := readAll(t, s, 4)
	checkSeqs(t, got, 11, 30)
	if st := s.Stats(); st.Frames != 20 || st.Unread != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A cursor returned before a Rewind can still be acknowledged: it means
// "delivered", whatever the reader did since.
func TestAckOldCursorAfterRewindAndBadCursor(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir()})
	if err := s.Append(mkFrames("p", 1, 10, 10)); err != nil {
		t.Fatal(err)
	}
	_, c5, _ := s.Read(5)
	s.Read(5)
	s.Rewind()
	if err := s.Ack(c5); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, s, 100)
	checkSeqs(t, got, 6, 10)
	if err := s.Ack(c5); err != nil { // already acked: no-op
		t.Fatal(err)
	}
	bad := Cursor{seg: c5.seg, off: 1 << 40}
	if err := s.Ack(bad); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("Ack(bad) = %v, want ErrBadCursor", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	open(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir}, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		in      Options
		wantErr bool
		wantSeg int64
	}{
		{"defaults", Options{Dir: "d"}, false, DefaultSegmentSize},
		{"no dir", Options{}, true, 0},
		{"negative cap", Options{Dir: "d", MaxBytes: -1}, true, 0},
		{"cap lowers segment", Options{Dir: "d", MaxBytes: 4 << 20}, false, 1 << 20},
		{"tiny segment raised", Options{Dir: "d", SegmentSize: 10}, false, minSegmentSize},
		{"cap below two segments", Options{Dir: "d", MaxBytes: 300}, true, 0},
		{"bad sync", Options{Dir: "d", Sync: 7}, true, 0},
		{"bad overflow", Options{Dir: "d", Overflow: 7}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrBadOptions) {
					t.Fatalf("err %v does not match ErrBadOptions", err)
				}
				return
			}
			if got.SegmentSize != tt.wantSeg || got.SyncEvery != DefaultSyncEvery {
				t.Fatalf("got %+v", got)
			}
		})
	}
	for _, m := range []SyncMode{SyncBatch, SyncInterval, SyncNone} {
		if p, err := ParseSyncMode(m.String()); err != nil || p != m {
			t.Fatalf("ParseSyncMode(%v) = %v, %v", m, p, err)
		}
	}
	for _, o := range []OverflowPolicy{DropOldest, Block} {
		if p, err := ParseOverflowPolicy(o.String()); err != nil || p != o {
			t.Fatalf("ParseOverflowPolicy(%v) = %v, %v", o, p, err)
		}
	}
	if _, err := ParseSyncMode("always"); err == nil {
		t.Fatal("ParseSyncMode accepted junk")
	}
	if _, err := ParseOverflowPolicy("drop"); err == nil {
		t.Fatal("ParseOverflowPolicy accepted junk")
	}
}

func TestMaxBytesDropOldest(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, MaxBytes: 4096}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 300
	for _, f := range mkFrames("p", 1, n, 64) {
		if err := s.Append([]*serialcb.Frame{f}); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Bytes > 4096 {
			t.Fatalf("Bytes %d over the cap", st.Bytes)
		}
	}
	st := s.Stats()
	if st.DroppedFrames == 0 || st.Frames+st.DroppedFrames != n {
		t.Fatalf("stats %+v: want drops and Frames+Dropped = %d", st, n)
	}
	got, _ := readAll(t, s, 50)
	checkSeqs(t, got, n-len(got)+1, n) // the newest survive, in order
	if logs.FilterMessageSnippet("DROPPED").Len() == 0 {
		t.Fatal("drops were not logged")
	}
}

// Frames handed out but not acked when their segment is dropped are not
// counted as dropped once a later Ack of their cursor says they were
// delivered (TestDropOldestCountsOnlyLostFrames has the other cases).
func TestDropOldestWhileReading(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 4096})
	if err := s.Append(mkFrames("p", 1, 10, 64)); err != nil {
		t.Fatal(err)
	}
	_, c, _ := s.Read(5)
	for i := 11; i <= 200; i++ {
		if err := s.Append(mkFrames("p", i, 1, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, s, 1000)
	st := s.Stats()
	if got[len(got)-1].Seq != 200 || st.Frames+st.DroppedFrames+5 != 200 {
		t.Fatalf("last %d, stats %+v", got[len(got)-1].Seq, st)
	}
}

func TestMaxBytesBlock(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 4096, Overflow: Block})
	appended := 0
	var err error
	for i := 1; i < 1000; i++ {
		if err = s.Append(mkFrames("p", i, 1, 64)); err != nil {
			break
		}
		appended++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Append = %v, want ErrFull", err)
	}
	st := s.Stats()
	if st.Bytes > 4096 || st.DroppedFrames != 0 || st.Frames != uint64(appended) {
		t.Fatalf("stats %+v after %d appends", st, appended)
	}
	got, c := readAll(t, s, 1000)
	checkSeqs(t, got, 1, appended)
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(mkFrames("p", appended+1, 1, 64)); err != nil {
		t.Fatalf("Append after Ack freed space: %v", err)
	}
	// A batch larger than the cap can never fit.
	if err := s.Append(mkFrames("p", 1, 1, 5000)); !errors.Is(err, ErrFull) {
		t.Fatalf("oversize batch: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir()})
	f := &serialcb.Frame{Payload: make([]byte, MaxRecordSize)}
	if err := s.Append([]*serialcb.Frame{f}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
}

// Append in one goroutine, Read/Ack in another, woken by Notify: run
// under -race.
func TestConcurrentAppendReadAck(t *testing.T) {
	for _, mode := range []SyncMode{SyncBatch, SyncInterval} {
		t.Run(mode.String(), func(t *testing.T) {
			s := open(t, Options{Dir: t.TempDir(), SegmentSize: 2048, Sync: mode, SyncEvery: time.Millisecond})
			const n = 3000
			in := mkFrames("p", 1, n, 32)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i += 50 {
					if err := s.Append(in[i : i+50]); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			var got []*serialcb.Frame
			deadline := time.After(20 * time.Second)
			for len(got) < n {
				fs, c, err := s.Read(64)
				if err != nil {
					t.Fatal(err)
				}
				if len(fs) == 0 {
					select {
					case <-s.Notify():
					case <-deadline:
						t.Fatalf("stalled at %d frames", len(got))
					}
					continue
				}
				got = append(got, fs...)
				if err := s.Ack(c); err != nil {
					t.Fatal(err)
				}
				_ = s.Stats()
			}
			wg.Wait()
			checkSeqs(t, got, 1, n)
		})
	}
}

func TestAckFileDamaged(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	if err := s.Append(mkFrames("p", 1, 10, 8)); err != nil {
		t.Fatal(err)
	}
	_, c, _ := s.Read(4)
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, ackFile), []byte("garbage"), 0o640); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Dir: dir})
	if !s.Recovery().AckReset {
		t.Fatal("AckReset not reported")
	}
	got, _ := readAll(t, s, 100)
	checkSeqs(t, got, 1, 10) // redelivered, never lost
}

func TestEmptyReopensLeaveOneSegment(t *testing.T) {
	dir := t.TempDir()
	for range 5 {
		s := open(t, Options{Dir: dir})
		s.Close()
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files after empty reopens", n)
	}
}

// A file with no segment header is set aside, not trusted, not fatal.
func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, fmt.Sprintf("%020d%s", 7, segExt))
	if err := os.WriteFile(bad, []byte("this is not a spool segment"), 0o640); err != nil {
		t.Fatal(err)
	}
	s := open(t, Options{Dir: dir})
	r := s.Recovery()
	if len(r.Damage) != 1 || r.Damage[0].Action != "quarantined" {
		t.Fatalf("recovery %+v", r)
	}
	if _, err := os.Stat(bad + ".corrupt"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(mkFrames("p", 1, 3, 3)); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, s, 10)
	checkSeqs(t, got, 1, 3)
}
