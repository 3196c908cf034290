package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
	"github.com/serialcbd/serialcbd/serialcb/monitor"
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

func runMonitor(ctx context.Context, g *globals, o monitorOpts) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.port != "" {
		// Ctrl-C ends the reading (and a --guess sample) with the summary.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	err := monitor.Run(ctx, monitor.Options{
		Port: o.port, File: o.file,
		Baud: o.baud, DataBits: o.dataBits, Parity: o.parity, StopBits: o.stopBits,
		Framing: o.framing, Validate: o.validate, Decode: o.decode, MaxFrame: o.maxFrame,
		Hex: o.hexDump, Guess: o.guess, GuessFor: o.guessFor,
		Out:    g.stdout,
		Logger: func() (*zap.Logger, error) { return g.newLogger("", "") },
	})
	if ue, ok := errors.AsType[*monitor.UsageError](err); ok {
		return &daemon.UsageError{Err: ue.Err}
	}
	return err
}
