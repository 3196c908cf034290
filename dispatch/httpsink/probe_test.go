package httpsink

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// An endpoint that does not answer at start gets one clear warning, and the
// sink starts anyway; one that answers gets none.
func TestStartWarnsWhenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	for _, tt := range []struct {
		url  string
		warn int
	}{
		{"http://" + closedAddr + "/ingest", 1},
		{up.URL + "/ingest", 0},
	} {
		t.Setenv("HTTP_PROXY", "")
		t.Setenv("http_proxy", "")
		core, logs := observer.New(zapcore.WarnLevel)
		cfg, err := ParseSpec(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatalf("%s: Start: %v (an unreachable endpoint must not stop the start)", tt.url, err)
		}
		got := logs.FilterMessageSnippet("unreachable at start").Len()
		if got != tt.warn {
			t.Errorf("%s: %d warnings, want %d", tt.url, got, tt.warn)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
