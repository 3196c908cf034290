package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// header is a valid config whose routes list comes last.
const header = "ports:\n  - name: a\n    path: /dev/ttyUSB0\nsinks:\n  - name: s\n    url: stdout\nroutes:\n"

func TestLoadRefusesAHugeFileWithoutReadingIt(t *testing.T) {
	// 220,000 routes, 6.6 MB: it used to take ~700 MB to parse.
	path := filepath.Join(t.TempDir(), "huge.yaml")
	data := header + strings.Repeat("  - ports: [a]\n    sinks: [s]\n", 220_000)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Load(path)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("Load() of a 6.6 MB config succeeded")
	}
	for _, want := range []string{path + ": ", fmt.Sprintf("%d bytes", len(data)), "limit is 262144 bytes", "serialcbd@NAME"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("Load() allocated %d bytes to refuse the file, want less than 1 MiB", alloc)
	}
	if _, err := Parse("huge.yaml", []byte(data), env(nil)); err == nil || !strings.Contains(err.Error(), "limit is 262144 bytes") {
		t.Errorf("Parse() = %v, want the size limit", err)
	}
}

func TestParseLimits(t *testing.T) {
	many := func(n int, item func(i int) string) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(item(i))
		}
		return b.String()
	}
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error; none: valid
	}{
		{"routes at the limit", header + many(MaxRoutes, func(int) string { return "  - {sinks: [s]}\n" }), nil},
		{"too many routes", header + many(MaxRoutes+1, func(int) string { return "  - {sinks: [s]}\n" }),
			[]string{"t.yaml:7: routes: 4097 entries, more than the limit of 4096", "merge routes"}},
		{"too many ports", "ports:\n" + many(MaxPorts+1, func(i int) string { return fmt.Sprintf("  - {name: p%d, path: /dev/ttyS%d}\n", i, i) }) + "sinks: [{name: s, url: stdout}]\n",
			[]string{"t.yaml:1: ports: 1025 entries, more than the limit of 1024", "serialcbd@NAME"}},
		{"too many sinks", "ports: [{name: a, path: /dev/ttyS0}]\nsinks:\n" + many(MaxSinks+1, func(i int) string { return fmt.Sprintf("  - {name: s%d, url: stdout}\n", i) }),
			[]string{"t.yaml:2: sinks: 257 entries, more than the limit of 256"}},
		{"long list in a route", header + "  - sinks: [" + strings.Repeat("s,", MaxEntries) + "s]\n",
			[]string{"t.yaml:8: routes[0].sinks: 4097 entries, more than the limit of 4096"}},
		{"big mapping", header + "  - sinks: [s]\n    fields: {" + many(MaxEntries+1, func(i int) string { return fmt.Sprintf("k%d: v, ", i) }) + "}\n",
			[]string{"t.yaml:9: routes[0].fields: 4097 entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml), env(nil))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse() succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
