package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

const defaultDrainTimeout = 10 * time.Second

// daemon is the whole pipeline built from a configuration: read loops →
// event loop → dispatcher → sinks.
type daemon struct {
	log          *zap.Logger
	loop         *asyncloop.Loop
	disp         *dispatch.Dispatcher
	readers      []*serialcb.Reader
	ports        []configs.Port
	drainTimeout time.Duration
	ready        func() // called once every port is open (the demo starts playing then)
}

// build turns a checked configuration into a daemon without any I/O, so
// that `validate` can run it too. Its errors are configuration errors.
func build(cfg *configs.Config, reg *registry, log *zap.Logger) (*daemon, error) {
	d := &daemon{log: log, ports: cfg.Ports, drainTimeout: cfg.DrainTimeout}
	if d.drainTimeout == 0 {
		d.drainTimeout = defaultDrainTimeout
	}
	for i := range cfg.Ports {
		pc, err := portConfig(cfg, i)
		if err != nil {
			return nil, err
		}
		r, err := serialcb.NewReader(pc, log)
		if err != nil {
			return nil, portErr(cfg, i, "", err)
		}
		d.readers = append(d.readers, r)
	}
	var targets []dispatch.Target
	inflight := 0
	for i := range cfg.Sinks {
		t, err := reg.target(cfg, i, log)
		if err != nil {
			closeTargets(targets)
			return nil, err
		}
		targets = append(targets, t)
		inflight += max(t.Options.MaxInflight, 1)
	}
	lo := asyncloop.Options{
		QueueSize:    cfg.Loop.Queue,
		Workers:      cfg.Loop.Workers,
		BlockTimeout: cfg.Loop.BlockTimeout,
		OnUnobserved: func(err error) { log.Error("a failed future was never checked (bug)", zap.Error(err)) },
	}
	if lo.QueueSize == 0 {
		lo.QueueSize = 8192
	}
	// Sink writes are the loop's tasks; the queue must hold every lane's
	// in-flight writes so that scheduling one never waits.
	lo.QueueSize = max(lo.QueueSize, inflight)
	if cfg.Loop.OnFull == "fail" {
		lo.OnFull = asyncloop.FailFast
	}
	d.loop = asyncloop.New(lo)
	var routes []dispatch.Route
	for _, r := range cfg.Routes {
		routes = append(routes, dispatch.Route{Ports: r.Ports, Sinks: r.Sinks})
	}
	disp, err := dispatch.New(d.loop, dispatch.Config{Targets: targets, Routes: routes}, log)
	if err != nil {
		closeTargets(targets)
		return nil, usagef("%v", err)
	}
	d.disp = disp
	return d, nil
}

func closeTargets(ts []dispatch.Target) {
	for _, t := range ts {
		_ = t.Sink.Close()
	}
}

// portConfig maps config entry i to the read loop's settings.
func portConfig(cfg *configs.Config, i int) (serialcb.PortConfig, error) {
	p := cfg.Ports[i]
	framer, err := serialcb.ParseFraming(p.Framing)
	if err != nil {
		return serialcb.PortConfig{}, portErr(cfg, i, "framing", err)
	}
	pc := serialcb.PortConfig{
		Name:     p.Name,
		Path:     p.Path,
		Baud:     p.Baud,
		DataBits: p.DataBits,
		Parity:   serialcb.Parity(p.Parity),
		StopBits: p.StopBits,
		Framer:   framer,
		MaxFrame: p.MaxFrame,

		SilenceTimeout: p.SilenceTimeout,
	}
	if pc.Baud == 0 {
		pc.Baud = 9600
	}
	if err := pc.Validate(); err != nil {
		return pc, portErr(cfg, i, "", err)
	}
	return pc, nil
}

func portErr(cfg *configs.Config, i int, key string, err error) error {
	if cfg.File() == "" {
		flag := map[string]string{"framing": "--framing", "": "--port"}[key]
		return usagef("%s: %v", flag, err)
	}
	path := fmt.Sprintf("ports[%d]", i)
	if key != "" {
		path += "." + key
	}
	return cfg.Errorf(path, "%v", err)
}

// run starts everything, reads until ctx ends, then drains: stop reading,
// give in-flight frames until the drain deadline to reach their sinks, and
// stop. A port missing at start is a usage error (exit 2).
func (d *daemon) run(ctx context.Context) (err error) {
	d.loop.Start()
	defer func() {
		// Reached on every path: after a drain, or after a failed start.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = d.loop.Shutdown(sctx)
		err = errors.Join(err, d.disp.Close())
	}()
	if err := d.disp.Start(ctx); err != nil {
		return err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg sync.WaitGroup
	errs := make(chan error, len(d.readers))
	for i, r := range d.readers {
		wg.Go(func() {
			errs <- r.RunOpen(readCtx, func(f serialcb.Frame) { d.disp.Submit(f) })
		})
		select {
		case <-r.Opened():
		case err := <-errs:
			// The first open failed; stop the ports already reading.
			stopReading()
			wg.Wait()
			if errors.Is(err, serialcb.ErrPortNotFound) {
				return usagef("port %s: %v", d.ports[i].Name, err)
			}
			return fmt.Errorf("port %s: %w", d.ports[i].Name, err)
		case <-ctx.Done():
			stopReading()
			wg.Wait()
			return nil
		}
	}
	d.log.Info("serialcbd running", zap.Int("ports", len(d.readers)))
	stopWatchdog := d.notifyReady() // systemd: READY=1, then watchdog pings
	defer stopWatchdog()
	if d.ready != nil {
		d.ready()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs: // a read loop ended on its own: a failure
		runErr = fmt.Errorf("read loop: %w", runErr)
	}
	d.notifyStopping()
	d.log.Info("stopping: no more reads; draining in-flight frames", zap.Duration("deadline", d.drainTimeout))
	stopReading()
	wg.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
	defer cancel()
	if err := d.disp.Drain(dctx); err != nil {
		d.log.Error("drain deadline passed; undelivered frames were logged above", zap.Error(err))
	}
	st := d.disp.Stats()
	d.log.Info("stopped", zap.Uint64("frames", st.Submitted), zap.Uint64("delivered", st.Delivered), zap.Uint64("failed", st.Failed))
	return runErr
}
