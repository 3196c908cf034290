package demo

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	_ "modernc.org/sqlite" // the driver sqlsink uses; the summary reads the rows back

	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

// summary prints what this run did; since is the largest frame id of the
// earlier runs in dbPath ("" for none), so that only this run's rows count.
func summary(out io.Writer, d *daemon.Daemon, dbPath, since string, expected int, elapsed time.Duration) error {
	st := d.Stats()
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	read := recordedFrames(d)
	fmt.Fprintf(out, "\ndone in %.1fs: %d frames read (%d expected), %.0f frames/s (paced by the baud rate)\n\n", elapsed.Seconds(), read, expected, float64(read)/elapsed.Seconds())
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
	rows, err := db.Query(`SELECT port, count(*), max(seq) FROM frames WHERE id > ? GROUP BY port ORDER BY port`, since)
	if err != nil {
		return fmt.Errorf("read back %s: %w", abs, err)
	}
	defer rows.Close()
	if since != "" {
		fmt.Fprintf(out, "\nin %s, table frames, the rows of this run (earlier runs' rows are there too):\n", abs)
	} else {
		fmt.Fprintf(out, "\nin %s, table frames:\n", abs)
	}
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
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
	if s, ok := d.PortIOStats("meter"); ok {
		for _, q := range s.Polls {
			fmt.Fprintf(out, "\npolled meter/%s: %d requests, %d replies (stored with fields poll, request_id, rtt_us), %d timeouts, %d invalid, %d skipped\n",
				q.Name, q.Sent, q.Replies, q.Timeouts, q.Invalid, q.Skipped)
		}
	}
	var id, port, at string
	var payload []byte
	if err := db.QueryRow(`SELECT id, port, received_at, payload FROM frames WHERE port = 'gps' ORDER BY id DESC LIMIT 1`).Scan(&id, &port, &at, &payload); err == nil {
		fmt.Fprintf(out, "\nlatest gps frame: id=%s received_at=%s\n  %s\n", id, at, payload)
	}
	fmt.Fprintf(out, "\nlook at it yourself (with the sqlite3 shell):\n  sqlite3 %s \"SELECT port, seq, received_at, CAST(payload AS TEXT) FROM frames ORDER BY id DESC LIMIT 5\"\n", dbPath)
	if st.Failed > 0 || int(st.Delivered) < expected {
		return fmt.Errorf("demo: %d of %d frames delivered, %d failed", st.Delivered, expected, st.Failed)
	}
	return nil
}

// earlierFrames returns how many frames the demo database at path holds
// already, and the largest id among them (ids are time-ordered): 0 and ""
// when there is no such file or table.
func earlierFrames(path string) (n int64, maxID string) {
	if _, err := os.Stat(path); err != nil {
		return 0, ""
	}
	abs, _ := filepath.Abs(path)
	db, err := sql.Open("sqlite", "file:"+abs+"?mode=ro")
	if err != nil {
		return 0, ""
	}
	defer db.Close()
	var id sql.NullString
	if err := db.QueryRow(`SELECT count(*), max(id) FROM frames`).Scan(&n, &id); err != nil {
		return 0, ""
	}
	return n, id.String
}

// recordedFrames counts the frames read from the two recorded streams; the
// meter's replies are counted apart.
func recordedFrames(d *daemon.Daemon) uint64 {
	var n uint64
	for _, name := range []string{"gps", "env-sensor"} {
		s, _ := d.ReaderStats(name)
		n += s.Frames
	}
	return n
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
