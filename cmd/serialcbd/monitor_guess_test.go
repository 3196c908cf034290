//go:build linux

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// monitor --guess on captures suggests the framing they were made with.
func TestMonitorGuessFile(t *testing.T) {
	for _, tc := range []struct {
		file    string
		capture bool // a real capture (see realdata), not a file of the repository
		want    string
	}{
		{"ublox-zed-f9p_hpg1.11.log", true, "suggested: --framing gnss\n"},
		{"neo-m8n.log", true, "suggested: --framing lines --validate nmea\n"},
		{"../../testdata/demo/sensor-csv.log", false, "suggested: --framing lines\n"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			file := tc.file
			if tc.capture {
				file = realdata.Path(t, tc.file)
			}
			code, stdout, stderr := runCLI(t, "monitor", "--guess", "--file", file)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, tc.want) || !strings.Contains(stdout, "% ") {
				t.Errorf("%s\nwant %q", stdout, tc.want)
			}
		})
	}
	if code, _, stderr := runCLI(t, "monitor", "--guess", "--file", "nope.bin"); code != exitUsage || !strings.Contains(stderr, "nope.bin") {
		t.Errorf("missing file: exit %d, %s", code, stderr)
	}
}

// monitor --guess on a port: Modbus RTU requests with pauses between them
// are recognised by their gaps and their CRC.
func TestIntegrationMonitorGuessPort(t *testing.T) {
	frames := readHexFrames(t, "../../testdata/framing/idle/modbus-rtu.hex")
	dev, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = dev.Close() })

	stdout, stderr := newWatchedBuffer(), newWatchedBuffer()
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs([]string{"monitor", "--guess", "--guess-for", "1500ms", "--port", dev.Path(), "--baud", "9600"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(context.Background()) }()
	// The device talks until the sample is taken: one frame, then 30 ms of
	// silence (the pauses are the input under test, not synchronisation).
	tick := time.NewTicker(30 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("monitor: %v\n%s", err, stderr.String())
			}
			out := stdout.String()
			t.Log(out)
			if !strings.Contains(out, "suggested: --framing idle:5ms --validate crc16-modbus\n") {
				t.Fatalf("output:\n%s", out)
			}
			return
		case <-tick.C:
			if _, err := dev.Write(frames[i%len(frames)]); err != nil {
				t.Fatal(err)
			}
		}
	}
}
