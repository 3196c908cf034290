package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if len(args) > 0 && args[0] == "run" && !slices.Contains(args, "--state-dir") && !slices.Contains(args, "--config") {
		args = append(slices.Clip(args), "--state-dir", t.TempDir()) // not ./serialcbd-state in the source tree
	}
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const validConfig = `ports:
  - name: gps
    path: /dev/ttyUSB0
    framing: 'lines:\r\n'
sinks:
  - name: db
    url: sqlite:./x.db
  - name: api
    url: http://127.0.0.1:1/ingest
    http:
      timeout: 2s
`

func TestExitCodesAndMessages(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ttyNOPE0")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"version", []string{"version"}, exitOK, "serialcbd ", nil},
		{"help", []string{"--help"}, exitOK, "serialcbd demo", nil},
		{"completion", []string{"completion", "bash"}, exitOK, "bash completion", nil},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", []string{`unknown command "frobnicate"`}},
		{"unknown flag", []string{"run", "--prot", "x"}, exitUsage, "", []string{"unknown flag: --prot"}},
		{"run without port", []string{"run"}, exitUsage, "", []string{"give --port PATH", "serialcbd ports"}},
		{"bad sink spec", []string{"run", "--metrics-addr", "", "--port", "/dev/null", "--sink", "ftp://x"}, exitUsage, "", []string{`--sink "ftp://x"`, "expected sqlite:PATH"}},
		{"bad framing", []string{"run", "--metrics-addr", "", "--port", "/dev/null", "--framing", "morse"}, exitUsage, "", []string{"--framing", "morse"}},
		{"missing required port", []string{"run", "--metrics-addr", "", "--require-ports", "--port", missing, "--sink", "stdout"}, exitUsage, "", []string{missing, "not found", "--require-ports"}},
		{"bad validate spec", []string{"run", "--metrics-addr", "", "--port", missing, "--validate", "crc7"}, exitUsage, "", []string{"--validate", `unknown validator "crc7"`}},
		{"validate with config", []string{"run", "--config", "x.yaml", "--validate", "nmea"}, exitUsage, "", []string{"--validate cannot be combined with --config"}},
		{"config with flags", []string{"run", "--config", "x.yaml", "--port", "/dev/x"}, exitUsage, "", []string{"--port cannot be combined with --config"}},
		{"validate ok", []string{"validate", "--config", writeFile(t, "ok.yaml", validConfig)}, exitOK, "ok (1 ports, 2 sinks, 0 routes)", nil},
		{"validate example", []string{"validate", "--config", "../../configs/example.yaml"}, exitOK, "ok (3 ports, 2 sinks, 2 routes)", nil},
		{"validate typo", []string{"validate", "--config", writeFile(t, "typo.yaml", strings.Replace(validConfig, "framing:", "framming:", 1))},
			exitUsage, "", []string{"typo.yaml:4:", `unknown key "framming"`, `did you mean "framing"`}},
		{"validate typo in sink block", []string{"validate", "--config", writeFile(t, "typo2.yaml", strings.Replace(validConfig, "timeout:", "timout:", 1))},
			exitUsage, "", []string{"typo2.yaml:11:", "sinks[1].http.timout", `did you mean "timeout"`}},
		{"validate bad sink url", []string{"validate", "--config", writeFile(t, "url.yaml", strings.Replace(validConfig, "sqlite:./x.db", "mysql://x", 1))},
			exitUsage, "", []string{"url.yaml:7:", "sinks[0].url", `unknown sink "mysql://x"`}},
		{"validate block for another sink", []string{"validate", "--config", writeFile(t, "blk.yaml", strings.Replace(validConfig, "    http:\n", "    sqlite:\n", 1))},
			exitUsage, "", []string{"blk.yaml:10:", "does not apply"}},
		{"validate bad validate spec", []string{"validate", "--config", writeFile(t, "v.yaml", strings.Replace(validConfig, "    framing:", "    validate: crc7\n    framing:", 1))},
			exitUsage, "", []string{"v.yaml:4:", "ports[0].validate", `unknown validator "crc7"`}},
		{"validate on_invalid unknown sink", []string{"validate", "--config", writeFile(t, "oi.yaml", strings.Replace(validConfig, "    framing:", "    validate: nmea\n    on_invalid: sink:nope\n    framing:", 1))},
			exitUsage, "", []string{"oi.yaml:5:", "ports[0].on_invalid", `no sink named "nope"`}},
		{"validate on_invalid ok", []string{"validate", "--config", writeFile(t, "oiok.yaml", strings.Replace(validConfig, "    framing:", "    validate: nmea\n    on_invalid: sink:api\n    framing:", 1))},
			exitOK, "ok (1 ports, 2 sinks, 0 routes)", nil},
		{"validate missing file", []string{"validate", "--config", "/nonexistent.yaml"}, exitUsage, "", []string{"/nonexistent.yaml", "cannot read config"}},
		{"validate example flag", []string{"validate", "--example"}, exitOK, "serialcbd example configuration", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) {
				t.Errorf("stdout %q lacks %q", stdout, tt.stdout)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

func TestDemo(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	code, stdout, stderr := runCLI(t, "demo", "--db", db, "--baud", "1000000")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, w := range []string{"1753 frames read (1753 expected)", "sqlite", "table frames", "latest gps frame", "$GPVTG"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("summary lacks %q:\n%s", w, stdout)
		}
	}
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n, ids int
	if err := conn.QueryRow(`SELECT count(*), count(DISTINCT id) FROM frames WHERE port != 'meter'`).Scan(&n, &ids); err != nil {
		t.Fatal(err)
	}
	if n != 1753 || ids != 1753 {
		t.Errorf("%d rows, %d ids; want 1753", n, ids)
	}
	// The polled meter's replies are stored too, with their poll fields.
	if err := conn.QueryRow(`SELECT count(*) FROM frames WHERE port = 'meter' AND fields LIKE '%"poll":"energy"%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 || !strings.Contains(stdout, "polled meter/energy") {
		t.Errorf("no polled replies stored (%d rows)", n)
	}
}

func TestPortsJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "ports", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var ports []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(stdout), &ports); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, stdout)
	}
	for _, p := range ports {
		if !strings.HasPrefix(p.Name, "/dev/") {
			t.Errorf("port name %q is not a device path", p.Name)
		}
	}
	code, stdout, _ = runCLI(t, "ports")
	if code != exitOK || (len(ports) > 0 && !strings.Contains(stdout, "PORT")) {
		t.Errorf("table: exit %d\n%s", code, stdout)
	}
}
