package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
)

const defaultSink = "sqlite:./serialcbd.db"

// quickFlags describe a pipeline without a config file.
type quickFlags struct {
	config       string
	ports        []string
	baud         int
	framing      string
	maxFrame     int
	sinks        []string
	drainTimeout time.Duration
	metricsAddr  string
	validate     string
	decode       string
	requirePorts bool
	stateDir     string
	spool        bool
}

func newRunCmd(g *globals) *cobra.Command {
	var q quickFlags
	cmd := &cobra.Command{
		Use:   "run (--config FILE | --port PATH [--port PATH]... [--sink SPEC]...)",
		Short: "Read serial ports and deliver every frame to the sinks",
		Long: `run reads the configured ports until SIGINT or SIGTERM, then stops reading,
gives in-flight frames until the drain deadline to reach their sinks, and exits 0.

Quick mode needs no file: each --port is read with --baud and --framing, and
its frames go to every --sink (default ` + defaultSink + `).
A port is named after its device (ttyUSB0, COM3); use NAME=PATH to choose.

A port missing at start is waited for: it is opened when it appears, while
the other ports run. --require-ports makes a missing port an error (exit 2).
--validate SPEC checks every frame (nmea, crc16-modbus, crc16-ccitt, crc32,
sum8); frames that fail are counted, logged at a limited rate and dropped.
--decode SPEC adds named fields to every valid frame (nmea, csv:NAME,...,
regex:EXPR, json, hex, base64); a frame it cannot read is kept without.

` + sinkHelp + `

` + framingHelp,
		Example: `  serialcbd run --port /dev/ttyUSB0 --baud 115200
  serialcbd run --port gps=/dev/ttyACM0 --baud 9600 --sink sqlite:gps.db --sink http://127.0.0.1:8080/ingest
  serialcbd run --config /etc/serialcbd/config.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := q.load(cmd)
			if err != nil {
				return err
			}
			log, err := g.newLogger(cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			ln, err := daemon.ListenMetricsAt(daemon.MetricsAddr(cfg, q.metricsAddr, cmd.Flags().Changed("metrics-addr")))
			if err != nil {
				return err
			}
			opts := daemon.Options{Build: readBuildInfo().daemon()}
			if q.config != "" {
				// SIGHUP: the same file, with the same flag overrides.
				opts.Load = func() (*configs.Config, error) { return q.load(cmd) }
			}
			d, err := daemon.New(cfg, log, opts)
			if err != nil {
				if ln != nil {
					_ = ln.Close()
				}
				return err
			}
			ms := daemon.ServeMetrics(ln, d, log)
			// cmd.Context() ends when the Windows service is told to stop.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = d.Run(ctx)
			return errors.Join(err, ms.Close())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&q.config, "config", "c", "", "YAML config file (see configs/example.yaml); excludes the quick-mode flags")
	f.StringArrayVarP(&q.ports, "port", "p", nil, "serial port to read: PATH or NAME=PATH (repeatable)")
	f.IntVarP(&q.baud, "baud", "b", 9600, "baud rate for --port")
	f.StringVar(&q.framing, "framing", "lines", `framing for --port: lines, lines:DELIM such as 'lines:\r\n', gnss, slip, len:…, between:…; every spec is listed above`)
	f.IntVar(&q.maxFrame, "max-frame", 65536, "longest frame in bytes; longer ones are counted, logged and skipped")
	f.StringArrayVarP(&q.sinks, "sink", "s", nil, "sink spec (repeatable): sqlite:PATH, postgres://…, http(s)://…, mqtt(s)://…, nats://…, kafka://…, amqp(s)://…, file:PATH, stdout (default "+defaultSink+")")
	f.DurationVar(&q.drainTimeout, "drain-timeout", daemon.DefaultDrainTimeout, "how long a stop waits for in-flight frames")
	f.StringVar(&q.validate, "validate", "", "check every frame of --port: nmea, crc16-modbus, crc16-ccitt, crc32 or sum8; invalid frames are counted and dropped")
	f.StringVar(&q.decode, "decode", "", "decode every valid frame of --port into named fields: "+decode.Kinds)
	f.BoolVar(&q.requirePorts, "require-ports", false, "exit 2 if a port is missing at start instead of waiting for it")
	f.StringVar(&q.stateDir, "state-dir", configs.DefaultStateDir, "directory of the sinks' spools and dead letters (overrides state_dir)")
	f.BoolVar(&q.spool, "spool", true, "store frames on disk until each sink has them (--spool=false: memory only; a crash loses frames in flight)")
	f.StringVar(&q.metricsAddr, "metrics-addr", daemon.DefaultMetricsAddr, `HOST:PORT serving /metrics, /healthz and /readyz ("" disables; ":9464" for every interface); wins over metrics_addr`)
	return cmd
}

// load returns the configuration from --config or from the quick-mode flags.
func (q *quickFlags) load(cmd *cobra.Command) (*configs.Config, error) {
	if q.config != "" {
		for _, name := range []string{"port", "baud", "framing", "max-frame", "sink", "validate", "decode"} {
			if cmd.Flags().Changed(name) {
				return nil, usagef("--%s cannot be combined with --config: put it in the config file", name)
			}
		}
		cfg, err := configs.Load(q.config)
		if err != nil {
			return nil, err
		}
		if cmd.Flags().Changed("drain-timeout") {
			cfg.DrainTimeout = q.drainTimeout
		}
		if cmd.Flags().Changed("state-dir") {
			cfg.StateDir = q.stateDir
		}
		if !q.spool {
			cfg.Spool.Enabled = &q.spool
		}
		if q.requirePorts {
			cfg.RequirePorts = true
		}
		return cfg, nil
	}
	if len(q.ports) == 0 {
		return nil, usagef("nothing to read: give --port PATH (see `serialcbd ports` for the ports present) or --config FILE")
	}
	return q.quickConfig()
}

// quickConfig builds the quick-mode configuration.
func (q *quickFlags) quickConfig() (*configs.Config, error) {
	cfg := &configs.Config{DrainTimeout: q.drainTimeout, RequirePorts: q.requirePorts, StateDir: q.stateDir}
	if !q.spool {
		cfg.Spool.Enabled = &q.spool
	}
	seen := map[string]int{}
	for _, p := range q.ports {
		name, path, ok := strings.Cut(p, "=")
		if !ok {
			path = p
			name = serialcb.DefaultName(p)
		}
		if path == "" || name == "" {
			return nil, usagef("--port %q: expected PATH or NAME=PATH", p)
		}
		if n := seen[name]; n > 0 {
			name = fmt.Sprintf("%s-%d", name, n+1)
		}
		seen[name]++
		cfg.Ports = append(cfg.Ports, configs.Port{Name: name, Path: path, Baud: q.baud, Framing: q.framing, MaxFrame: q.maxFrame, Validate: q.validate, Decode: q.decode})
	}
	sinks := q.sinks
	if len(sinks) == 0 {
		sinks = []string{defaultSink}
	}
	used := map[string]int{}
	for _, s := range sinks {
		base, _, _ := strings.Cut(s, ":")
		if base == "https" {
			base = "http"
		}
		used[base]++
		name := base
		if used[base] > 1 {
			name = fmt.Sprintf("%s-%d", base, used[base])
		}
		cfg.Sinks = append(cfg.Sinks, configs.Sink{Name: name, URL: s})
	}
	if err := cfg.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	return cfg, nil
}
