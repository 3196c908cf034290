package deadletter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fieldsKept reports whether dispatch.AppendJSON writes a frame's fields
// (it does once the decoder work lands); the round trip expects them back
// exactly when the record carries them.
func fieldsKept() bool {
	f := &serialcb.Frame{Fields: []byte(`{"a":1}`)}
	return bytes.Contains(dispatch.AppendJSON(nil, f), []byte(`"fields":`))
}

func randomFrames(rng *rand.Rand, n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	texts := []string{"$GPGGA,092653.00,4851.5022,N*5B", "température 21,4 °C", "a\"b\\c\td\x00e\x1f\r\n", "x\u2028y\u2029z", ""}
	frames := make([]*serialcb.Frame, n)
	for i := range frames {
		at := time.Unix(1_700_000_000+rng.Int64N(1e8), rng.Int64N(1e9)).In(time.FixedZone("X", 3600))
		var payload []byte
		switch i % 3 {
		case 0:
			payload = []byte(texts[rng.IntN(len(texts))])
		case 1:
			payload = make([]byte, rng.IntN(300))
			for j := range payload {
				payload[j] = byte(rng.UintN(256))
			}
		default:
			payload = []byte{0xb5, 0x62, byte(i), 0xff}
		}
		f := &serialcb.Frame{ID: gen.New(at), Port: fmt.Sprintf("port-%d", i%4), Seq: rng.Uint64(), ReceivedAt: at, Payload: payload}
		if i%2 == 0 {
			f.Fields = fmt.Appendf(nil, `{"n":%d,"s":"v\"%d","o":{"x":[1,2.5,null,true]}}`, i, i)
		}
		frames[i] = f
	}
	return frames
}

func letters(frames []*serialcb.Frame, failedAt time.Time) []dispatch.DeadLetter {
	out := make([]dispatch.DeadLetter, len(frames))
	for i, f := range frames {
		out[i] = dispatch.DeadLetter{
			Sink:     "api",
			Frame:    f,
			Err:      fmt.Sprintf("http 422: <bad> \"payload\" %d", i),
			Attempts: i%7 + 1,
			FailedAt: failedAt.Add(time.Duration(i) * time.Nanosecond),
		}
	}
	out[0].Err += " \xff" // invalid UTF-8 is stored as U+FFFD
	return out
}

func readAll(t *testing.T, path string) ([]deadletter.Letter, *deadletter.DamageError) {
	t.Helper()
	var got []deadletter.Letter
	err := deadletter.Read(path, func(l deadletter.Letter) error {
		got = append(got, l)
		return nil
	})
	var de *deadletter.DamageError
	if err != nil && !errors.As(err, &de) {
		t.Fatalf("Read: %v", err)
	}
	return got, de
}

func sameFrame(t *testing.T, i int, got, want *serialcb.Frame, withFields bool) {
	t.Helper()
	if got.ID != want.ID || got.Port != want.Port || got.Seq != want.Seq || !got.ReceivedAt.Equal(want.ReceivedAt) ||
		got.ReceivedAt.Location() != time.UTC || !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("frame %d:\n got %+v\nwant %+v", i, got, want)
	}
	wantFields := want.Fields
	if !withFields {
		wantFields = nil
	}
	if !bytes.Equal(got.Fields, wantFields) {
		t.Errorf("frame %d: fields %s, want %s", i, got.Fields, wantFields)
	}
}

