package monitor

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// Options are what to read and how to show it: the flags of `serialcbd
// monitor`.
type Options struct {
	// Port is the serial device to read; File a recorded capture instead.
	// Exactly one of them is set.
	Port, File string
	// Baud, DataBits, Parity and StopBits set up Port (and the character
	// time of idle: framing).
	Baud, DataBits int
	Parity         string
	StopBits       float64
	// Framing, Validate and Decode are the specs of serialcb.ParseFraming,
	// serialcb.ParseValidator and decode.Parse; Validate and Decode may be
	// empty.
	Framing, Validate, Decode string
	// MaxFrame is the largest frame in bytes.
	MaxFrame int
	// Hex shows every payload as a hex dump.
	Hex bool
	// Guess lists the framings that explain the most bytes instead of
	// showing frames, reading Port for GuessFor.
	Guess    bool
	GuessFor time.Duration
	// Out receives the frames and the summary (nil: standard output).
	Out io.Writer
	// Logger returns the read loop's logger; it is called only to read a
	// port (nil: no logs).
	Logger func() (*zap.Logger, error)
}

// UsageError is a mistake in the Options, or a port that cannot be opened
// as given: `serialcbd monitor` exits 2 on it.
type UsageError struct{ Err error }

// Error returns the mistake's message.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// monitor prints frames and keeps the counts for the summary.
type monitor struct {
	w                      io.Writer
	v                      serialcb.Validator
	dec                    decode.Decoder // nil: no fields shown
	hexDump                bool
	frames, invalid, overs int
	undecoded              int
	fields                 []byte // dec's output, reused
	framer                 serialcb.Framer
	framed                 []byte // the framer's fields (gnss), reused
}

