package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
	p := startPipeline(t, true)
	addr := strings.TrimPrefix(p.base, "http://")
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
