package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// monitor --decode nmea on the recorded GPS stream shows the named fields
// of each valid sentence under it, as the daemon would store them.
func TestMonitorFileDecodeNMEA(t *testing.T) {
	got, err := runMonitorArgs(t, "--file", "../../testdata/demo/gps-nmea.log", "--validate", "nmea", "--decode", "nmea")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	want := []string{
		`T #1 len=69 ok "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B"`,
		`  fields {"talker":"GP","type":"GGA","fields":["092653.00","4851.5022","N","00217.6689","E","1","08","1.0","36.8","M","47.3","M","",""],` +
			`"time":"09:26:53.00","lat":48.85837,"lon":2.29448167,"fix_quality":1,"satellites":8,"hdop":1.0,"altitude_m":36.8,"geoid_sep_m":47.3}`,
		`T #2 len=53 ok "$GPGSA,A,3,04,05,09,12,17,19,24,25,,,,,1.6,0.9,1.3*3A"`,
		`  fields {"talker":"GP","type":"GSA","fields":["A","3","04","05","09","12","17","19","24","25","","","","","1.6","0.9","1.3"]}`,
	}
	if len(lines) < len(want) || strings.Join(lines[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant it to start with:\n%s", strings.Join(lines[:min(len(lines), 6)], "\n"), strings.Join(want, "\n"))
	}
	var rmc map[string]any
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l, "  fields "); ok && strings.Contains(s, `"type":"RMC"`) {
			if err := json.Unmarshal([]byte(s), &rmc); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if rmc["date"] != "2026-03-14" || rmc["valid"] != true || rmc["speed_knots"] != 12.88 {
		t.Errorf("first RMC fields %v", rmc)
	}
	// Every sentence decodes: the summary counts none undecoded.
	if !strings.Contains(got, "# 552 frames, 0 invalid, 0 oversize, ") || !strings.HasSuffix(got, ", 0 not decoded\n") {
		t.Errorf("summary: %q", lines[len(lines)-2])
	}
}

// A frame the decoder cannot read is shown with the reason and counted; an
// invalid frame is not decoded (the daemon does not decode it either).
func TestMonitorFileDecodeMismatch(t *testing.T) {
	capture := filepath.Join(t.TempDir(), "env.log")
	if err := os.WriteFile(capture, []byte("# header\n100,21.43\n200,21.5,44\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := runMonitorArgs(t, "--file", capture, "--decode", "csv:ms,temp_c,rh;numbers")
	if err != nil {
		t.Fatal(err)
	}
	want := `T #1 len=8 "# header"
  not decoded: decode csv: fewer columns than names
T #2 len=9 "100,21.43"
  not decoded: decode csv: fewer columns than names
T #3 len=11 "200,21.5,44"
  fields {"ms":200,"temp_c":21.5,"rh":44}
# 3 frames, 0 invalid, 0 oversize, 31 bytes read, 2 not decoded
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	got, err = runMonitorArgs(t, "--file", "../../testdata/framing/fixed/modbus_capture.bin",
		"--framing", "fixed:8", "--validate", "crc16-modbus", "--decode", "hex")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "T #1 len=8 ok 01 03 00 00 00 0a c5 cd\n  fields {\"hex\":\"01030000000ac5cd\"}\n") {
		t.Errorf("hex fields missing:\n%s", got)
	}
	if !strings.Contains(got, "BAD(crc16-modbus: checksum mismatch: computed 0D84, frame says FDC5) 02 03 00 10 ff 02 c5 fd\nT #4") {
		t.Errorf("invalid frame decoded:\n%s", got)
	}
}

func TestDecodeUsageErrors(t *testing.T) {
	if _, err := runMonitorArgs(t, "--file", "x", "--decode", "xml"); exitCode(err) != exitUsage ||
		!strings.Contains(err.Error(), "--decode: ") {
		t.Errorf("monitor --decode xml: %v", err)
	}
	code, _, stderr := runCLI(t, "run", "--port", "/dev/null", "--decode", "csv:a,a", "--metrics-addr", "")
	if code != exitUsage || !strings.Contains(stderr, "--decode: decode csv: column name \"a\" used twice") {
		t.Errorf("run --decode: exit %d, stderr %q", code, stderr)
	}
	cfg := writeFile(t, "c.yaml", validConfig)
	code, _, stderr = runCLI(t, "run", "--config", cfg, "--decode", "nmea", "--metrics-addr", "")
	if code != exitUsage || !strings.Contains(stderr, "--decode cannot be combined with --config") {
		t.Errorf("run --config --decode: exit %d, stderr %q", code, stderr)
	}
}

// A bad decode spec in a config file is a config error with the file, the
// line and the key ports[i].decode; a good one validates.
func TestConfigDecode(t *testing.T) {
	bad := strings.Replace(validConfig, "    framing: 'lines:\\r\\n'\n", "    framing: 'lines:\\r\\n'\n    decode: 'regex:^(\\d+)$'\n", 1)
	if bad == validConfig {
		t.Fatal("test config not edited")
	}
	path := writeFile(t, "bad.yaml", bad)
	code, _, stderr := runCLI(t, "validate", "--config", path)
	want := path + ":5: ports[0].decode: decode regex: no named group"
	if code != exitUsage || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q, want it to contain %q", code, stderr, want)
	}
	good := writeFile(t, "good.yaml", strings.Replace(bad, `regex:^(\d+)$`, "nmea", 1))
	if code, stdout, stderr := runCLI(t, "validate", "--config", good); code != 0 {
		t.Errorf("good config: exit %d, %s %s", code, stdout, stderr)
	}
}

// monitor --port --decode shows the fields of frames read live.
func TestIntegrationMonitorDecodeLive(t *testing.T) {
	dev, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	var stdout, stderr syncBuffer
	cmd := newRootCmd(&stdout, &stderr)
	cmd.SetArgs([]string{"monitor", "--port", dev.Path(), "--baud", "115200", "--framing", `lines:\r\n`,
		"--validate", "nmea", "--decode", "nmea"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	within(t, "port open", func() bool { return strings.Contains(stderr.String(), "serial port open") })
	if _, err := dev.Write([]byte("$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B\r\n" +
		"$GPVTG,90.00,T,,M,12.88,N,23.85,K,A*0B\r\n")); err != nil {
		t.Fatal(err)
	}
	within(t, "two decoded frames", func() bool { return strings.Count(stdout.String(), "  fields {") == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("monitor: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`"type":"GGA"`, `"lat":48.85837,"lon":2.29448167,"fix_quality":1,"satellites":8`,
		`"type":"VTG"`, `"speed_kmh":23.85,"mode":"A"}`, "# 2 frames, 0 invalid", ", 0 not decoded\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A real receiver's capture (gpsd's regression log of a u-blox NEO-M8N,
// GN/GP/GL talkers, CRLF): every sentence is valid and decodes; only the 5
// comment lines of the header fail validation (and so are not decoded).
// Skipped where the shared captures are absent.
func TestMonitorDecodeRealCapture(t *testing.T) {
	capture := realdata.Path(t, "neo-m8n.log")
	got, err := runMonitorArgs(t, "--file", capture, "--validate", "nmea", "--decode", "nmea")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "# 298 frames, 5 invalid, 0 oversize, ") || !strings.HasSuffix(got, ", 0 not decoded\n") {
		t.Errorf("summary %q", got[strings.LastIndex(got[:len(got)-1], "\n")+1:])
	}
	if !strings.Contains(got, `  fields {"talker":"GN","type":"GGA","fields":["171926.00","4404.14063","N","12118.85478","W","1","12","0.91","1147.2","M","-21.3","M","",""],`+
		`"time":"17:19:26.00","lat":44.0690105,"lon":-121.31424633,"fix_quality":1,"satellites":12,"hdop":0.91,"altitude_m":1147.2,"geoid_sep_m":-21.3}`) {
		t.Error("first GNGGA not decoded as expected")
	}
}

// within polls cond until it holds or the deadline passes; only for waiting
// on a pseudo-terminal, whose bytes arrive when the kernel passes them on.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
