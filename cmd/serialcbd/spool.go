package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
)

// State directory layout, shared with the daemon:
//
//	<state_dir>/<sink>/spool/      the sink's spool (LOCK held by the daemon)
//	<state_dir>/<sink>/dead.jsonl  the sink's dead letters
const (
	opSpoolSubdir = "spool"
	opDeadFile    = "dead.jsonl"
	// opReplayBatch is how many frames replay appends (and fsyncs) at once.
	opReplayBatch = 1000
)

func opSpoolDir(stateDir, sink string) string { return filepath.Join(stateDir, sink, opSpoolSubdir) }

func opDeadPath(stateDir, sink string) string { return filepath.Join(stateDir, sink, opDeadFile) }

// errAborted is returned when the operator answers no: nothing changed.
var errAborted = errors.New("aborted: nothing changed")

// spoolCmdFlags are the flags of every `serialcbd spool` command.
type spoolCmdFlags struct {
	stateDir string
	config   string
	sink     string
	json     bool
	limit    int
	yes      bool
	dead     bool
}

// newSpoolCmd is `serialcbd spool`: look into the sinks' spools and dead
// letters, replay dead letters, purge.
func newSpoolCmd(g *globals) *cobra.Command {
	var fl spoolCmdFlags
	cmd := &cobra.Command{
		Use:   "spool (stats | dead list | dead replay | purge)",
		Short: "Inspect the sinks' spools and dead letters; replay or purge them",
		Long: `Each sink keeps what it has not delivered yet in its spool, and what it will
never take (rejected, or out of attempts) in its dead-letter file, under the
state directory:

  <state_dir>/<sink>/spool/       frames waiting for the sink
  <state_dir>/<sink>/dead.jsonl   dead letters, one JSON object per line

The state directory is --state-dir, else the state_dir of --config FILE,
else ./serialcbd-state (relative to the current directory, as for run).
stats and dead list only read, and work while serialcbd runs. dead replay and
purge change the spool: they need serialcbd stopped (it holds the spool's lock).`,
		Args: opNoSubcommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&fl.stateDir, "state-dir", "", "the daemon's state directory (default: the config's state_dir, else "+configs.DefaultStateDir+")")
	pf.StringVarP(&fl.config, "config", "c", "", "take the state directory from this config file's state_dir")

	stats := &cobra.Command{
		Use:   "stats [--state-dir DIR | --config FILE] [--json]",
		Short: "Frames waiting, bytes, oldest frame and dead letters, per sink",
		Long: `stats shows, for every sink under the state directory: the frames waiting in
its spool, the spool's bytes and segment files, the oldest waiting frame's
received_at and age, and the number of dead letters. It reads the files
without locking them, so it works while serialcbd runs; a frame being
written at that moment may be missed.`,
		Example: `  serialcbd spool stats --state-dir /var/lib/serialcbd
  serialcbd spool stats --json`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return runSpoolStats(cmd, fl)
		},
	}
	stats.Flags().BoolVar(&fl.json, "json", false, "print one JSON object")

	dead := &cobra.Command{
		Use:   "dead (list | replay)",
		Short: "List dead letters, or move them back into their sink's spool",
		Args:  opNoSubcommand,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	list := &cobra.Command{
		Use:   "list [--sink NAME] [--json] [--limit N]",
		Short: "One line per dead letter: when, sink, port, seq, id, attempts, error, payload",
		Long: `list prints the dead letters of every sink (or of --sink NAME) in the order
they died. The payload is shown as quoted text when it is mostly printable,
else as hex, truncated. With --json each letter is printed as stored: one
JSON object per line, with the whole frame. Damaged lines (a torn last line
after a crash) are reported on stderr with their line numbers and skipped.`,
		Example: `  serialcbd spool dead list --sink api --limit 20
  serialcbd spool dead list --json | jq .error`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return runDeadList(cmd, fl)
		},
	}
	lf := list.Flags()
	lf.StringVar(&fl.sink, "sink", "", "only this sink's dead letters")
	lf.BoolVar(&fl.json, "json", false, "print the letters as stored, one JSON object per line")
	lf.IntVar(&fl.limit, "limit", 0, "print at most N letters (0: all)")

	replay := &cobra.Command{
		Use:   "replay --sink NAME [--yes]",
		Short: "Move a sink's dead letters back into its spool, to be delivered again",
		Long: `replay appends the sink's dead letters to its spool (fsynced), then deletes
its dead-letter file, so serialcbd delivers them again when it next starts.
If interrupted, a letter may end up in both places; delivering it twice is
harmless, since sinks deduplicate on the frame id. Damaged lines are kept in
dead.jsonl.damaged. serialcbd must be stopped: it holds the spool's lock.
It asks for confirmation on a terminal; elsewhere pass --yes.`,
		Example: `  systemctl stop serialcbd
  serialcbd spool dead replay --sink api --yes
  systemctl start serialcbd`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return runDeadReplay(cmd, g, fl)
		},
	}
	replay.Flags().StringVar(&fl.sink, "sink", "", "the sink whose dead letters to replay (required)")
	replay.Flags().BoolVarP(&fl.yes, "yes", "y", false, "do not ask for confirmation")
	dead.AddCommand(list, replay)

	purge := &cobra.Command{
		Use:   "purge --sink NAME [--dead] [--yes]",
		Short: "Delete a sink's spooled frames (or, with --dead, its dead letters)",
		Long: `purge deletes every frame waiting in the sink's spool, or with --dead every
dead letter of the sink, after saying how many will be lost. They are never
delivered. serialcbd must be stopped: it holds the spool's lock. It asks for
confirmation on a terminal; elsewhere pass --yes.`,
		Example: `  serialcbd spool purge --sink api
  serialcbd spool purge --sink api --dead --yes`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return runSpoolPurge(cmd, g, fl)
		},
	}
	purge.Flags().StringVar(&fl.sink, "sink", "", "the sink to purge (required)")
	purge.Flags().BoolVar(&fl.dead, "dead", false, "delete the dead letters instead of the spooled frames")
	purge.Flags().BoolVarP(&fl.yes, "yes", "y", false, "do not ask for confirmation")

	cmd.AddCommand(stats, dead, purge)
	return cmd
}

