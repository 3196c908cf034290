package main

import (
	"net"
	"strings"
	"testing"
)

func TestMetricsAddrErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		addr string
		code int
		want []string
	}{
		{"no port", "localhost", exitUsage, []string{`--metrics-addr "localhost"`, "HOST:PORT"}},
		{"bad port", "127.0.0.1:http-ish", exitUsage, []string{`port "http-ish"`}},
		{"port too big", ":70000", exitUsage, []string{`port "70000"`}},
		{"busy", busy.Addr().String(), exitUsage, []string{"metrics server", "address already in use", "another serialcbd instance?", "with --metrics-addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "run", "--port", "/dev/null", "--sink", "stdout", "--state-dir", t.TempDir(), "--metrics-addr", tt.addr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

// serialcbd validate reports the typo with the file and line, exit 2.
func TestValidateHTTPFormatTypo(t *testing.T) {
	text := strings.Replace(validConfig, "      timeout: 2s\n", "      timeout: 2s\n      format: ndjsn\n", 1)
	code, _, stderr := runCLI(t, "validate", "--config", writeFile(t, "fmt.yaml", text))
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr: %s", code, exitUsage, stderr)
	}
	for _, want := range []string{"fmt.yaml:12:", "sinks[1].http.format", `format "ndjsn"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	ok := strings.Replace(validConfig, "      timeout: 2s\n", "      timeout: 2s\n      format: ndjson\n", 1)
	if code, _, stderr := runCLI(t, "validate", "--config", writeFile(t, "fmtok.yaml", ok)); code != exitOK {
		t.Fatalf("format: ndjson: exit %d; stderr: %s", code, stderr)
	}
}
