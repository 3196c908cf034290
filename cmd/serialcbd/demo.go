package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	_ "modernc.org/sqlite" // the driver sqlsink uses; the summary reads the rows back

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/testdata"
)

type demoFlags struct {
	db    string
	baud  int
	sinks []string
}

// recording is one stream the demo plays into one virtual port.
type recording struct {
	port string
	data []byte
}

func newDemoCmd(g *globals) *cobra.Command {
	var fl demoFlags
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the real pipeline on two virtual serial ports, no hardware needed",
		Long: `demo creates two virtual serial ports inside the process (pseudo-terminals),
plays recorded device streams through them at a real baud rate — a GPS
receiver (NMEA) and an environment sensor (CSV) — and runs the same pipeline
as 'run': read loops, event loop, sinks. Frames land in the embedded SQLite
database; the summary shows where and how to look at them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, g, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.db, "db", "./serialcbd.db", "SQLite database the frames are written to")
	f.IntVar(&fl.baud, "baud", 115200, "baud rate the recordings are played at (8N1: baud/10 bytes per second)")
	f.StringArrayVar(&fl.sinks, "sink", nil, "extra sink spec (repeatable), e.g. stdout or http://127.0.0.1:8080/ingest")
	return cmd
}

func runDemo(ctx context.Context, g *globals, fl demoFlags) error {
	if fl.baud <= 0 {
		return usagef("--baud must be positive")
	}
	recs := []recording{{"gps", testdata.GPS}, {"env-sensor", testdata.Sensor}}
	cfg := &configs.Config{DrainTimeout: 10 * time.Second}
	var pairs []*vport.Pair
	defer func() {
		for _, p := range pairs {
			_ = p.Close()
		}
	}()
	for _, r := range recs {
		p, err := vport.Open()
		if err != nil {
			return fmt.Errorf("create virtual port: %w", err)
		}
		pairs = append(pairs, p)
		cfg.Ports = append(cfg.Ports, configs.Port{Name: r.port, Path: p.Path(), Baud: fl.baud})
	}
	cfg.Sinks = append(cfg.Sinks, configs.Sink{Name: "sqlite", URL: "sqlite:" + fl.db})
	for i, s := range fl.sinks {
		cfg.Sinks = append(cfg.Sinks, configs.Sink{Name: fmt.Sprintf("extra-%d", i+1), URL: s})
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	// Store-and-forward as `run` does, in a spool that lives as long as the demo.
	state, err := os.MkdirTemp("", "serialcbd-demo-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	cfg.StateDir = state
	log, err := g.newLogger("warn", "")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	ready := make(chan struct{})
	d, err := daemon.New(cfg, log, daemon.Options{Ready: func() { close(ready) }})
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	select {
	case <-ready:
	case err := <-runErr:
		return err
	}

	total := 0
	for _, r := range recs {
		total += countLines(r.data)
	}
	bytesTotal := len(recs[0].data) + len(recs[1].data)
	printf(g.stdout, "serialcbd demo: playing %d recorded frames (%s) through %d virtual ports at %d baud into %s\n",
		total, sizeOf(bytesTotal), len(pairs), fl.baud, fl.db)
	start := time.Now()
	var played sync.WaitGroup
	progress := make([]int, len(recs))
	var mu sync.Mutex
	for i, r := range recs {
		played.Go(func() {
			_ = play(runCtx, pairs[i], r.data, fl.baud, func(n int) { mu.Lock(); progress[i] = n; mu.Unlock() })
		})
	}
	done := make(chan struct{})
	go func() { played.Wait(); close(done) }()
	tty := isTerminal(g.stdout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-ctx.Done():
			waiting = false
		case <-tick.C:
		}
		if !tty && waiting {
			continue // no progress bar into a pipe or a file: just the summary
		}
		mu.Lock()
		sent := progress[0] + progress[1]
		mu.Unlock()
		st := d.Stats()
		printf(g.stdout, "\r  %s %3d%%  frames read %5d  delivered %5d ", bar(sent, bytesTotal, 30), sent*100/bytesTotal, st.Submitted, st.Delivered)
	}
	printf(g.stdout, "\n")
	// Wait for the tail of the stream to be read and delivered, then stop
	// the way SIGTERM does.
	deadline := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		st := d.Stats()
		if int(st.Submitted) >= total && st.Delivered+st.Failed >= st.Submitted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopRun()
	if err := <-runErr; err != nil {
		return err
	}
	return summary(g, d, fl.db, total, elapsed)
}

// play writes data into the device side of a virtual port at baud/10 bytes
// per second, the pace of an 8N1 line.
func play(ctx context.Context, p *vport.Pair, data []byte, baud int, progress func(int)) error {
	const tick = 10 * time.Millisecond
	chunk := max(baud/10/int(time.Second/tick), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	for off := 0; off < len(data); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		n := min(chunk, len(data)-off)
		if _, err := p.Write(data[off : off+n]); err != nil {
			return err
		}
		off += n
		progress(off)
	}
	return nil
}

func summary(g *globals, d *daemon.Daemon, dbPath string, expected int, elapsed time.Duration) error {
	st := d.Stats()
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	printf(g.stdout, "\ndone in %.1fs: %d frames read (%d expected), %.0f frames/s (paced by the baud rate)\n\n", elapsed.Seconds(), st.Submitted, expected, float64(st.Submitted)/elapsed.Seconds())
	fmt.Fprintln(w, "SINK\tDELIVERED\tFAILED\tRETRIED")
	for _, s := range st.Sinks {
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", s.Name, s.Delivered, s.Failed, s.Retried)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	abs, _ := filepath.Abs(dbPath)
	db, err := sql.Open("sqlite", "file:"+abs+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT port, count(*), max(seq) FROM frames GROUP BY port ORDER BY port`)
	if err != nil {
		return fmt.Errorf("read back %s: %w", abs, err)
	}
	defer rows.Close()
	printf(g.stdout, "\nin %s, table frames:\n", abs)
	w = tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  PORT\tROWS\tLAST SEQ")
	for rows.Next() {
		var port string
		var n, seq int64
		if err := rows.Scan(&port, &n, &seq); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\n", port, n, seq)
	}
	if err := errors.Join(rows.Err(), w.Flush()); err != nil {
		return err
	}
	var id, port, at string
	var payload []byte
	if err := db.QueryRow(`SELECT id, port, received_at, payload FROM frames WHERE port = 'gps' ORDER BY id DESC LIMIT 1`).Scan(&id, &port, &at, &payload); err == nil {
		printf(g.stdout, "\nlatest gps frame: id=%s received_at=%s\n  %s\n", id, at, payload)
	}
	printf(g.stdout, "\nlook at it yourself (with the sqlite3 shell):\n  sqlite3 %s \"SELECT port, seq, received_at, CAST(payload AS TEXT) FROM frames ORDER BY id DESC LIMIT 5\"\n", dbPath)
	if st.Failed > 0 || int(st.Delivered) < expected {
		return fmt.Errorf("demo: %d of %d frames delivered, %d failed", st.Delivered, expected, st.Failed)
	}
	return nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func countLines(b []byte) int {
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimRight(l, "\r")) > 0 {
			n++
		}
	}
	return n
}

func bar(n, total, width int) string {
	full := n * width / max(total, 1)
	return "[" + strings.Repeat("#", full) + strings.Repeat(".", width-full) + "]"
}

func sizeOf(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}
