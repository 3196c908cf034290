// Package realdata finds the real receiver captures that tests replay. They
// were recorded by others and are not copied into the repository: they are
// read from shared/realdata/gpsd beside the checkout, or from the directory
// in $SERIALCBD_REALDATA. Only tests import it.
package realdata

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// env names a directory holding the real receiver captures, in
// place of shared/realdata/gpsd beside the repository.
const env = "SERIALCBD_REALDATA"

// Path returns the path of the real receiver capture name (as in
// "neo-m8n.log"). The captures were recorded by others and are not copied
// into the repository: they are read from shared/realdata/gpsd beside the
// checkout (<repo>/../shared/realdata/gpsd), or from the directory in
// $SERIALCBD_REALDATA. When the file is absent the test is skipped, saying
// where it looked and how to point it elsewhere; under CI=true, whose
// checkout has shared/ beside it, that is a failure instead.
func Path(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv(env)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "..", "shared", "realdata", "gpsd")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("real capture %s not available: %v (the captures live in shared/realdata/gpsd beside the checkout, not in it; set %s to a directory holding them)", name, err, env)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// repoRoot is the nearest directory above the working directory (the
// package's, under go test) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: cannot find the repository root")
		}
		dir = parent
	}
}
