package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/spf13/cobra"
)

type healthFlags struct {
	addr    string
	timeout time.Duration
	ready   bool
}

// newHealthCmd is `serialcbd health`: a probe for container HEALTHCHECKs and
// scripts, exit 0 when the daemon answers 200, else 1.
func newHealthCmd(g *globals) *cobra.Command {
	var fl healthFlags
	cmd := &cobra.Command{
		Use:   "health [--addr HOST:PORT] [--ready] [--timeout D]",
		Short: "Ask a running daemon whether it is alive (or ready); exit 0 if so, else 1",
		Long: `health GETs /healthz from the metrics server of a running 'serialcbd run'
(--metrics-addr there, 127.0.0.1:9464 by default) and exits 0 on 200, 1 on
anything else or no answer within --timeout. With --ready it asks /readyz,
which is 200 only while every port is open and the event loop runs, and
prints its JSON body naming what is not ready.

An address on every interface (":9464", "0.0.0.0:9464") is asked on the
loopback address.`,
		Example: `  serialcbd health
  serialcbd health --ready --addr 127.0.0.1:9464
  HEALTHCHECK CMD ["/serialcbd", "health"]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runHealth(cmd.Context(), g, fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.addr, "addr", daemon.DefaultMetricsAddr, "the daemon's --metrics-addr, HOST:PORT")
	f.DurationVar(&fl.timeout, "timeout", 2*time.Second, "give up after this long")
	f.BoolVar(&fl.ready, "ready", false, "ask /readyz (every port open, loop running) instead of /healthz")
	return cmd
}

func runHealth(ctx context.Context, g *globals, fl healthFlags) error {
	if err := daemon.CheckHostPort(fl.addr); err != nil {
		return usagef("--addr %q: %v", fl.addr, err)
	}
	if fl.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if ctx == nil {
		ctx = context.Background()
	}
	host, port, _ := net.SplitHostPort(fl.addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	path := "/healthz"
	if fl.ready {
		path = "/readyz"
	}
	url := "http://" + net.JoinHostPort(host, port) + path
	ctx, cancel := context.WithTimeout(ctx, fl.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usagef("--addr %q: %v", fl.addr, err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("health: read %s: %w", url, err)
	}
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s: %s: %s", url, resp.Status, text)
	}
	printf(g.stdout, "%s\n", text)
	return nil
}
