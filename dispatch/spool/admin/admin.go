package admin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/spool"
)

// opReplayBatch is how many frames replay appends (and fsyncs) at once.
const opReplayBatch = 1000

// Tool is the spool administration of one state directory, with the
// settings of one command. Out, Err and In are the command's streams.
type Tool struct {
	StateDir string // the daemon's state directory
	Sink     string // the sink to act on ("" with Stats and DeadList: every sink)
	JSON     bool   // Stats and DeadList print JSON
	Limit    int    // DeadList prints at most this many letters (0: all)
	Yes      bool   // DeadReplay and Purge do not ask for confirmation
	Dead     bool   // Purge deletes the dead letters instead of the spooled frames

	In       io.Reader
	Out, Err io.Writer
	Log      *zap.Logger // of the spools opened by DeadReplay and Purge (nil: none)
}

// ErrAborted is returned when the operator answers no: nothing changed.
var ErrAborted = errors.New("aborted: nothing changed")

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
		if opExists(daemon.SpoolDir(dir, e.Name())) || opExists(daemon.DeadLetterPath(dir, e.Name())) {
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
			return daemon.Usagef("--sink NAME is required (see `serialcbd spool stats` for the sinks)")
		}
		return nil
	}
	if sink == "." || sink == ".." || filepath.Base(sink) != sink || strings.ContainsRune(sink, filepath.Separator) {
		return daemon.Usagef("--sink %q: expected a sink name", sink)
	}
	sinks, err := opSinks(stateDir)
	if err != nil {
		return err
	}
	if !slices.Contains(sinks, sink) {
		if len(sinks) == 0 {
			return daemon.Usagef("--sink %q: no sink has a spool or dead letters under %s", sink, stateDir)
		}
		return daemon.Usagef("--sink %q: not found under %s (sinks: %s)", sink, stateDir, strings.Join(sinks, ", "))
	}
	return nil
}

// openSpool opens a sink's spool, taking its lock: only with serialcbd
// stopped.
func (t *Tool) openSpool(stateDir, sink string) (*spool.Spool, error) {
	log := t.Log
	if log == nil {
		log = zap.NewNop()
	}
	dir := daemon.SpoolDir(stateDir, sink)
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

// confirm asks the operator on a terminal, or requires --yes elsewhere.
func (t *Tool) confirm(yes bool, question string) error {
	if yes {
		return nil
	}
	in := t.In
	if !opStdinIsTerminal(in) {
		return daemon.Usagef("standard input is not a terminal: pass --yes to confirm")
	}
	fmt.Fprintf(t.Out, "%s [y/N] ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return ErrAborted
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