// Run shows the frames of the port or the file, one line each, then a
// summary line; with Guess, the framings that explain the sample. Reading a
// port ends when ctx does. Its errors are *UsageError for mistakes in o.
func Run(ctx context.Context, o Options) error {
	if (o.Port == "") == (o.File == "") {
		return usagef("monitor: give exactly one of --port and --file")
	}
	if o.Guess {
		if o.GuessFor <= 0 {
			return usagef("--guess-for must be positive, such as 5s")
		}
		return runGuess(ctx, o)
	}
	framer, err := serialcb.ParseFraming(o.Framing)
	if err != nil {
		return usagef("--framing: %v", err)
	}
	m := &monitor{w: o.Out, hexDump: o.Hex, framer: framer}
	if m.w == nil {
		m.w = os.Stdout
	}
	if o.Validate != "" {
		if m.v, err = serialcb.ParseValidator(o.Validate); err != nil {
			return usagef("--validate: %v", err)
		}
	}
	if o.Decode != "" {
		if m.dec, err = decode.Parse(o.Decode); err != nil {
			return usagef("--decode: %v", err)
		}
	}
	if o.File != "" {
		if strings.HasPrefix(o.Framing, "idle:") {
			return usagef("--framing %s needs --port: a capture file has no timing to find the gaps in", o.Framing)
		}
		return m.file(o.File, framer, o.MaxFrame)
	}

	log := zap.NewNop()
	if o.Logger != nil {
		if log, err = o.Logger(); err != nil {
			return err
		}
	}
	r, err := serialcb.NewReader(serialcb.PortConfig{
		Path: o.Port, Baud: o.Baud, DataBits: o.DataBits, Parity: serialcb.Parity(o.Parity), StopBits: o.StopBits,
		Framer: framer, MaxFrame: o.MaxFrame,
	}, log)
	if err != nil {
		return usagef("%v", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	err = r.RunOpen(ctx, func(fr serialcb.Frame) { m.frame(fr.ReceivedAt, fr.Seq, fr.Payload) })
	var oe *serialcb.OpenError
	if errors.As(err, &oe) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	st := r.Stats()
	fmt.Fprintf(m.w, "# %d frames, %d invalid, %d oversize (%d bytes), %d bytes read%s\n",
		m.frames, m.invalid, st.Oversize, st.OversizeBytes, st.Bytes, m.decodeSummary())
	return nil
}

// file cuts a capture with a Cutter, as the read loop would, in reads of
// 4 KiB: the output does not depend on the read size.
func (m *monitor) file(path string, framer serialcb.Framer, maxFrame int) error {
	f, err := os.Open(path)
	if err != nil {
		return usagef("--file: %v", err)
	}
	defer f.Close()
	c := serialcb.NewCutter(framer, maxFrame)
	buf := make([]byte, 4096)
	var seq uint64
	total := 0
	var now time.Time
	emit := func(p []byte) {
		seq++
		m.frame(now, seq, p)
	}
	oversize := func(n int) {
		m.overs++
		fmt.Fprintf(m.w, "%s oversize dropped=%d\n", stamp(now), n)
	}
	for {
		n, err := f.Read(buf)
		if n > 0 {
			now = time.Now().UTC()
			total += n
			c.Feed(buf[:n], emit, oversize)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	if fl, ok := framer.(serialcb.IdleFlusher); ok && fl.IdleGap(serialcb.PortConfig{Baud: 9600}) > 0 {
		c.Flush(emit, oversize) // lines:…:flush=: the end of the file is silence
	}
	c.FlushComplete(emit) // a regex match that waited for bytes that never came
	if p := c.Pending(); len(p) > 0 {
		fmt.Fprintf(m.w, "# partial frame at end of file: %d bytes %s\n", len(p), render(p, false))
	}
	if n := c.Dropping(); n > 0 {
		fmt.Fprintf(m.w, "# oversize frame at end of file: %d bytes dropped\n", n)
	}
	fmt.Fprintf(m.w, "# %d frames, %d invalid, %d oversize, %d bytes read%s\n", m.frames, m.invalid, m.overs, total, m.decodeSummary())
	return nil
}

// frame prints one frame: time, seq, length, verdict, payload; with a
// decoder, a valid frame's fields (or why it has none) on the next line.
func (m *monitor) frame(t time.Time, seq uint64, p []byte) {
	m.frames++
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d len=%d", stamp(t), seq, len(p))
	valid := true
	if m.v != nil {
		if err := m.v.Valid(p); err != nil {
			m.invalid++
			valid = false
			fmt.Fprintf(&b, " BAD(%v)", err)
		} else {
			b.WriteString(" ok")
		}
	}
	b.WriteByte(' ')
	b.WriteString(render(p, m.hexDump))
	b.WriteByte('\n')
	if m.framed = serialcb.AppendFields(m.framer, m.framed[:0], p); len(m.framed) > 0 && m.dec == nil {
		b.WriteString("  fields ")
		b.Write(m.framed)
		b.WriteByte('\n')
	}
	if m.dec != nil && valid {
		var err error
		m.fields, err = m.dec.Append(m.fields[:0], p)
		switch {
		case err != nil:
			m.undecoded++
			fmt.Fprintf(&b, "  not decoded: %v\n", err)
		case len(m.fields) > 2:
			b.WriteString("  fields ")
			b.Write(m.fields)
			b.WriteByte('\n')
		default:
			b.WriteString("  fields none\n")
		}
	}
	io.WriteString(m.w, b.String())
}

// decodeSummary is the summary's tail with --decode.
func (m *monitor) decodeSummary() string {
	if m.dec == nil {
		return ""
	}
	return fmt.Sprintf(", %d not decoded", m.undecoded)
}

func stamp(t time.Time) string { return t.Format("15:04:05.000000") }

// render shows p as Go-quoted text when it is mostly printable UTF-8,
// otherwise as spaced hex; dump forces a multi-line hex dump.
func render(p []byte, dump bool) string {
	if dump {
		return "\n" + strings.TrimSuffix(hex.Dump(p), "\n")
	}
	if utf8.Valid(p) && printableShare(p) >= 0.75 {
		return strconv.Quote(string(p))
	}
	var b strings.Builder
	for i, c := range p {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(hex.EncodeToString([]byte{c}))
	}
	return b.String()
}

func printableShare(p []byte) float64 {
	if len(p) == 0 {
		return 1
	}
	n := 0
	for _, c := range p {
		if c >= 0x20 && c < 0x7f || c == '\r' || c == '\n' || c == '\t' || c >= 0x80 {
			n++
		}
	}
	return float64(n) / float64(len(p))
}
