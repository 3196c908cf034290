package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/dispatch/daemon/demo"
)

type demoFlags struct {
	db    string
	baud  int
	sinks []string
}

func newDemoCmd(g *globals) *cobra.Command {
	var fl demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the real pipeline on virtual serial ports, no hardware needed",
		Long: `demo creates three virtual serial ports inside the process (pseudo-terminals),
plays recorded device streams through two of them at a real baud rate — a GPS
receiver (NMEA) and an environment sensor (CSV) — polls a simulated Modbus
RTU meter on the third every 200 ms, and runs the same pipeline as 'run':
read loops, event loop, polling, sinks. Frames and the meter's replies land
in the embedded SQLite database; the summary shows where and how to look at
them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fl.baud <= 0 {
				return usagef("--baud must be positive")
			}
			log, err := g.newLogger("warn", "")
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{DB: fl.db, Baud: fl.baud, Sinks: fl.sinks, Out: g.stdout, Log: log})
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.db, "db", "./serialcbd.db", "SQLite database the frames are written to")
	f.IntVar(&fl.baud, "baud", 115200, "baud rate the recordings are played at (8N1: baud/10 bytes per second)")
	f.StringArrayVar(&fl.sinks, "sink", nil, "extra sink spec (repeatable), e.g. stdout or http://127.0.0.1:8080/ingest")
	return cmd
}
