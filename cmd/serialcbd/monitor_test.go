package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// runMonitorArgs runs `monitor args...` and returns its output with the
// time stamps replaced by "T".
func runMonitorArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newMonitorCmd(&globals{stdout: &out, stderr: &errOut})
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	stamp := regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{6} `)
	return stamp.ReplaceAllString(out.String(), "T "), err
}

func TestMonitorFileModbusRTU(t *testing.T) {
	got, err := runMonitorArgs(t, "--file", "../../testdata/framing/fixed/modbus_capture.bin",
		"--framing", "fixed:8", "--validate", "crc16-modbus")
	if err != nil {
		t.Fatal(err)
	}
	want := `T #1 len=8 ok 01 03 00 00 00 0a c5 cd
T #2 len=8 ok 01 06 00 01 00 03 98 0b
T #3 len=8 BAD(crc16-modbus: checksum mismatch: computed 0D84, frame says FDC5) 02 03 00 10 ff 02 c5 fd
T #4 len=8 ok 11 04 00 00 00 01 33 5a
# 4 frames, 1 invalid, 0 oversize, 32 bytes read
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMonitorFileSLIP(t *testing.T) {
	got, err := runMonitorArgs(t, "--file", "../../testdata/framing/slip/capture.bin",
		"--framing", "slip", "--validate", "crc16-ccitt")
	if err != nil {
		t.Fatal(err)
	}
	// The CRC bytes make every payload binary, so all are shown in hex.
	want := `T #1 len=11 ok 74 65 6d 70 3d 32 31 2e 35 ab 53
T #2 len=6 ok 01 c0 db 7f 92 26
T #3 len=9 BAD(crc16-ccitt: checksum mismatch: computed 921A, frame says 921B) 68 75 6d 3d 34 30 25 92 1b
T #4 len=6 ok 70 69 6e 67 f7 2b
# 4 frames, 1 invalid, 0 oversize, 42 bytes read
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestMonitorFileHexAndOversize(t *testing.T) {
	got, err := runMonitorArgs(t, "--file", "../../testdata/framing/slip/slip.bin",
		"--framing", "slip", "--max-frame", "16", "--hex")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"T #1 len=5 \n00000000  68 65 6c 6c 6f" + strings.Repeat(" ", 36) + "|hello|\n",
		"T oversize dropped=31\n",
		"# partial frame at end of file: 5 bytes 70 61 72 74 db\n",
		"# 5 frames, 0 invalid, 1 oversize, ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestMonitorUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--file", "x", "--port", "y"},
		{"--file", "x", "--framing", "nope"},
		{"--file", "x", "--validate", "nope"},
		{"--file", "/nonexistent/capture.bin"},
	} {
		_, err := runMonitorArgs(t, args...)
		if exitCode(err) != exitUsage {
			t.Errorf("%q: err %v, exit %d, want usage error", args, err, exitCode(err))
		}
	}
}

// A capture file has no timing: idle framing is refused, and a lines
// flush takes the end of the file for silence.
func TestMonitorFileSilence(t *testing.T) {
	file := writeFile(t, "cap.txt", "a\nb\npartial")
	code, _, stderr := runCLI(t, "monitor", "--file", file, "--framing", "idle:3.5c")
	if code != exitUsage || !strings.Contains(stderr, "needs --port") {
		t.Fatalf("idle on a file: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "monitor", "--file", file, "--framing", "lines:flush=1s")
	if code != exitOK || !strings.Contains(stdout, `#3 len=7 "partial"`) || strings.Contains(stdout, "partial frame at end") {
		t.Fatalf("lines flush: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "monitor", "--file", file)
	if code != exitOK || !strings.Contains(stdout, `partial frame at end of file: 7 bytes "partial"`) {
		t.Fatalf("plain lines: exit %d\nstdout %s", code, stdout)
	}
}
