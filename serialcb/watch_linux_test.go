package serialcb

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// A device that comes back is reopened because its path appeared, not
// because a retry timer fired: with the timer at an hour, only the
// directory watch can bring the port back.
func TestIntegrationReaderReopensWhenThePathAppears(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id", "usb-Test_Device-if00") // like /dev/serial/by-id, absent while unplugged
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Name: "dev", Path: link, ReconnectMin: time.Hour, ReconnectMax: time.Hour}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	logs.waitFor(t, "cannot open serial port; retrying", 1) // absent at start: waiting an hour, or for the path

	if err := os.Mkdir(filepath.Dir(link), 0o755); err != nil { // plugged in: udev makes the directory,
		t.Fatal(err)
	}
	pair, err := vport.OpenLink(link) // then the link
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	<-r.Opened()
	if _, err := pair.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// The directory that appeared between choosing the directory to watch and
// watching it (by-id, made by udev just before its link) wakes the watch at
// once: watching the parent alone would miss the link.
func TestWatchWakesWhenADeeperDirectoryAppeared(t *testing.T) {
	parent := t.TempDir()
	link := filepath.Join(parent, "by-id", "usb-Test_Device-if00")
	if dir, _ := nearestDir(link); dir != parent {
		t.Fatalf("nearestDir = %q, want %q", dir, parent)
	}
	if err := os.Mkdir(filepath.Dir(link), 0o755); err != nil { // after the choice, before the watch
		t.Fatal(err)
	}
	w := watchDir(link, parent)
	if w == nil {
		t.Skip("no inotify here")
	}
	defer w.Close()
	select {
	case <-w.C():
	default:
		t.Fatal("the watch on the parent did not wake although by-id now exists")
	}
	// Watching the right directory does not wake by itself.
	w2 := watchPath(link)
	defer w2.Close()
	select {
	case <-w2.C():
		t.Fatal("a watch on the nearest directory woke without a change")
	default:
	}
}
