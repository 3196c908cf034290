package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/dispatch/spool"
)

// sinkStats is one sink's line of `spool stats`.
type sinkStats struct {
	Sink          string  `json:"sink"`
	Frames        uint64  `json:"frames"`
	Bytes         int64   `json:"bytes"`
	Segments      int     `json:"segments"`
	Oldest        string  `json:"oldest_received_at,omitempty"`
	AgeSeconds    float64 `json:"oldest_age_seconds,omitempty"`
	DeadLetters   int     `json:"dead_letters"`
	DamagedSpool  int     `json:"damaged_spool_regions,omitempty"`
	DamagedDead   int     `json:"damaged_dead_lines,omitempty"`
	Quarantined   int     `json:"quarantined_files,omitempty"`
	oldest        time.Time
	deadLineError []*deadletter.LineError
}

// Stats prints, for every sink under the state directory, the frames
// waiting in its spool, their bytes and segments, the oldest one and the
// dead letters; as JSON with t.JSON. It only reads.
func (t *Tool) Stats() error {
	sinks, err := opSinks(t.StateDir)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]sinkStats, 0, len(sinks))
	for _, name := range sinks {
		st := sinkStats{Sink: name}
		if opExists(daemon.SpoolDir(t.StateDir, name)) {
			sum, err := spool.Inspect(daemon.SpoolDir(t.StateDir, name))
			if err != nil {
				return fmt.Errorf("sink %s: %w", name, err)
			}
			st.Frames, st.Bytes, st.Segments = sum.Frames, sum.Bytes, sum.Segments
			st.DamagedSpool, st.Quarantined = sum.Damaged, sum.Quarantined
			if !sum.Oldest.IsZero() {
				st.oldest = sum.Oldest
				st.Oldest = dispatch.FormatTime(sum.Oldest)
				st.AgeSeconds = max(0, now.Sub(sum.Oldest).Seconds())
			}
		}
		n, damaged, err := opCountDead(daemon.DeadLetterPath(t.StateDir, name))
		if err != nil {
			return fmt.Errorf("sink %s: %w", name, err)
		}
		st.DeadLetters, st.DamagedDead, st.deadLineError = n, len(damaged), damaged
		out = append(out, st)
	}
	w := t.Out
	if t.JSON {
		b, err := json.MarshalIndent(struct {
			StateDir string      `json:"state_dir"`
			Sinks    []sinkStats `json:"sinks"`
		}{t.StateDir, out}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(out) == 0 {
		fmt.Fprintf(w, "no sink has a spool or dead letters under %s\n", t.StateDir)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SINK\tWAITING\tBYTES\tSEGMENTS\tOLDEST\tAGE\tDEAD")
	for _, st := range out {
		oldest, age := "-", "-"
		if !st.oldest.IsZero() {
			oldest = st.Oldest
			age = time.Duration(st.AgeSeconds * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%d\n", st.Sink, st.Frames, opBytes(st.Bytes), st.Segments, oldest, age, st.DeadLetters)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, st := range out {
		if st.DamagedSpool > 0 {
			fmt.Fprintf(w, "%s: %d damaged region(s) in the spool: skipped or cut when serialcbd next opens it\n", st.Sink, st.DamagedSpool)
		}
		if st.Quarantined > 0 {
			fmt.Fprintf(w, "%s: %d quarantined segment file(s) (*.corrupt) in %s\n", st.Sink, st.Quarantined, daemon.SpoolDir(t.StateDir, st.Sink))
		}
		for _, le := range st.deadLineError {
			fmt.Fprintf(w, "%s: %s line %d damaged: %v\n", st.Sink, daemon.DeadLetterPath(t.StateDir, st.Sink), le.Line, le.Err)
		}
	}
	return nil
}

// opCountDead counts the letters of a dead-letter file and returns its
// damaged lines; a missing file holds none.
func opCountDead(path string) (n int, damaged []*deadletter.LineError, err error) {
	err = deadletter.Read(path, func(deadletter.Letter) error { n++; return nil })
	var de *deadletter.DamageError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, nil, nil
	case errors.As(err, &de):
		return n, de.Lines, nil
	}
	return n, nil, err
}

func opBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
