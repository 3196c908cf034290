package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// DefaultDrainTimeout is how long a stop waits for in-flight frames unless
// drain_timeout says otherwise.
const DefaultDrainTimeout = 10 * time.Second

// Daemon is the whole pipeline built from a configuration: read loops →
// event loop → dispatcher → sinks. New builds it without I/O; Run runs it
// until its context ends, reloading on SIGHUP, and then drains it.
type Daemon struct {
	log          *zap.Logger
	loop         *asyncloop.Loop
	disp         *dispatch.Dispatcher
	readers      []*serialcb.Reader
	ports        []configs.Port
	requirePorts bool
	drainTimeout time.Duration
	// ready is called once every port present at start is open (the demo
	// starts playing then); ports absent at start are not waited for.
	ready func()

	// reg builds the sinks of a reloaded config; load re-reads it on SIGHUP
	// (nil in quick mode, where SIGHUP is ignored).
	reg  *Registry
	load func() (*configs.Config, error)

	// build labels serialcbd_build_info.
	build BuildInfo

	// The fields above describe the pipeline build made; a reload replaces
	// it, so run, /metrics and /readyz use current().
	mu  sync.Mutex
	cur *generation // guarded by mu

	// reloads carries Reload's configurations to Run.
	reloads chan reloadRequest

	// procs sets GOMAXPROCS from the frame rate (see procs.go).
	procs *procGovernor
}

// Options are the optional parts of a Daemon.
type Options struct {
	// Registry builds the sinks from their specs (default NewRegistry()).
	Registry *Registry
	// Load re-reads the configuration on SIGHUP; nil ignores SIGHUP (quick
	// mode, where there is no file to re-read).
	Load func() (*configs.Config, error)
	// Ready is called once every port present at start is open; ports
	// absent at start are not waited for.
	Ready func()
	// Build says which serialcbd runs, for the serialcbd_build_info gauge.
	Build BuildInfo
}

// BuildInfo labels the serialcbd_build_info gauge. An empty Version is
// shown as "devel", an empty GoVersion as the running runtime's.
type BuildInfo struct {
	Version   string
	Commit    string
	GoVersion string
}

// New turns a checked configuration into a Daemon without any I/O, so that
// `validate` can use it too. Its errors are configuration errors
// (*configs.Error or *UsageError). A Daemon that is not Run must be Closed.
func New(cfg *configs.Config, log *zap.Logger, opts Options) (*Daemon, error) {
	reg := opts.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	d, err := build(cfg, reg, log)
	if err != nil {
		return nil, err
	}
	d.load, d.ready, d.build = opts.Load, opts.Ready, opts.Build
	return d, nil
}

// Close releases the sinks of a Daemon that was built but not Run (Run
// closes them itself).
func (d *Daemon) Close() error { return d.current().disp.Close() }

// Stats returns the current pipeline's delivery counters.
func (d *Daemon) Stats() dispatch.Stats { return d.current().disp.Stats() }

// Submit hands a frame to the current pipeline's dispatcher, bypassing
// the ports' validation and decoding; safe from any goroutine. RunWith's
// frame callbacks use it.
func (d *Daemon) Submit(f serialcb.Frame) *asyncloop.Future[dispatch.Receipt] {
	return d.current().disp.Submit(f)
}

