package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/dispatch/spool"
)

// SpoolDir and DeadLetterPath lay out a sink's state under the state
// directory; `serialcbd spool` (package dispatch/spool/admin) reads the same
// layout.
//
//	<state_dir>/<sink>/spool/      the sink's spool (LOCK held by the daemon)
//	<state_dir>/<sink>/dead.jsonl  the sink's dead letters
func SpoolDir(stateDir, sink string) string { return filepath.Join(stateDir, sink, "spool") }

// DeadLetterPath is the sink's dead-letter file; see SpoolDir.
func DeadLetterPath(stateDir, sink string) string {
	return filepath.Join(stateDir, sink, "dead.jsonl")
}

// spoolOptions turns the spool block into spool.Options for one sink. The
// block was checked when the config was loaded.
func spoolOptions(cfg *configs.Config, sink string) (spool.Options, error) {
	o := spool.Options{Dir: SpoolDir(cfg.StateDir, sink), SyncEvery: cfg.Spool.SyncEvery, MaxBytes: configs.DefaultSpoolMaxBytes}
	if cfg.Spool.MaxBytes != nil {
		o.MaxBytes = int64(*cfg.Spool.MaxBytes)
	}
	sync := cfg.Spool.Sync
	if sync == "" {
		sync = "interval"
	}
	var err error
	if o.Sync, err = spool.ParseSyncMode(sync); err != nil {
		return o, err
	}
	if cfg.Spool.OnFull != "" {
		if o.Overflow, err = spool.ParseOverflowPolicy(cfg.Spool.OnFull); err != nil {
			return o, err
		}
	}
	return o, nil
}

// spoolOpener returns the OpenSpool of a sink's lane: it opens (and
// recovers) the sink's spool and its dead-letter file, and reports what
// recovery found.
func spoolOpener(opts spool.Options, deadPath, sink string, log *zap.Logger) func() (*spool.Spool, dispatch.DeadLetterStore, error) {
	return func() (*spool.Spool, dispatch.DeadLetterStore, error) {
		log := log.With(zap.String("sink", sink))
		sp, err := spool.Open(opts, log)
		if err != nil {
			return nil, nil, spoolOpenError(opts.Dir, err)
		}
		// The spool has logged each damaged region at error level, with
		// its file and what was lost.
		rep := sp.Recovery()
		if rep.Frames > 0 || len(rep.Damage) > 0 {
			log.Info("spool recovered: delivering the frames a previous run left first",
				zap.String("dir", opts.Dir), zap.Uint64("frames", rep.Frames), zap.Int("segments", rep.Segments),
				zap.Bool("ack_reset", rep.AckReset), zap.Int64("truncated_bytes", rep.TruncatedBytes))
		}
		dl, err := deadletter.Open(deadPath)
		if err != nil {
			_ = sp.Close()
			return nil, nil, fmt.Errorf("open dead-letter file: %w", err)
		}
		return sp, dl, nil
	}
}

// spoolOpenError says what to do about a spool that cannot be opened: a
// directory another process holds, one this user may not write, or one on
// a read-only file system.
func spoolOpenError(dir string, err error) error {
	switch {
	case errors.Is(err, spool.ErrLocked):
		return fmt.Errorf("%w: another serialcbd (or `serialcbd spool`) is using this state directory: stop it, or give this one its own state_dir (--state-dir)", err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: this user (uid %d) may not write the state directory %s: fix its owner or mode, or choose another state_dir (--state-dir); under systemd StateDirectory= makes one", err, os.Geteuid(), dir)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: the state directory %s is on a read-only file system: choose a writable state_dir (--state-dir)", err, dir)
	}
	return fmt.Errorf("%w (the state directory %s must be writable)", err, dir)
}
