package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestLoggerDurationsHaveUnits: a duration reads "100ms", not 0.1.
func TestLoggerDurationsHaveUnits(t *testing.T) {
	for _, tt := range []struct{ format, want string }{
		{"json", `"retry_in":"100ms","deadline":"10s"`},
		{"console", `{"retry_in": "100ms", "deadline": "10s"}`},
	} {
		var out bytes.Buffer
		g := &globals{stderr: &out}
		log, err := g.newLogger("info", tt.format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", zap.Duration("retry_in", 100*time.Millisecond), zap.Duration("deadline", 10*time.Second))
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("%s log %q lacks %s", tt.format, out.String(), tt.want)
		}
	}
}
