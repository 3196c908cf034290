// Package jsonlsink writes frames as JSON Lines, one record per line
// (dispatch.AppendJSON), to a file opened for appending or to standard
// output. Lines of one batch are written with a single write call under a
// lock, so concurrent batches never interleave.
package jsonlsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Spec forms accepted by ParseSpec.
const (
	FileScheme = "file"
	StdoutSpec = "stdout"
)

// fileMode is the mode of a file the sink creates (before the umask).
const fileMode = 0o644

// maxPooledBuf is the largest batch buffer kept for reuse; a batch of huge
// frames should not pin its memory for good.
const maxPooledBuf = 4 << 20

// Config configures the JSON Lines sink.
type Config struct {
	// Path is the file to append to, from the spec "file:PATH"; empty for
	// the spec "stdout". The file is created if missing; its directory
	// must exist.
	Path string `yaml:"-"`
	// Fsync flushes the file to stable storage after every batch, so an
	// acknowledged frame survives a power loss. It costs one fsync per
	// batch; files only.
	Fsync bool `yaml:"fsync"`
}

// ParseSpec returns the default Config for "file:PATH" or "stdout".
func ParseSpec(spec string) (Config, error) {
	if spec == StdoutSpec {
		return Config{}, nil
	}
	path, ok := strings.CutPrefix(spec, FileScheme+":")
	if !ok {
		return Config{}, fmt.Errorf("jsonl sink spec %q: want file:PATH or stdout", spec)
	}
	if path == "" {
		return Config{}, fmt.Errorf("jsonl sink spec %q: missing file path after %q", spec, FileScheme+":")
	}
	return Config{Path: path}, nil
}

// Validate checks the configuration without I/O.
func (c Config) Validate() error {
	if c.Path == "" && c.Fsync {
		return errors.New("jsonl sink: fsync applies to file:PATH, not stdout: remove fsync")
	}
	if c.Path != "" && strings.HasSuffix(c.Path, string(filepath.Separator)) {
		return fmt.Errorf("jsonl sink: path %q names a directory: add a file name", c.Path)
	}
	return nil
}

// Sink appends JSON Lines to a file or a writer. Write is safe for
// concurrent use.
type Sink struct {
	cfg Config
	log *zap.Logger

	bufs sync.Pool // *[]byte holding one batch's lines

	mu     sync.Mutex // guards out, file, closed; serialises writes
	out    io.Writer  // where lines go: file, os.Stdout, or NewWriter's w
	file   *os.File   // the opened file, nil for a writer
	closed bool
}

var _ dispatch.Sink = (*Sink)(nil)

// New returns a sink for cfg. It does no I/O: Start opens the file.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := newSink(cfg, log)
	if cfg.Path == "" {
		s.out = os.Stdout
	}
	return s, nil
}

// NewWriter returns a sink writing lines to w, which it never closes: for
// standard output, a terminal, or tests. Start is a no-op for it.
func NewWriter(w io.Writer, log *zap.Logger) *Sink {
	s := newSink(Config{}, log)
	s.out = w
	return s
}

func newSink(cfg Config, log *zap.Logger) *Sink {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{cfg: cfg, log: log}
	s.bufs.New = func() any { return new([]byte) }
	return s
}

// Start opens the file for appending, creating it if needed.
func (s *Sink) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("jsonl sink: start after close")
	}
	if s.out != nil {
		return nil // stdout, a writer, or started already
	}
	// Opening a named pipe for writing blocks until a reader comes; a
	// socket cannot be opened at all. Refuse both before trying.
	if fi, err := os.Stat(s.cfg.Path); err == nil && fi.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0 {
		return fmt.Errorf("jsonl sink: %q is a pipe or socket: use a regular file", s.cfg.Path)
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("jsonl sink: open %q: its directory must exist: %w", s.cfg.Path, err)
		}
		return fmt.Errorf("jsonl sink: open %q for appending: %w", s.cfg.Path, err)
	}
	s.file, s.out = f, f
	s.log.Debug("jsonl sink started", zap.String("path", s.cfg.Path), zap.Bool("fsync", s.cfg.Fsync))
	return nil
}

// Write appends one line per frame with a single write. Every error is
// retryable: the batch was not (fully) written.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Encode outside the lock, so that concurrent batches only queue for
	// the write itself.
	bp := s.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, f := range batch {
		buf = dispatch.AppendJSON(buf, f)
		buf = append(buf, '\n')
	}
	err := s.write(buf)
	if cap(buf) <= maxPooledBuf {
		*bp = buf
		s.bufs.Put(bp)
	}
	return err
}

func (s *Sink) write(buf []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("jsonl sink: write after close")
	case s.out == nil:
		return errors.New("jsonl sink: write before start")
	}
	if s.file == nil {
		if _, err := s.out.Write(buf); err != nil {
			return fmt.Errorf("jsonl sink: write: %w", err)
		}
		return nil
	}
	return s.writeFile(buf)
}

// writeFile appends buf to the file. A write that fails part way (disk full)
// is cut back so that a retry does not follow half a line.
func (s *Sink) writeFile(buf []byte) error {
	var size int64 = -1
	if fi, err := s.file.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	n, err := s.file.Write(buf)
	if err != nil {
		err = fmt.Errorf("jsonl sink: write %q: %w", s.cfg.Path, err)
		if n > 0 && size >= 0 {
			if terr := s.file.Truncate(size); terr != nil {
				err = errors.Join(err, fmt.Errorf("jsonl sink: %q may end in a partial line: %w", s.cfg.Path, terr))
			}
		}
		return err
	}
	if s.cfg.Fsync {
		// After a failed fsync the lines may or may not be on disk: a
		// retry may duplicate them, which ids let readers detect.
		if err := s.file.Sync(); err != nil {
			return fmt.Errorf("jsonl sink: fsync %q: %w", s.cfg.Path, err)
		}
	}
	return nil
}

// Close closes the file (never standard output or a NewWriter writer). It
// is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file == nil {
		return nil
	}
	if err := s.file.Close(); err != nil {
		return fmt.Errorf("jsonl sink: close %q: %w", s.cfg.Path, err)
	}
	return nil
}