// resolveStateDir sets stateDir from --state-dir, else from the config
// file's state_dir, else to the default.
func (fl *spoolCmdFlags) resolveStateDir() error {
	switch {
	case fl.stateDir != "" && fl.config != "":
		return usagef("--state-dir and --config exclude each other")
	case fl.stateDir != "":
	case fl.config != "":
		cfg, err := configs.Load(fl.config)
		if err != nil {
			return err
		}
		if cfg.StateDir == "" {
			return usagef("%s sets an empty state_dir: no spools to look at", fl.config)
		}
		fl.stateDir = cfg.StateDir
	default:
		fl.stateDir = configs.DefaultStateDir
	}
	return nil
}

// opNoSubcommand makes an unknown subcommand a usage error (exit 2).
func opNoSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}

// opNoArgs makes an argument to a command that takes none a usage error.
func opNoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (see %s --help)", args[0], cmd.CommandPath())
	}
	return nil
}

// opSinks lists the sinks that have a spool or dead letters under dir, by
// name.
func opSinks(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no state directory %s (give the daemon's --state-dir)", dir)
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if opExists(opSpoolDir(dir, e.Name())) || opExists(opDeadPath(dir, e.Name())) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func opExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// opCheckSink checks --sink NAME: given, a plain name, and a sink found in
// the state directory.
func opCheckSink(stateDir, sink string, required bool) error {
	if sink == "" {
		if required {
			return usagef("--sink NAME is required (see `serialcbd spool stats` for the sinks)")
		}
		return nil
	}
	if sink == "." || sink == ".." || filepath.Base(sink) != sink || strings.ContainsRune(sink, filepath.Separator) {
		return usagef("--sink %q: expected a sink name", sink)
	}
	sinks, err := opSinks(stateDir)
	if err != nil {
		return err
	}
	if !slices.Contains(sinks, sink) {
		if len(sinks) == 0 {
			return usagef("--sink %q: no sink has a spool or dead letters under %s", sink, stateDir)
		}
		return usagef("--sink %q: not found under %s (sinks: %s)", sink, stateDir, strings.Join(sinks, ", "))
	}
	return nil
}

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

func runSpoolStats(cmd *cobra.Command, fl spoolCmdFlags) error {
	sinks, err := opSinks(fl.stateDir)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]sinkStats, 0, len(sinks))
	for _, name := range sinks {
		st := sinkStats{Sink: name}
		if opExists(opSpoolDir(fl.stateDir, name)) {
			sum, err := spool.Inspect(opSpoolDir(fl.stateDir, name))
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
		n, damaged, err := opCountDead(opDeadPath(fl.stateDir, name))
		if err != nil {
			return fmt.Errorf("sink %s: %w", name, err)
		}
		st.DeadLetters, st.DamagedDead, st.deadLineError = n, len(damaged), damaged
		out = append(out, st)
	}
	w := cmd.OutOrStdout()
	if fl.json {
		b, err := json.MarshalIndent(struct {
			StateDir string      `json:"state_dir"`
			Sinks    []sinkStats `json:"sinks"`
		}{fl.stateDir, out}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if len(out) == 0 {
		printf(w, "no sink has a spool or dead letters under %s\n", fl.stateDir)
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
			printf(w, "%s: %d damaged region(s) in the spool: skipped or cut when serialcbd next opens it\n", st.Sink, st.DamagedSpool)
		}
		if st.Quarantined > 0 {
			printf(w, "%s: %d quarantined segment file(s) (*.corrupt) in %s\n", st.Sink, st.Quarantined, opSpoolDir(fl.stateDir, st.Sink))
		}
		for _, le := range st.deadLineError {
			printf(w, "%s: %s line %d damaged: %v\n", st.Sink, opDeadPath(fl.stateDir, st.Sink), le.Line, le.Err)
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

var errLimit = errors.New("limit reached")

func runDeadList(cmd *cobra.Command, fl spoolCmdFlags) error {
	if fl.limit < 0 {
		return usagef("--limit must be 0 (all) or positive")
	}
	if err := opCheckSink(fl.stateDir, fl.sink, false); err != nil {
		return err
	}
	sinks := []string{fl.sink}
	if fl.sink == "" {
		var err error
		if sinks, err = opSinks(fl.stateDir); err != nil {
			return err
		}
	}
	w := cmd.OutOrStdout()
	var tw *tabwriter.Writer
	if !fl.json {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAILED_AT\tSINK\tPORT\tSEQ\tID\tATTEMPTS\tERROR\tPAYLOAD")
	}
	n := 0
	var buf []byte
	for _, sink := range sinks {
		path := opDeadPath(fl.stateDir, sink)
		err := deadletter.Read(path, func(l deadletter.Letter) error {
			if fl.limit > 0 && n >= fl.limit {
				return errLimit
			}
			n++
			if fl.json {
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
				fmt.Fprintf(cmd.ErrOrStderr(), "serialcbd: warning: %s line %d skipped: %v\n", path, le.Line, le.Err)
			}
		default:
			return err
		}
		if fl.limit > 0 && n >= fl.limit {
			break
		}
	}
	if tw != nil {
		if n == 0 {
			printf(w, "no dead letters under %s\n", fl.stateDir)
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

// opOpenSpool opens a sink's spool, taking its lock: only with serialcbd
// stopped.
func opOpenSpool(g *globals, stateDir, sink string) (*spool.Spool, error) {
	log, err := g.newLogger("warn", "")
	if err != nil {
		return nil, err
	}
	dir := opSpoolDir(stateDir, sink)
	s, err := spool.Open(spool.Options{Dir: dir}, log)
	if errors.Is(err, spool.ErrLocked) {
		return nil, fmt.Errorf("the spool of sink %q (%s) is locked by a running serialcbd: "+
			"stop serialcbd first (e.g. systemctl stop serialcbd), then run this again; "+
			"`serialcbd spool stats` and `serialcbd spool dead list` work while it runs", sink, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", sink, err)
	}
	return s, nil
}

// opConfirm asks the operator on a terminal, or requires --yes elsewhere.
func opConfirm(cmd *cobra.Command, yes bool, question string) error {
	if yes {
		return nil
	}
	in := cmd.InOrStdin()
	if !opStdinIsTerminal(in) {
		return usagef("standard input is not a terminal: pass --yes to confirm")
	}
	printf(cmd.OutOrStdout(), "%s [y/N] ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errAborted
}

// opStdinIsTerminal reports whether r is a terminal: a character device
// other than /dev/null.
func opStdinIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(st, null)
}

func runDeadReplay(cmd *cobra.Command, g *globals, fl spoolCmdFlags) error {
	if err := opCheckSink(fl.stateDir, fl.sink, true); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	path := opDeadPath(fl.stateDir, fl.sink)
	if !opExists(path) {
		printf(w, "sink %s has no dead letters (no %s)\n", fl.sink, path)
		return nil
	}
	// Hold the spool's lock from reading the dead letters to deleting
	// them: the daemon cannot run and add letters meanwhile.
	s, err := opOpenSpool(g, fl.stateDir, fl.sink)
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
		printf(w, "sink %s has no dead letters\n", fl.sink)
		return nil
	}
	printf(w, "sink %s: %d dead letter(s) in %s will be moved back into its spool and delivered again when serialcbd starts\n",
		fl.sink, len(frames), path)
	if len(damaged) > 0 {
		printf(w, "%d damaged line(s) cannot be replayed; they will be kept in %s.damaged\n", len(damaged), path)
	}
	if err := opConfirm(cmd, fl.yes, "Replay?"); err != nil {
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
	printf(w, "replayed %d dead letter(s) of sink %s into %s\n", len(frames), fl.sink, opSpoolDir(fl.stateDir, fl.sink))
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

// opRemoveDurably removes path and fsyncs its directory.
func opRemoveDurably(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return opSyncDir(filepath.Dir(path))
}

func opSyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func runSpoolPurge(cmd *cobra.Command, g *globals, fl spoolCmdFlags) error {
	if err := opCheckSink(fl.stateDir, fl.sink, true); err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	s, err := opOpenSpool(g, fl.stateDir, fl.sink)
	if err != nil {
		return err
	}
	defer s.Close()
	if fl.dead {
		path := opDeadPath(fl.stateDir, fl.sink)
		n, damaged, err := opCountDead(path)
		if err != nil {
			return err
		}
		if !opExists(path) {
			printf(w, "sink %s has no dead letters\n", fl.sink)
			return nil
		}
		printf(w, "sink %s: %d dead letter(s) (and %d damaged line(s)) in %s will be deleted: they are lost\n", fl.sink, n, len(damaged), path)
		if err := opConfirm(cmd, fl.yes, "Delete them?"); err != nil {
			return err
		}
		if err := opRemoveDurably(path); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		printf(w, "deleted %d dead letter(s) of sink %s\n", n, fl.sink)
		return s.Close()
	}
	st := s.Stats()
	if st.Frames == 0 {
		printf(w, "sink %s: the spool is empty\n", fl.sink)
		return nil
	}
	printf(w, "sink %s: %d frame(s) waiting in %s (%s) will be deleted: they are never delivered\n",
		fl.sink, st.Frames, opSpoolDir(fl.stateDir, fl.sink), opBytes(st.Bytes))
	if err := opConfirm(cmd, fl.yes, "Delete them?"); err != nil {
		return err
	}
	// Acknowledge everything: the spool deletes the segments itself and
	// persists the position, as after a delivery.
	var n uint64
	for {
		fs, cur, err := s.Read(4096)
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		if len(fs) == 0 {
			break
		}
		n += uint64(len(fs))
		if err := s.Ack(cur); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	printf(w, "deleted %d frame(s) from the spool of sink %s\n", n, fl.sink)
	return nil
}
