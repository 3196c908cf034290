// Package daemon is serialcbd's pipeline as a value: New builds it from a
// checked configuration without I/O (read loops → event loop → dispatcher
// → sinks), Run runs it until its context ends, reloading the
// configuration on SIGHUP (Options.Load) or Reload, and then drains it;
// Stats reads its delivery counters. Programs that embed
// serialcbd, and tests of other packages, use it the way the command does:
//
//	d, err := daemon.New(cfg, log, daemon.Options{})
//	ln, err := daemon.ListenMetrics(daemon.DefaultMetricsAddr)
//	ms := daemon.ServeMetrics(ln, d, log)
//	err = errors.Join(d.Run(ctx), ms.Close())
//
// Where things live:
//
//	daemon.go   New, Run, Close, Stats, Submit, routes
//	ports.go    the ports: read settings, validation and decoding of frames
//	sinks.go    Registry: sink specs (sqlite:, http://, postgres://, …) to sinks
//	state.go    the state directory: SpoolDir, DeadLetterPath, spool options
//	reload.go   Reload and SIGHUP: what a new configuration changes, and the handover
//	metrics.go  the /metrics, /healthz and /readyz server
//	notify.go   systemd READY=1, STOPPING=1 and watchdog pings
//	runwith.go  RunWith: the pipeline with the caller's callback and workload
//
// Configuration mistakes come back as *configs.Error (with file:line:key)
// or *UsageError; a command exits 2 on either.
package daemon
