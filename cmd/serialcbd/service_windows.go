package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
)

// serviceName is the name to install the service under (README, "Windows").
const serviceName = "serialcbd"

// start runs the command line; started by the service manager it runs it as
// a Windows service instead, with the arguments of the service's binPath:
//
//	sc.exe create serialcbd start= auto binPath= "\"C:\Program Files\serialcbd\serialcbd.exe\" run --config C:\ProgramData\serialcbd\config.yaml"
func start(args []string) int {
	if isService, err := svc.IsWindowsService(); err != nil || !isService {
		return runContext(context.Background(), args, os.Stdout, os.Stderr)
	}
	s := &service{args: args}
	if err := svc.Run(serviceName, s); err != nil {
		return exitRuntime
	}
	return s.code
}

// service runs the command line until the service manager says stop or
// shutdown, which cancels its context: the same drain as SIGTERM elsewhere.
type service struct {
	args []string
	code int
}

func (s *service) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	// A service starts in C:\Windows\System32 with no console: work in
	// %ProgramData%\serialcbd, so that relative paths (the default SQLite
	// database and state directory) land there, and log to a file in it.
	log, err := serviceDir()
	if err != nil {
		return true, exitRuntime
	}
	defer log.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, s.args, log, log) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case s.code = <-done:
			status <- svc.Status{State: svc.StopPending}
			return s.code != exitOK, uint32(s.code)
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				// Ask for time: the drain takes up to drain_timeout.
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32((30 * time.Second).Milliseconds())}
				cancel()
			}
		}
	}
}

// serviceDir makes %ProgramData%\serialcbd the working directory and opens
// serialcbd.log there for appending.
func serviceDir() (*os.File, error) {
	base, err := windows.KnownFolderPath(windows.FOLDERID_ProgramData, 0)
	if err != nil {
		return nil, fmt.Errorf("find ProgramData: %w", err)
	}
	dir := filepath.Join(base, "serialcbd")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if err := os.Chdir(dir); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(dir, "serialcbd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
}
