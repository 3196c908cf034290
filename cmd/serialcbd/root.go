package main

import (
	"fmt"
	"io"
	"os"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// globals are the flags every command shares.
type globals struct {
	logLevel  string
	logFormat string
	stdout    io.Writer
	stderr    io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "serialcbd",
		Short: "Serial-port gateway: every frame a device sends, delivered to HTTP, SQL and files",
		Long: `serialcbd listens on serial ports, cuts the byte stream into frames and delivers
each frame to its sinks at least once, with retries and backoff and an on-disk
spool, without ever blocking the read loop on the network.

` + sinkHelp + `

` + framingHelp + `

Try it with no hardware:  serialcbd demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints what the version command prints.
		Version: readBuildInfo().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &daemon.UsageError{Err: err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (default info)")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: console or json (default console)")
	root.AddCommand(
		newRunCmd(g),
		newValidateCmd(g),
		newPortsCmd(g),
		newDemoCmd(g),
		newMonitorCmd(g),
		newSendCmd(g),
		newHealthCmd(g),
		newSpoolCmd(g),
		newBenchCmd(g),
		newVersionCmd(g),
	)
	// Unknown subcommands and missing arguments are usage errors (exit 2).
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for serialcbd (see serialcbd --help)", args[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return root
}

// newLogger builds the zap logger; flags win over the config file's values.
func (g *globals) newLogger(level, format string) (*zap.Logger, error) {
	if g.logLevel != "" {
		level = g.logLevel
	}
	if g.logFormat != "" {
		format = g.logFormat
	}
	if level == "" {
		level = "info"
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, usagef("--log-level %q: expected debug, info, warn or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	// "retry_in": "100ms", "deadline": "10s": with units, as people read
	// them (the production default writes bare seconds, 0.1 and 10).
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "", "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		return nil, usagef("--log-format %q: expected console or json", format)
	}
	w := g.stderr
	if w == nil {
		w = os.Stderr
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	return zap.New(core), nil
}

func printf(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format, args...) }

// sinkHelp and framingHelp list every sink spec and framing, for --help.
const (
	sinkHelp = `Sinks (--sink SPEC, or url: in a config): sqlite:PATH,
postgres://USER@HOST[:PORT]/DB or postgresql://…, http://HOST[:PORT]/PATH or https://…,
mqtt://HOST[:PORT]/TOPIC or mqtts://…, nats://HOST[:PORT]/SUBJECT or tls://…,
kafka://BROKER[,BROKER...]/TOPIC or kafkas://…, amqp://HOST[:PORT]/EXCHANGE/ROUTINGKEY or amqps://…,
file:PATH (JSON Lines), stdout.`
	framingHelp = `Framings (--framing SPEC, or framing: in a config): lines (default), lines:DELIM
(lines:\r\n), idle:Nc or idle:DUR (a silence ends a frame: idle:3.5c, idle:5ms), fixed:N,
len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive][:start=HEX][:adjust=±N][:max=N],
between:STARTHEX:ENDHEX, stx-etx[:esc=0xNN], slip, cobs, gnss (NMEA mixed with UBX and RTCM 3),
regex:EXPR; lines may add :flush=DUR and :include, and any spec :ready=HEX.
'serialcbd monitor --guess' suggests one for an unknown device.`
)