// Random text and binary payloads, fields and nanosecond times come back
// from Read exactly as they were appended, over several Appends and a
// reopen.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), "sub", "api", "dead.jsonl")
	frames := randomFrames(rng, 300)
	failedAt := time.Date(2026, 11, 24, 18, 3, 4, 123456789, time.FixedZone("CET", 3600))
	want := letters(frames, failedAt)
	s, err := deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[:100]); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[100:101]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[101:]); !errors.Is(err, deadletter.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	s, err = deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[101:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("file mode: %v %v", st.Mode(), err)
	}

	got, de := readAll(t, path)
	if de != nil {
		t.Fatalf("damage: %v", de)
	}
	if len(got) != len(want) {
		t.Fatalf("%d letters, want %d", len(got), len(want))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'})
	withFields := fieldsKept()
	if !withFields {
		t.Log("dispatch.AppendJSON does not write fields yet: fields are not expected back")
	}
	for i, l := range got {
		w := want[i]
		if l.Line != i+1 || l.Sink != w.Sink || l.Attempts != w.Attempts || !l.FailedAt.Equal(w.FailedAt) {
			t.Errorf("letter %d: %+v", i, l)
		}
		if wantErr := strings.ToValidUTF8(w.Err, "\uFFFD"); l.Err != wantErr {
			t.Errorf("letter %d: error %q, want %q", i, l.Err, wantErr)
		}
		sameFrame(t, i, &l.Frame, w.Frame, withFields)
		// The letter re-encodes to the very line that was stored.
		if i > 0 && !bytes.Equal(l.AppendJSON(nil), lines[i]) {
			t.Errorf("letter %d re-encodes as\n%s\nwant\n%s", i, l.AppendJSON(nil), lines[i])
		}
		if dl := l.DeadLetter(); dl.Frame.ID != w.Frame.ID || dl.Err != l.Err || dl.Sink != w.Sink {
			t.Errorf("letter %d: DeadLetter() %+v", i, dl)
		}
	}
}

// A crash in the middle of an Append leaves a torn last line: Read hands
// out every whole letter and reports the torn line by number; the next Open
// starts a fresh line, so letters appended after it are whole.
func TestTornLastLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	want := letters(randomFrames(rng, 4), time.Now())
	s, err := deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the third line in its middle, as a crash during write(2) would.
	third := bytes.LastIndexByte(data[:len(data)-1], '\n') + 1
	if err := os.Truncate(path, int64(third+(len(data)-third)/2)); err != nil {
		t.Fatal(err)
	}

	got, de := readAll(t, path)
	if len(got) != 2 || de == nil || len(de.Lines) != 1 || de.Lines[0].Line != 3 {
		t.Fatalf("got %d letters, damage %v", len(got), de)
	}
	if !strings.Contains(de.Error(), "line 3") || !strings.Contains(de.Error(), "torn") {
		t.Errorf("damage message %q", de.Error())
	}

	s, err = deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(want[3:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, de = readAll(t, path)
	if len(got) != 3 || de == nil || len(de.Lines) != 1 || de.Lines[0].Line != 3 {
		t.Fatalf("after reopen: %d letters, damage %v", len(got), de)
	}
	if got[2].Line != 4 || got[2].Frame.ID != want[3].Frame.ID {
		t.Errorf("letter after the torn line: %+v", got[2])
	}
}

// Damaged lines in the middle are skipped and counted, each with its line
// number; an error from fn stops Read.
func TestDamagedLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	want := letters(randomFrames(rng, 2), time.Now())
	var b []byte
	b = append(b, "not json\n"...)
	b = append((&deadletter.Letter{Sink: "api", Frame: *want[0].Frame, FailedAt: want[0].FailedAt}).AppendJSON(b), '\n')
	b = append(b, `{"failed_at":"2026-01-01T00:00:00Z","sink":"api","frame":{"id":"nope","port":"p","seq":1,"received_at":"2026-01-01T00:00:00.000000000Z","payload":""}}`+"\n"...)
	b = append(b, `{"failed_at":"2026-01-01T00:00:00Z","sink":"api","frame":{"id":"`+want[1].Frame.ID.String()+`","port":"p","seq":1,"received_at":"2026-01-01T00:00:00.000000000Z","payload":"!!","encoding":"base64"}}`+"\n"...)
	b = append(b, `{"sink":"api"}`+"\n\n"...)
	b = append(b, "[1,2]\n"...)
	b = append((&deadletter.Letter{Sink: "api", Frame: *want[1].Frame, FailedAt: want[1].FailedAt}).AppendJSON(b), '\n')
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	got, de := readAll(t, path)
	if len(got) != 2 || got[0].Line != 2 || got[1].Line != 8 {
		t.Fatalf("letters %+v", got)
	}
	var lines []int
	for _, le := range de.Lines {
		lines = append(lines, le.Line)
	}
	if fmt.Sprint(lines) != "[1 3 4 5 7]" {
		t.Errorf("damaged lines %v, want [1 3 4 5 7]: %v", lines, de)
	}

	stop := errors.New("stop")
	n := 0
	err := deadletter.Read(path, func(deadletter.Letter) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Read with a failing fn: %v after %d", err, n)
	}
	if err := deadletter.Read(filepath.Join(t.TempDir(), "none"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// Appends from several goroutines never interleave within a line.
func TestConcurrentAppend(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	s, err := deadletter.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	all := letters(randomFrames(rng, 200), time.Now())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g * 50; i < (g+1)*50; i += 10 {
				if err := s.Append(all[i : i+10]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, de := readAll(t, path)
	if de != nil || len(got) != len(all) {
		t.Fatalf("%d letters, damage %v", len(got), de)
	}
	seen := map[serialcb.ID]bool{}
	for _, l := range got {
		seen[l.Frame.ID] = true
	}
	if len(seen) != len(all) {
		t.Errorf("%d distinct frames, want %d", len(seen), len(all))
	}
}

func TestAppendRejectsFramelessLetter(t *testing.T) {
	s, err := deadletter.Open(filepath.Join(t.TempDir(), "dead.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append([]dispatch.DeadLetter{{Sink: "x"}}); err == nil {
		t.Error("a letter without a frame was accepted")
	}
	if err := s.Append(nil); err != nil {
		t.Error(err)
	}
}

// BenchmarkAppend measures one durable batch of 100 letters with 64-byte
// payloads (one write and one fsync).
func BenchmarkAppend(b *testing.B) {
	s, err := deadletter.Open(filepath.Join(b.TempDir(), "dead.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var gen serialcb.IDGen
	now := time.Now()
	batch := make([]dispatch.DeadLetter, 100)
	for i := range batch {
		payload := bytes.Repeat([]byte{'a'}, 64)
		batch[i] = dispatch.DeadLetter{Sink: "api", Err: "http 422", Attempts: 1, FailedAt: now,
			Frame: &serialcb.Frame{ID: gen.New(now), Port: "ttyUSB0", Seq: uint64(i), ReceivedAt: now, Payload: payload}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/letter")
}

// BenchmarkRead measures reading letters back (64-byte text payloads).
func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dead.jsonl")
	s, err := deadletter.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	var gen serialcb.IDGen
	now := time.Now()
	batch := make([]dispatch.DeadLetter, 1000)
	for i := range batch {
		batch[i] = dispatch.DeadLetter{Sink: "api", Err: "http 422", Attempts: 1, FailedAt: now,
			Frame: &serialcb.Frame{ID: gen.New(now), Port: "ttyUSB0", Seq: uint64(i), ReceivedAt: now, Payload: bytes.Repeat([]byte{'a'}, 64)}}
	}
	if err := s.Append(batch); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := deadletter.Read(path, func(l deadletter.Letter) error {
			n += utf8.RuneCount(l.Frame.Payload[:1])
			return nil
		}); err != nil || n != len(batch) {
			b.Fatal(err, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/letter")
}

// validRunes replaces each invalid byte with U+FFFD, as JSON decoding does.
func validRunes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

// Any sink name and error text make a valid JSON line that reads back
// the same (invalid UTF-8 as U+FFFD).
func FuzzErrorText(f *testing.F) {
	f.Add("http 422: <bad> \"x\"\n\t\\", "api")
	f.Add("\xff\xfe\u2028\u2029\x00\x1f", "s\x7f")
	var gen serialcb.IDGen
	at := time.Unix(1_700_000_000, 1)
	frame := serialcb.Frame{ID: gen.New(at), Port: "p", Seq: 1, ReceivedAt: at, Payload: []byte("x")}
	f.Fuzz(func(t *testing.T, errText, sink string) {
		l := deadletter.Letter{Sink: sink, Err: errText, Attempts: 3, FailedAt: at, Frame: frame}
		line := l.AppendJSON(nil)
		if !json.Valid(line) || bytes.ContainsAny(line, "\n\r") {
			t.Fatalf("not one JSON line: %q", line)
		}
		got, err := deadletter.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		if got.Err != validRunes(errText) || got.Sink != validRunes(sink) {
			t.Fatalf("got %q %q, want %q %q", got.Err, got.Sink, validRunes(errText), validRunes(sink))
		}
	})
}