// build is New with an explicit registry.
func build(cfg *configs.Config, reg *Registry, log *zap.Logger) (*Daemon, error) {
	d := &Daemon{log: log, ports: cfg.Ports, drainTimeout: cfg.DrainTimeout, requirePorts: cfg.RequirePorts, reg: reg,
		reloads: make(chan reloadRequest), procs: newProcGovernor()}
	var checks []*portCheck
	if d.drainTimeout == 0 {
		d.drainTimeout = DefaultDrainTimeout
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
		c, err := newPortCheck(cfg, i)
		if err != nil {
			return nil, err
		}
		checks = append(checks, c)
	}
	var targets []dispatch.Target
	inflight := 0
	for i := range cfg.Sinks {
		t, err := reg.target(cfg, i, log)
		if err != nil {
			closeTargets(targets)
			return nil, err
		}
		if cfg.StateDir != "" && cfg.Spool.On() {
			so, err := spoolOptions(cfg, t.Name)
			if err != nil {
				closeTargets(append(targets, t))
				return nil, cfg.Errorf("spool", "%v", err)
			}
			t.Options.OpenSpool = spoolOpener(so, DeadLetterPath(cfg.StateDir, t.Name), t.Name, log)
		}
		targets = append(targets, t)
		inflight += max(t.Options.MaxInflight, 1)
		if t.Options.OpenSpool != nil {
			inflight += 4 // a spool append, read, ack and dead-letter write
		}
	}
	lo := asyncloop.Options{
		QueueSize:    cfg.Loop.Queue,
		Workers:      cfg.Loop.Workers,
		BlockTimeout: cfg.Loop.BlockTimeout,
		OnUnobserved: func(err error) { log.Error("a failed future was never checked (bug)", zap.Error(err)) },
		OnCallbackPanic: func(pe *asyncloop.PanicError) {
			log.Error("a callback on the event loop panicked (bug); recovered, the loop goes on",
				zap.Any("panic", pe.Value), zap.ByteString("stack", pe.Stack))
		},
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
	dcfg := routes(cfg)
	dcfg.Targets = targets
	disp, err := dispatch.New(d.loop, dcfg, log)
	if err != nil {
		closeTargets(targets)
		return nil, Usagef("%v", err)
	}
	d.disp = disp
	tw, err := buildTwoWay(cfg, d.loop, d.readers, log)
	if err != nil {
		closeTargets(targets)
		return nil, err
	}
	d.cur = &generation{cfg: cfg, loop: d.loop, disp: disp, tw: tw}
	for i, r := range d.readers {
		pr := newPortRun(cfg.Ports[i], r, checks[i], disp, log)
		pr.procs = d.procs
		pr.pio.Store(tw.port(cfg.Ports[i].Name))
		d.cur.ports = append(d.cur.ports, pr)
	}
	return d, nil
}

// routes maps the configured routes, routes_default and unrouted_sink to
// the dispatcher's (all but Targets). A port with on_invalid: sink:NAME
// submits its invalid frames under the port name "<port>.invalid", routed
// to NAME only; routes meant for every port then list the real ports, so
// that invalid frames reach no other sink. Without routes (and without
// routes_default), valid frames go to every sink that is not an
// on_invalid target.
func routes(cfg *configs.Config) dispatch.Config {
	var out []dispatch.Route
	for _, r := range cfg.Routes {
		prefix, _ := r.PrefixBytes() // checked by cfg.Validate
		out = append(out, dispatch.Route{Ports: r.Ports, Prefix: prefix, Regex: r.Regex, Fields: r.Fields, Sinks: r.Sinks, Continue: r.Continue})
	}
	dc := dispatch.Config{DefaultSinks: cfg.RoutesDefault, UnroutedSink: cfg.UnroutedSink}
	var real []string
	var invalid []dispatch.Route
	for _, p := range cfg.Ports {
		real = append(real, p.Name)
		if s := p.InvalidSink(); s != "" {
			invalid = append(invalid, dispatch.Route{Ports: []string{p.InvalidPort()}, Sinks: []string{s}})
		}
	}
	if len(invalid) == 0 {
		dc.Routes = out
		return dc
	}
	if len(out) == 0 && len(dc.DefaultSinks) == 0 {
		// No routes meant every frame to every sink: now every valid frame
		// to every sink but the on_invalid ones, which only a route can
		// give valid frames to.
		rejects := map[string]bool{}
		for _, r := range invalid {
			rejects[r.Sinks[0]] = true
		}
		var sinks []string
		for _, s := range cfg.Sinks {
			if !rejects[s.Name] {
				sinks = append(sinks, s.Name)
			}
		}
		out = []dispatch.Route{{Sinks: sinks}}
	}
	for i := range out {
		if len(out[i].Ports) == 0 {
			out[i].Ports = real
		}
	}
	dc.Routes = append(out, invalid...)
	return dc
}

func closeTargets(ts []dispatch.Target) {
	for _, t := range ts {
		_ = t.Sink.Close()
	}
}

// Run starts everything, reads until ctx ends, then drains: stop reading,
// give in-flight frames until the drain deadline to reach their sinks, and
// stop.
//
// A port missing at start is waited for: run logs it once and the port's
// Reader opens it when it appears (capped backoff); the other ports and the
// sinks run meanwhile. With requirePorts it is a usage error (exit 2)
// instead. Any other failure of a first open (permission denied, say) is
// fatal. run calls ready, and tells systemd READY=1, once every port present
// at start is open; /readyz stays unready until the missing ones open too.
//
// SIGHUP reloads the configuration (see reloader.reload) while run goes on.
func (d *Daemon) Run(ctx context.Context) (err error) {
	st := d.current()
	st.loop.Start()
	var retiring sync.WaitGroup // pipelines replaced by a reload, draining
	defer func() {
		// Reached on every path: after a drain, or after a failed start.
		d.procs.restore()
		retiring.Wait()
		cur := d.current()
		cur.tw.stop() // on a failed start: nothing was sent yet
		shutdownLoop(cur.loop)
		cur.tw.closeDead()
		err = errors.Join(err, cur.disp.Close())
	}()
	if err := st.disp.Start(ctx); err != nil {
		return err
	}
	// Subscribed before the ports open, so that a SIGHUP never takes the
	// default action (exit) once the daemon runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg sync.WaitGroup
	failed := make(chan error, 1) // the first read loop that ends on its own
	waiting := 0
	for _, p := range st.ports {
		absent := make(chan struct{})
		d.startPort(readCtx, &wg, p, failed, func(ctx context.Context) error {
			err := p.r.RunOpen(ctx, p.onFrame)
			if errors.Is(err, serialcb.ErrPortNotFound) && !d.requirePorts {
				d.log.Warn(fmt.Sprintf("waiting for serial port %s: not present; will open it when it appears", p.name),
					zap.String("port", p.name), zap.String("path", p.cfg.Path))
				close(absent)
				err = p.r.Run(ctx, p.onFrame)
			}
			return err
		})
		select {
		case <-p.r.Opened():
		case <-absent:
			waiting++
		case <-p.done:
			// The first open failed; stop the ports already reading.
			stopReading()
			wg.Wait()
			if errors.Is(p.err, serialcb.ErrPortNotFound) {
				return Usagef("port %s: %v (required by --require-ports or require_ports: true)", p.name, p.err)
			}
			return fmt.Errorf("port %s: %w", p.name, p.err)
		case <-ctx.Done():
			stopReading()
			wg.Wait()
			return nil
		}
	}
	st.tw.start(ctx, nil)
	d.log.Info("serialcbd running", zap.Int("ports", len(st.ports)), zap.Int("waiting_for", waiting))
	stopWatchdog := d.notifyReady() // systemd: READY=1, then watchdog pings
	defer func() { stopWatchdog() }()
	if d.ready != nil {
		d.ready()
	}
	rl := &reloader{d: d, ctx: ctx, readCtx: readCtx, readers: &wg, retiring: &retiring, failed: failed}
	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case runErr = <-failed: // a read loop ended on its own: a failure
			runErr = fmt.Errorf("read loop: %w", runErr)
			break wait
		case <-hup:
			if rl.reload() {
				stopWatchdog() // it pinged through the previous loop
				stopWatchdog = d.startWatchdog()
			}
		case req := <-d.reloads:
			changed, err := rl.applyNotified(req.cfg)
			req.done <- err
			if changed {
				stopWatchdog()
				stopWatchdog = d.startWatchdog()
			}
		}
	}
	d.notifyStopping()
	d.log.Info("stopping: no more reads; draining in-flight frames", zap.Duration("deadline", d.drainTimeout))
	cur := d.current()
	// Polls and writes stop first; the outstanding requests get their
	// replies (read below) or time out.
	cur.tw.stop()
	twctx, twcancel := context.WithTimeout(context.Background(), d.drainTimeout)
	cur.tw.wait(twctx)
	twcancel()
	stopReading()
	wg.Wait()
	for _, p := range cur.ports {
		d.logInvalid(p.check.Load(), p.name)
	}
	dctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
	defer cancel()
	drainErr := cur.disp.Drain(dctx)
	ds := cur.disp.Stats()
	var spooled uint64
	for _, s := range ds.Sinks {
		if s.Spool != nil {
			spooled += s.Spool.Frames
		}
	}
	if drainErr != nil {
		d.log.Error("drain deadline passed; frames not in a spool were logged above as not delivered", zap.Error(drainErr))
	}
	if spooled > 0 {
		d.log.Info("frames left in the spools are delivered at the next start", zap.Uint64("frames", spooled))
	}
	d.log.Info("stopped", zap.Uint64("frames", ds.Submitted), zap.Uint64("delivered_or_spooled", ds.Delivered), zap.Uint64("failed", ds.Failed))
	return runErr
}
