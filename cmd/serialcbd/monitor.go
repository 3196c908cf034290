package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// monitorOpts are the flags of `serialcbd monitor`.
type monitorOpts struct {
	port, file, framing, validate, decode string
	parity                                string
	baud, maxFrame, dataBits              int
	stopBits                              float64
	hexDump                               bool
	guess                                 bool
	guessFor                              time.Duration
}

// newMonitorCmd returns `serialcbd monitor`: it shows frames as they are
// cut, from a port or from a recorded file, to find a device's framing.
func newMonitorCmd(g *globals) *cobra.Command {
	var o monitorOpts
	cmd := &cobra.Command{
		Use:   "monitor (--port PATH | --file CAPTURE) [--framing SPEC] [--validate SPEC] [--decode SPEC] [--guess]",
		Short: "Show frames live as they are cut, with their checksum verdict",
		Long: `monitor reads a serial port (or a recorded capture with --file), cuts the
stream with --framing and prints one line per frame: time, sequence number,
length, the payload as quoted text (or hex when it is binary, or a hex dump
with --hex) and, with --validate, the checksum verdict. With --decode, each
valid frame is followed by the fields the decoder finds, as the daemon would
store them, or by why it could not read the frame. Nothing is delivered to
any sink. Use it to find the right framing and decoder for an unknown device.

With --guess, monitor reads the port for --guess-for (or the capture file)
and lists the framings and checksums that explain most of the bytes, with
the share each explains, then suggests the best: text lines, NMEA sentences,
gnss, SLIP, COBS, a length after a sync byte, and on a port, idle gaps.

Framing specs: lines, lines:<delim>, lines[:<delim>]:flush=DUR, lines[:<delim>]:include,
idle:Nc, idle:DUR, idle:…:on_full=emit, fixed:N,
len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive][:start=HEX][:adjust=±N][:max=N],
between:STARTHEX:ENDHEX[:include], stx-etx[:esc=0xNN], slip, cobs,
gnss (NMEA 0183 mixed with u-blox UBX and RTCM 3), regex:EXPR; any spec may
end with :ready=HEX (discard bytes until HEX is seen once after open).
idle: needs --port (a file has no timing); its character time follows
--baud, --data-bits, --parity and --stop-bits.
Validators: nmea, crc16-modbus, crc16-ccitt, crc32, sum8.
Decoders: ` + decode.Kinds + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMonitor(cmd.Context(), g, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.port, "port", "", "serial device to read, e.g. /dev/ttyUSB0")
	f.StringVar(&o.file, "file", "", "recorded capture to read instead of a port")
	f.IntVar(&o.baud, "baud", 9600, "line speed for --port")
	f.IntVar(&o.dataBits, "data-bits", 8, "data bits for --port: 5 to 8")
	f.StringVar(&o.parity, "parity", "none", "parity for --port: none, odd, even, mark or space (Modbus RTU: even)")
	f.Float64Var(&o.stopBits, "stop-bits", 1, "stop bits for --port: 1, 1.5 or 2")
	f.StringVar(&o.framing, "framing", "lines", "framing spec (see above)")
	f.StringVar(&o.validate, "validate", "", "checksum to verify on each frame (see above)")
	f.StringVar(&o.decode, "decode", "", "decoder to show each valid frame's fields with (see above)")
	f.IntVar(&o.maxFrame, "max-frame", serialcb.DefaultMaxFrame, "largest frame in bytes; longer ones are dropped and shown")
	f.BoolVar(&o.hexDump, "hex", false, "always show payloads as a hex dump")
	f.BoolVar(&o.guess, "guess", false, "suggest the framing and checksum that explain the most bytes instead of showing frames")
	f.DurationVar(&o.guessFor, "guess-for", 5*time.Second, "how long --guess reads --port")
	return cmd
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

func runMonitor(ctx context.Context, g *globals, o monitorOpts) error {
	if (o.port == "") == (o.file == "") {
		return usagef("monitor: give exactly one of --port and --file")
	}
	if o.guess {
		if o.guessFor <= 0 {
			return usagef("--guess-for must be positive, such as 5s")
		}
		return runGuess(ctx, g, o)
	}
	framer, err := serialcb.ParseFraming(o.framing)
	if err != nil {
		return usagef("--framing: %v", err)
	}
	m := &monitor{w: g.stdout, hexDump: o.hexDump, framer: framer}
	if m.w == nil {
		m.w = os.Stdout
	}
	if o.validate != "" {
		if m.v, err = serialcb.ParseValidator(o.validate); err != nil {
			return usagef("--validate: %v", err)
		}
	}
	if o.decode != "" {
		if m.dec, err = decode.Parse(o.decode); err != nil {
			return usagef("--decode: %v", err)
		}
	}
	if o.file != "" {
		if strings.HasPrefix(o.framing, "idle:") {
			return usagef("--framing %s needs --port: a capture file has no timing to find the gaps in", o.framing)
		}
		return m.file(o.file, framer, o.maxFrame)
	}

	log, err := g.newLogger("", "")
	if err != nil {
		return err
	}
	r, err := serialcb.NewReader(serialcb.PortConfig{
		Path: o.port, Baud: o.baud, DataBits: o.dataBits, Parity: serialcb.Parity(o.parity), StopBits: o.stopBits,
		Framer: framer, MaxFrame: o.maxFrame,
	}, log)
	if err != nil {
		return usagef("%v", err)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
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
