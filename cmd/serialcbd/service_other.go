//go:build !windows

package main

import (
	"context"
	"os"
)

// start runs the command line; only Windows has a service manager to talk to
// (systemd and launchd run serialcbd as a plain process).
func start(args []string) int {
	return runContext(context.Background(), args, os.Stdout, os.Stderr)
}
