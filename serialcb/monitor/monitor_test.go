package monitor_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/monitor"
)

// TestRunFile: a capture cut with a framer and checked with a validator
// gives one line per frame and the summary.
func TestRunFile(t *testing.T) {
	var out strings.Builder
	err := monitor.Run(t.Context(), monitor.Options{File: "../../testdata/framing/fixed/modbus_capture.bin",
		Framing: "fixed:8", Validate: "crc16-modbus", MaxFrame: 64, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Count(got, "\n") != 5 || !strings.Contains(got, " #3 len=8 BAD(crc16-modbus: ") ||
		!strings.HasSuffix(got, "# 4 frames, 1 invalid, 0 oversize, 32 bytes read\n") {
		t.Errorf("output:\n%s", got)
	}
}

// TestRunGuessFile: Guess on a capture of NMEA sentences suggests them.
func TestRunGuessFile(t *testing.T) {
	var out strings.Builder
	err := monitor.Run(t.Context(), monitor.Options{File: "../../testdata/demo/gps-nmea.log", Guess: true, GuessFor: 1, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "suggested: --framing ") {
		t.Errorf("no suggestion:\n%s", out.String())
	}
}

// TestRunUsage: mistakes in the options are *UsageError, for exit 2.
func TestRunUsage(t *testing.T) {
	for name, o := range map[string]monitor.Options{
		"neither port nor file": {Framing: "lines"},
		"both":                  {Port: "/dev/null", File: "x", Framing: "lines"},
		"bad framing":           {File: "x", Framing: "nope"},
		"idle on a file":        {File: "../../testdata/demo/gps-nmea.log", Framing: "idle:3.5c", MaxFrame: 64},
		"missing file":          {File: "does-not-exist", Framing: "lines", MaxFrame: 64},
		"guess without time":    {File: "x", Guess: true},
	} {
		var ue *monitor.UsageError
		if err := monitor.Run(t.Context(), o); !errors.As(err, &ue) {
			t.Errorf("%s: %v, want a *UsageError", name, err)
		}
	}
}
