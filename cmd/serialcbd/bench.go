//go:build linux

package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/daemon/bench"
)

func newBenchCmd(g *globals) *cobra.Command {
	var fl bench.Options
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline on virtual ports: throughput, latency, CPU, memory",
		Long: `bench creates virtual serial ports inside the process, writes frames into them
and runs the real pipeline (read loops, event loop, dispatcher, sink) on them.
Each frame carries its send time, so latency is measured from the write into
the port to the sink's acknowledgement. Before the pipeline, the same writer
runs against a plain reader on the same kind of port: that is the ceiling the
port path allows, and serialcbd's results are shown as a share of it.

Sinks: the default is SQLite in a temporary directory; "http" is an HTTP
receiver inside the process on loopback answering 204, one POST per frame;
"http-ndjson" is the same receiver fed by the http sink with format: ndjson
(one POST per batch, one record per line; the receiver counts the lines and
checks them against X-Serialcbd-Frames); any other sink spec (sqlite:PATH,
file:PATH, http://…) is used as given.

Exit status 1 when a frame is lost.`,
		Example: `  serialcbd bench
  serialcbd bench --sink http --frames 50000
  serialcbd bench --sink http-ndjson
  serialcbd bench --rate 1000 --frames 10000
  serialcbd bench --ports 8 --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("bench takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fl.Batch == 0 {
				fl.Batch = 64
				if fl.Rate > 0 {
					fl.Batch = 1
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Back-pressure warnings are expected when writing as fast as possible.
			log, err := g.newLogger("error", "")
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			return bench.Run(ctx, g.stdout, fl, log)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &daemon.UsageError{Err: err} })
	f := cmd.Flags()
	f.IntVar(&fl.Frames, "frames", 100000, "frames to write (split between the ports)")
	f.IntVar(&fl.Size, "size", 64, fmt.Sprintf("bytes per frame, newline included (%d..%d)", bench.MinFrameSize, bench.MaxFrameSize))
	f.Float64Var(&fl.Rate, "rate", 0, "frames per second over all ports; 0 = as fast as the port takes them")
	f.IntVar(&fl.Batch, "batch", 0, "frames per write system call (default 1 with --rate, 64 without)")
	f.StringVar(&fl.Sink, "sink", "", `sink spec; "http" = an HTTP receiver in the process, "http-ndjson" = the same with NDJSON batches (default: SQLite in a temporary directory)`)
	f.IntVar(&fl.Ports, "ports", 1, "virtual ports read in parallel")
	f.BoolVar(&fl.JSON, "json", false, "print the results as JSON")
	f.BoolVar(&fl.Spool, "spool", false, "store-and-forward through the on-disk spool, as `run` does by default (a frame then counts as taken once it is on disk: latency and frames/s are read → spooled; the sink empties the spool before the run ends)")
	return cmd
}
