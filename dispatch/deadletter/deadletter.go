// Package deadletter keeps a sink's dead letters in a JSON Lines file, one
// letter per line:
//
//	{"failed_at":"2026-11-24T18:03:04.123456789Z","sink":"api","attempts":5,
//	 "error":"http 422: bad payload","frame":{"id":"…","port":"gps",…}}
//
// frame is the frame record exactly as dispatch.AppendJSON writes it, so a
// letter keeps the whole frame (payload as text, or base64 with
// "encoding":"base64"; fields when the frame has them) and can be replayed.
//
// Store.Append writes a batch with one write and one fsync: when it returns
// nil the letters survive a crash or a power cut, and the dispatcher may
// acknowledge their frames out of the spool. A crash during Append can leave
// a torn last line; Open starts the next letter on a fresh line and Read
// reports the torn line (and any other damaged line) with its number, skips
// it and goes on.
package deadletter

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

var _ dispatch.DeadLetterStore = (*Store)(nil)

// ErrClosed is returned by Append on a closed Store.
var ErrClosed = errors.New("deadletter: store closed")

// Store appends dead letters to one file. It is safe for concurrent use,
// though the dispatcher calls Append one call at a time per store.
type Store struct {
	path string

	mu     sync.Mutex
	f      *os.File
	size   int64 // bytes in the file after the last complete Append
	buf    []byte
	closed bool
}

// Open opens the dead-letter file at path for appending, creating it (mode
// 0640) and its parent directory (0750) if needed. A file whose last line
// is torn (a crash in the middle of an Append) gets a newline first, so the
// torn bytes stay one damaged line of their own and the next letter is whole.
func Open(path string) (*Store, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("deadletter: create dir: %w", err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("deadletter: open: %w", err)
	}
	s := &Store{path: path, f: f}
	if err := s.init(created); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(created bool) error {
	st, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("deadletter: stat: %w", err)
	}
	s.size = st.Size()
	if s.size > 0 {
		var last [1]byte
		if _, err := s.f.ReadAt(last[:], s.size-1); err != nil {
			return fmt.Errorf("deadletter: read: %w", err)
		}
		if last[0] != '\n' {
			if _, err := s.f.Write([]byte{'\n'}); err != nil {
				return fmt.Errorf("deadletter: end torn line: %w", err)
			}
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("deadletter: sync: %w", err)
			}
			s.size++
		}
	}
	if created {
		return syncDir(filepath.Dir(s.path))
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Append writes the letters, one line each, with a single write followed
// by fsync, and returns once they are durable. On error nothing of the
// batch is left in the file (a partial write is cut back), so the caller
// may retry the batch.
func (s *Store) Append(letters []dispatch.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	buf := s.buf[:0]
	for i := range letters {
		l := &letters[i]
		if l.Frame == nil {
			return fmt.Errorf("deadletter: letter %d has no frame", i)
		}
		buf = appendLine(buf, l.FailedAt, l.Sink, l.Attempts, l.Err, l.Frame)
		buf = append(buf, '\n')
	}
	if cap(buf) <= 1<<20 {
		s.buf = buf
	}
	_, err := s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// Cut back what may have reached the file, so that a retry does not
		// leave a torn line in the middle. After a failed fsync the page
		// cache cannot be trusted either: the batch is dropped and retried.
		if terr := s.f.Truncate(s.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut back: %w", terr))
		}
		return fmt.Errorf("deadletter: append %d letters: %w", len(letters), err)
	}
	s.size += int64(len(buf))
	return nil
}

// Close fsyncs and closes the file. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("deadletter: close: %w", err)
	}
	return nil
}

// appendLine appends one letter as a JSON object, without the newline.
func appendLine(dst []byte, failedAt time.Time, sink string, attempts int, errText string, f *serialcb.Frame) []byte {
	dst = append(dst, `{"failed_at":"`...)
	dst = failedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","sink":`...)
	dst = jsontext.AppendString(dst, sink)
	dst = append(dst, `,"attempts":`...)
	dst = strconv.AppendInt(dst, int64(attempts), 10)
	dst = append(dst, `,"error":`...)
	dst = jsontext.AppendString(dst, errText)
	dst = append(dst, `,"frame":`...)
	dst = dispatch.AppendJSON(dst, f)
	return append(dst, '}')
}

// Letter is one dead letter read back from a file.
type Letter struct {
	// Line is the letter's line number in the file, from 1.
	Line     int
	FailedAt time.Time
	Sink     string
	Attempts int
	Err      string
	// Frame is the whole frame, as the sink was given it.
	Frame serialcb.Frame
}

// DeadLetter returns the letter as the dispatcher hands it to a store.
func (l *Letter) DeadLetter() dispatch.DeadLetter {
	return dispatch.DeadLetter{Sink: l.Sink, Frame: &l.Frame, Err: l.Err, Attempts: l.Attempts, FailedAt: l.FailedAt}
}

