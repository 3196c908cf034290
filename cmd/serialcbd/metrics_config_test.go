package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestMetricsAddrFromConfig: run listens on the config's metrics_addr (two
// instances with their own addresses do not collide), --metrics-addr wins
// over it, and a bind failure names the setting to change. Each address is
// held by a listener here, so which one run tried shows in its error.
func TestMetricsAddrFromConfig(t *testing.T) {
	hold := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln.Addr().String()
	}
	a, b, c := hold(), hold(), hold()
	config := func(name, addr string) string {
		return writeFile(t, name, fmt.Sprintf("metrics_addr: %q\nstate_dir: %q\nports:\n  - name: p\n    path: /dev/null\nsinks:\n  - name: out\n    url: stdout\n", addr, t.TempDir()))
	}
	cfgA, cfgB := config("a.yaml", a), config("b.yaml", b)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"instance a", []string{"--config", cfgA}, []string{a, "metrics_addr (" + cfgA + ":1)"}},
		{"instance b", []string{"--config", cfgB}, []string{b, "metrics_addr (" + cfgB + ":1)"}},
		{"flag wins", []string{"--config", cfgA, "--metrics-addr", c}, []string{c, "with --metrics-addr"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"run"}, tt.args...)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, stderr)
			}
			for _, w := range append(tt.want, "address already in use") {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}
