package daemon

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/spool"
)

// TestSpoolOpenErrorHints: a state directory this user may not write is
// not "another serialcbd"; one another spool holds is.
func TestSpoolOpenErrorHints(t *testing.T) {
	dir := t.TempDir()
	eacces := spoolOpenError(dir, &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.EACCES})
	for _, want := range []string{"may not write the state directory " + dir, "--state-dir"} {
		if !strings.Contains(eacces.Error(), want) {
			t.Errorf("EACCES: %q lacks %q", eacces, want)
		}
	}
	if strings.Contains(eacces.Error(), "another serialcbd") {
		t.Errorf("EACCES blames another serialcbd: %v", eacces)
	}
	if rofs := spoolOpenError(dir, &fs.PathError{Op: "open", Path: dir, Err: syscall.EROFS}); !strings.Contains(rofs.Error(), "read-only file system") {
		t.Errorf("EROFS: %v", rofs)
	}

	// A real lock held by another spool.
	opts := spool.Options{Dir: filepath.Join(dir, "s", "spool")}
	held, err := spool.Open(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, _, err = spoolOpener(opts, filepath.Join(dir, "s", "dead.jsonl"), "s", zap.NewNop())()
	if err == nil || !strings.Contains(err.Error(), "another serialcbd") || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("locked: %v", err)
	}
}
