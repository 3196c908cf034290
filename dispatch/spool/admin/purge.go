package admin

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

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

// Purge deletes the frames waiting in t.Sink's spool (with t.Dead, its
// dead letters instead) after confirmation. It takes the spool's lock.
func (t *Tool) Purge() error {
	if err := opCheckSink(t.StateDir, t.Sink, true); err != nil {
		return err
	}
	w := t.Out
	s, err := t.openSpool(t.StateDir, t.Sink)
	if err != nil {
		return err
	}
	defer s.Close()
	if t.Dead {
		path := daemon.DeadLetterPath(t.StateDir, t.Sink)
		n, damaged, err := opCountDead(path)
		if err != nil {
			return err
		}
		if !opExists(path) {
			fmt.Fprintf(w, "sink %s has no dead letters\n", t.Sink)
			return nil
		}
		fmt.Fprintf(w, "sink %s: %d dead letter(s) (and %d damaged line(s)) in %s will be deleted: they are lost\n", t.Sink, n, len(damaged), path)
		if err := t.confirm(t.Yes, "Delete them?"); err != nil {
			return err
		}
		if err := opRemoveDurably(path); err != nil {
			return fmt.Errorf("purge: %w", err)
		}
		fmt.Fprintf(w, "deleted %d dead letter(s) of sink %s\n", n, t.Sink)
		return s.Close()
	}
	st := s.Stats()
	if st.Frames == 0 {
		fmt.Fprintf(w, "sink %s: the spool is empty\n", t.Sink)
		return nil
	}
	fmt.Fprintf(w, "sink %s: %d frame(s) waiting in %s (%s) will be deleted: they are never delivered\n",
		t.Sink, st.Frames, daemon.SpoolDir(t.StateDir, t.Sink), opBytes(st.Bytes))
	if err := t.confirm(t.Yes, "Delete them?"); err != nil {
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
	fmt.Fprintf(w, "deleted %d frame(s) from the spool of sink %s\n", n, t.Sink)
	return nil
}
