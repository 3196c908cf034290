package daemon

import (
	"fmt"
	"path/filepath"

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
			return nil, nil, fmt.Errorf("%w (the state directory must be writable; is another serialcbd using it?)", err)
		}
		rep := sp.Recovery()
		for _, d := range rep.Damage {
			log.Warn("spool damage found and repaired; the good records are kept",
				zap.String("segment", d.Segment), zap.Int64("offset", d.Offset), zap.Int64("length", d.Length),
				zap.String("reason", d.Reason), zap.String("action", d.Action))
		}
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
