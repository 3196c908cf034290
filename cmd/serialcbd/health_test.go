package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	"go.uber.org/zap"
)

func TestHealthCmd(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"ready":false,"ports":{"gps":{"up":false}}}`))
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	hang := make(chan struct{})
	hangSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	defer hangSrv.Close()
	defer close(hang) // runs first: release the handler that hangs, then close its server
	hangAddr := strings.TrimPrefix(hangSrv.URL, "http://")
	_, port, _ := strings.Cut(addr, ":")

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		err    string
	}{
		{"healthy", []string{"--addr", addr}, exitOK, "ok\n", ""},
		{"every interface asks loopback", []string{"--addr", "0.0.0.0:" + port}, exitOK, "ok\n", ""},
		{"empty host asks loopback", []string{"--addr", ":" + port}, exitOK, "ok\n", ""},
		{"not ready", []string{"--addr", addr, "--ready"}, exitRuntime, "", `503 Service Unavailable: {"ready":false,"ports":{"gps":{"up":false}}}`},
		{"nothing listens", []string{"--addr", "127.0.0.1:1"}, exitRuntime, "", "connection refused"},
		{"timeout", []string{"--addr", hangAddr, "--timeout", "50ms"}, exitRuntime, "", "deadline exceeded"},
		{"bad addr", []string{"--addr", "nope"}, exitUsage, "", `--addr "nope"`},
		{"bad timeout", []string{"--addr", addr, "--timeout", "0s"}, exitUsage, "", "--timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			g := &globals{stdout: &out, stderr: &errb}
			cmd := newHealthCmd(g)
			cmd.SetArgs(tt.args)
			cmd.SetOut(&out)
			cmd.SetErr(&errb)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			start := time.Now()
			err := cmd.Execute()
			code := exitOK
			if err != nil {
				code = exitCode(err)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d (err %v)", code, tt.code, err)
			}
			if out.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", out.String(), tt.stdout)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("error %v, want it to contain %q", err, tt.err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// The probe against the real metrics server of a running pipeline.
func TestHealthCmdAgainstDaemon(t *testing.T) {
	addr := startMetricsDaemon(t)
	for _, args := range [][]string{{"--addr", addr}, {"--addr", addr, "--ready"}} {
		var out bytes.Buffer
		cmd := newHealthCmd(&globals{stdout: &out, stderr: &out})
		cmd.SetArgs(args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.Execute(); err != nil {
			t.Errorf("health %v: %v", args, err)
		}
	}
}

// startMetricsDaemon runs a daemon in-process on one virtual port, with its
// metrics server on a free loopback port, until the test ends; it returns
// the server's address once the port is open.
func startMetricsDaemon(t *testing.T) string {
	t.Helper()
	pair, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = pair.Close() })
	cfg := &configs.Config{
		Ports:    []configs.Port{{Name: "dev", Path: pair.Path(), Baud: 115200}},
		Sinks:    []configs.Sink{{Name: "file", URL: "file:" + filepath.Join(t.TempDir(), "out.jsonl")}},
		StateDir: t.TempDir(),
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	d, err := daemon.New(cfg, zap.NewNop(), daemon.Options{Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := daemon.ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := daemon.ServeMetrics(ln, d, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if err := ms.Close(); err != nil {
			t.Errorf("metrics server close: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("daemon stopped before it was ready: %v", err)
	}
	return ln.Addr().String()
}
