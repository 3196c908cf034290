package admin

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/serialcb"
)

var errLimit = errors.New("limit reached")

// DeadList prints the dead letters of every sink (or of t.Sink), at most
// t.Limit (0: all), one line each, or as stored with t.JSON. It only reads.
func (t *Tool) DeadList() error {
	if t.Limit < 0 {
		return daemon.Usagef("--limit must be 0 (all) or positive")
	}
	if err := opCheckSink(t.StateDir, t.Sink, false); err != nil {
		return err
	}
	sinks := []string{t.Sink}
	if t.Sink == "" {
		var err error
		if sinks, err = opSinks(t.StateDir); err != nil {
			return err
		}
	}
	w := t.Out
	var tw *tabwriter.Writer
	if !t.JSON {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAILED_AT\tSINK\tPORT\tSEQ\tID\tATTEMPTS\tERROR\tPAYLOAD")
	}
	n := 0
	var buf []byte
	for _, sink := range sinks {
		path := daemon.DeadLetterPath(t.StateDir, sink)
		err := deadletter.Read(path, func(l deadletter.Letter) error {
			if t.Limit > 0 && n >= t.Limit {
				return errLimit
			}
			n++
			if t.JSON {
				buf = append(l.AppendJSON(buf[:0]), '\n')
				_, err := w.Write(buf)
				return err
			}
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n",
				l.FailedAt.UTC().Format("2006-01-02T15:04:05.000Z"), l.Sink, opOneLine(l.Frame.Port, 32), l.Frame.Seq, l.Frame.ID,
				l.Attempts, strconv.Quote(opTruncate(l.Err, 80)), opPreview(l.Frame.Payload, 40))
			return err
		})
		var de *deadletter.DamageError
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
		case errors.Is(err, errLimit):
		case errors.As(err, &de):
			for _, le := range de.Lines {
				fmt.Fprintf(t.Err, "serialcbd: warning: %s line %d skipped: %v\n", path, le.Line, le.Err)
			}
		default:
			return err
		}
		if t.Limit > 0 && n >= t.Limit {
			break
		}
	}
	if tw != nil {
		if n == 0 {
			fmt.Fprintf(w, "no dead letters under %s\n", t.StateDir)
			return nil
		}
		return tw.Flush()
	}
	return nil
}

// opPreview shows a payload in at most max characters: quoted text when it
// is valid, mostly printable UTF-8, else hex; "…" marks a cut.
func opPreview(p []byte, max int) string {
	if len(p) == 0 {
		return `""`
	}
	printable := 0
	for _, c := range p {
		if c >= 0x20 && c < 0x7f || c == '\r' || c == '\n' || c == '\t' || c >= 0x80 {
			printable++
		}
	}
	if utf8.Valid(p) && printable*4 >= len(p)*3 {
		s := opTruncate(string(p), max)
		return strconv.Quote(s)
	}
	n := min(len(p), max/2)
	s := "hex:" + hex.EncodeToString(p[:n])
	if n < len(p) {
		s += "…"
	}
	return s
}

// opTruncate cuts s to max runes, marking the cut with "…".
func opTruncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "…"
}

// opOneLine keeps a name on one table cell.
func opOneLine(s string, max int) string {
	if strings.ContainsAny(s, "\t\n\r") {
		s = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
	}
	return opTruncate(s, max)
}

// DeadReplay appends t.Sink's dead letters to its spool (fsynced) and
// then deletes its dead-letter file, after confirmation (t.Yes, or a "y"
// on a terminal). It takes the spool's lock: serialcbd must be stopped.
func (t *Tool) DeadReplay() error {
	if err := opCheckSink(t.StateDir, t.Sink, true); err != nil {
		return err
	}
	w := t.Out
	path := daemon.DeadLetterPath(t.StateDir, t.Sink)
	if !opExists(path) {
		fmt.Fprintf(w, "sink %s has no dead letters (no %s)\n", t.Sink, path)
		return nil
	}
	// Hold the spool's lock from reading the dead letters to deleting
	// them: the daemon cannot run and add letters meanwhile.
	s, err := t.openSpool(t.StateDir, t.Sink)
	if err != nil {
		return err
	}
	defer s.Close()
	var frames []*serialcb.Frame
	err = deadletter.Read(path, func(l deadletter.Letter) error {
		f := l.Frame
		frames = append(frames, &f)
		return nil
	})
	var de *deadletter.DamageError
	if err != nil && !errors.As(err, &de) {
		return err
	}
	var damaged []*deadletter.LineError
	if de != nil {
		damaged = de.Lines
	}
	if len(frames) == 0 && len(damaged) == 0 {
		fmt.Fprintf(w, "sink %s has no dead letters\n", t.Sink)
		return nil
	}
	fmt.Fprintf(w, "sink %s: %d dead letter(s) in %s will be moved back into its spool and delivered again when serialcbd starts\n",
		t.Sink, len(frames), path)
	if len(damaged) > 0 {
		fmt.Fprintf(w, "%d damaged line(s) cannot be replayed; they will be kept in %s.damaged\n", len(damaged), path)
	}
	if err := t.confirm(t.Yes, "Replay?"); err != nil {
		return err
	}
	// Order: frames durable in the spool first, then the damaged lines
	// kept, and only then the dead file removed. A crash in between leaves
	// letters in both places: replayed twice, deduplicated by id.
	for i := 0; i < len(frames); i += opReplayBatch {
		if err := s.Append(frames[i:min(i+opReplayBatch, len(frames))]); err != nil {
			return fmt.Errorf("replay: %d of %d letters appended, the dead-letter file is left as it was: %w", i, len(frames), err)
		}
	}
	if len(damaged) > 0 {
		if err := opKeepDamaged(path+".damaged", damaged); err != nil {
			return fmt.Errorf("replay: letters appended to the spool, dead-letter file kept: %w", err)
		}
	}
	if err := opRemoveDurably(path); err != nil {
		return fmt.Errorf("replay: letters appended to the spool, but: %w (running replay again would append them twice: harmless)", err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(w, "replayed %d dead letter(s) of sink %s into %s\n", len(frames), t.Sink, daemon.SpoolDir(t.StateDir, t.Sink))
	return nil
}

// opKeepDamaged appends damaged lines to path and fsyncs it.
func opKeepDamaged(path string, lines []*deadletter.LineError) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	var buf []byte
	for _, l := range lines {
		buf = append(append(buf, l.Text...), '\n')
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return opSyncDir(filepath.Dir(path))
}
