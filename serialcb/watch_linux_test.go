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
