package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// TestDemoTwice: a second demo into the same database says that it adds
// to the frames already there, and its summary counts its own.
func TestDemoTwice(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	if code, stdout, stderr := runCLI(t, "demo", "--db", db, "--baud", "1000000"); code != exitOK {
		t.Fatalf("first run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr := runCLI(t, "demo", "--db", db, "--baud", "1000000")
	if code != exitOK {
		t.Fatalf("second run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(regexp.QuoteMeta(db)+` already holds \d+ frames from earlier runs`).MatchString(stdout) || !strings.Contains(stdout, "the rows of this run") {
		t.Errorf("second run's output does not say it adds to the earlier frames:\n%s", stdout)
	}
	rows := regexp.MustCompile(`(?m)^  (gps|env-sensor)\s+(\d+)\s`).FindAllStringSubmatch(stdout, -1)
	got := map[string]string{}
	for _, r := range rows {
		got[r[1]] = r[2]
	}
	if got["gps"] != "552" || got["env-sensor"] != "1201" {
		t.Errorf("rows of the second run = %v, want gps 552 and env-sensor 1201 (this run's):\n%s", got, stdout)
	}
}

// TestDemoProgressEndsAtTheSummary: on a terminal, the progress bar's last
// line shows the counts the summary gives, not those of a moment before.
func TestDemoProgressEndsAtTheSummary(t *testing.T) {
	tty, err := vport.Open() // a terminal for stdout
	if err != nil {
		t.Skip("no pseudo-terminal:", err)
	}
	defer tty.Close()
	out, err := os.OpenFile(tty.SlavePath(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&seen, tty); close(copied) }()

	var stderr bytes.Buffer
	code := run([]string{"demo", "--db", filepath.Join(t.TempDir(), "demo.db"), "--baud", "1000000"}, out, &stderr)
	out.Close()
	tty.Close() // ends the copy
	<-copied
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, seen.String(), stderr.String())
	}
	text := seen.String()
	last := regexp.MustCompile(`frames read\s+(\d+)\s+delivered\s+(\d+) *\r?\n`).FindAllStringSubmatch(text, -1)
	if len(last) == 0 {
		t.Fatalf("no progress line ended:\n%q", text)
	}
	delivered := regexp.MustCompile(`(?m)^sqlite\s+(\d+)\s`).FindStringSubmatch(text)
	if delivered == nil || !strings.Contains(text, "1753 frames read (1753 expected)") {
		t.Fatalf("summary:\n%s", text)
	}
	if l := last[len(last)-1]; l[1] != "1753" || l[2] != delivered[1] {
		t.Errorf("progress ends at read %s, delivered %s; the summary says 1753 and %s:\n%s", l[1], l[2], delivered[1], text)
	}
}
