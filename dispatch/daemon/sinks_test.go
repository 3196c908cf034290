package daemon

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
)

// sinkConfig parses a config whose only sink is url with the given extra
// lines (indented under the sink entry).
func sinkConfig(t *testing.T, url, extra string) *configs.Config {
	t.Helper()
	text := "ports:\n  - name: p\n    path: /dev/ttyUSB0\nsinks:\n  - name: api\n    url: " + url + "\n" + extra
	cfg, err := configs.Parse("sinks.yaml", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", text, err)
	}
	return cfg
}

func TestHTTPLaneDefaultsFollowFormat(t *testing.T) {
	tests := []struct {
		name                  string
		extra                 string
		maxBatch, maxInflight int
	}{
		{"default json", "", 1, 16},
		{"explicit json", "    http:\n      format: json\n", 1, 16},
		{"ndjson", "    http:\n      format: ndjson\n", 500, 4},
		{"ndjson with batch.max", "    http:\n      format: ndjson\n    batch:\n      max: 50\n", 50, 4},
		{"ndjson with concurrency", "    http:\n      format: ndjson\n    concurrency: 2\n", 500, 2},
		{"json with batch.max", "    batch:\n      max: 10\n", 10, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := sinkConfig(t, "http://127.0.0.1:1/ingest", tt.extra)
			tgt, err := NewRegistry().target(cfg, 0, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			defer tgt.Sink.Close()
			if tgt.Options.MaxBatch != tt.maxBatch || tgt.Options.MaxInflight != tt.maxInflight {
				t.Fatalf("MaxBatch %d, MaxInflight %d; want %d, %d", tgt.Options.MaxBatch, tgt.Options.MaxInflight, tt.maxBatch, tt.maxInflight)
			}
		})
	}
}

func TestOtherLaneDefaultsUnchanged(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{"sqlite:" + dir + "/a.db", "file:" + dir + "/a.jsonl"} {
		tgt, err := NewRegistry().target(sinkConfig(t, url, ""), 0, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		if tgt.Options.MaxBatch != 1000 || tgt.Options.MaxInflight != 1 {
			t.Errorf("%s: MaxBatch %d, MaxInflight %d; want 1000, 1", url, tgt.Options.MaxBatch, tgt.Options.MaxInflight)
		}
		tgt.Sink.Close()
	}
}

// An unknown format is a config error at the line of the format key.
func TestHTTPFormatTypoNamesTheLine(t *testing.T) {
	cfg := sinkConfig(t, "http://127.0.0.1:1/ingest", "    http: {format: ndjsn}\n")
	_, err := NewRegistry().target(cfg, 0, zap.NewNop())
	if err == nil {
		t.Fatal("target: nil error for format ndjsn")
	}
	for _, want := range []string{"sinks.yaml:7:", "sinks[0].http.format", `format "ndjsn"`, "ndjson"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	cfg = sinkConfig(t, "http://127.0.0.1:1/ingest", "    http:\n      timeout: 2s\n      format: ndjsn\n")
	if _, err = NewRegistry().target(cfg, 0, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "sinks.yaml:9:") {
		t.Errorf("block form: error %v, want it at line 9", err)
	}
}