// AppendJSON appends the letter's line as Append writes it (no newline).
func (l *Letter) AppendJSON(dst []byte) []byte {
	return appendLine(dst, l.FailedAt, l.Sink, l.Attempts, l.Err, &l.Frame)
}

// LineError is a line of a dead-letter file that is not a letter: torn by a
// crash during Append, or otherwise damaged.
type LineError struct {
	Line int
	// Text is the line as found (without its newline).
	Text []byte
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// DamageError is returned by Read, after every good letter has been handed
// to fn, when some lines were damaged and skipped.
type DamageError struct {
	Path  string
	Lines []*LineError
}

func (e *DamageError) Error() string {
	first := e.Lines[0]
	if len(e.Lines) == 1 {
		return fmt.Sprintf("%s: 1 damaged line skipped: %v", e.Path, first)
	}
	return fmt.Sprintf("%s: %d damaged lines skipped (first: %v)", e.Path, len(e.Lines), first)
}

// Read calls fn for every letter of the file at path, in order. A damaged
// line (invalid JSON, a missing or malformed field, a torn last line) is
// skipped and reading goes on; once the file is read, Read returns a
// *DamageError listing the damaged lines. An error from fn stops Read and is
// returned as is. A missing file is an error matching os.ErrNotExist.
func Read(path string, fn func(Letter) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	defer f.Close()
	var damaged []*LineError
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("deadletter: read %s: %w", path, err)
		}
		if len(line) == 0 && err != nil {
			break
		}
		torn := line[len(line)-1] != '\n'
		line = bytes.TrimSuffix(line, []byte{'\n'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines (a hand edit) carry nothing
		}
		l, perr := Parse(line)
		if perr != nil {
			if torn {
				perr = fmt.Errorf("torn last line (a crash during a write?): %w", perr)
			}
			damaged = append(damaged, &LineError{Line: n, Text: line, Err: perr})
			continue
		}
		l.Line = n
		if err := fn(l); err != nil {
			return err
		}
	}
	if len(damaged) > 0 {
		return &DamageError{Path: path, Lines: damaged}
	}
	return nil
}

type entry struct {
	FailedAt *string         `json:"failed_at"`
	Sink     *string         `json:"sink"`
	Attempts int             `json:"attempts"`
	Error    string          `json:"error"`
	Frame    json.RawMessage `json:"frame"`
}

type record struct {
	ID         *string         `json:"id"`
	Port       *string         `json:"port"`
	Seq        uint64          `json:"seq"`
	ReceivedAt *string         `json:"received_at"`
	Payload    *string         `json:"payload"`
	Encoding   string          `json:"encoding"`
	Fields     json.RawMessage `json:"fields"`
}

// Parse decodes one line of a dead-letter file (without its newline).
func Parse(line []byte) (Letter, error) {
	var l Letter
	var e entry
	if err := json.Unmarshal(line, &e); err != nil {
		return l, fmt.Errorf("invalid JSON: %w", err)
	}
	if e.FailedAt == nil || e.Sink == nil || len(e.Frame) == 0 {
		return l, errors.New("not a dead letter: failed_at, sink or frame missing")
	}
	t, err := time.Parse(time.RFC3339Nano, *e.FailedAt)
	if err != nil {
		return l, fmt.Errorf("failed_at: %w", err)
	}
	l.FailedAt, l.Sink, l.Attempts, l.Err = t.UTC(), *e.Sink, e.Attempts, e.Error
	if err := parseFrame(e.Frame, &l.Frame); err != nil {
		return l, fmt.Errorf("frame: %w", err)
	}
	return l, nil
}

func parseFrame(b []byte, f *serialcb.Frame) error {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	if r.ID == nil || r.Port == nil || r.ReceivedAt == nil || r.Payload == nil {
		return errors.New("id, port, received_at or payload missing")
	}
	id, err := serialcb.ParseID(*r.ID)
	if err != nil {
		return fmt.Errorf("id %q: %w", *r.ID, err)
	}
	at, err := time.Parse(dispatch.TimeLayout, *r.ReceivedAt)
	if err != nil {
		return fmt.Errorf("received_at: %w", err)
	}
	var payload []byte
	switch r.Encoding {
	case "":
		payload = []byte(*r.Payload)
	case "base64":
		if payload, err = base64.StdEncoding.DecodeString(*r.Payload); err != nil {
			return fmt.Errorf("payload: %w", err)
		}
	default:
		return fmt.Errorf("unknown encoding %q", r.Encoding)
	}
	var fields []byte
	if len(r.Fields) > 0 && string(r.Fields) != "null" {
		if r.Fields[0] != '{' {
			return errors.New("fields is not a JSON object")
		}
		fields = []byte(r.Fields)
	}
	*f = serialcb.Frame{ID: id, Port: *r.Port, Seq: r.Seq, ReceivedAt: at.UTC(), Payload: payload, Fields: fields}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("deadletter: sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("deadletter: sync dir: %w", err)
	}
	return nil
}
