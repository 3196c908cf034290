// Command serialcbd reads frames from serial ports and delivers each one to
// HTTP endpoints, databases and files, at least once.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/daemon/bench"
)

// Exit codes, part of the user-facing contract.
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

func main() {
	if bench.IsWriter() { // `serialcbd bench` started this process as its device
		os.Exit(bench.WriterMain())
	}
	// start is run, or on Windows under the service manager, run as a
	// service (service_windows.go).
	os.Exit(start(os.Args[1:]))
}

// run executes the command line and maps its error to an exit code; main
// calls os.Exit once with it.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops `run` as SIGTERM does:
// the Windows service cancels it when the service manager says stop.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "serialcbd: %v\n", err)
	return exitCode(err)
}

// usagef returns a mistake in the command line or configuration: exit 2.
func usagef(format string, args ...any) error { return daemon.Usagef(format, args...) }

func exitCode(err error) int {
	var ue *daemon.UsageError
	var ce *configs.Error
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	return exitRuntime
}
