package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb"
)

// generation is what the daemon runs now: the ports being read, and the event
// loop and dispatcher their frames go to. A reload replaces it as a whole;
// the daemon's current one is read under daemon.mu.
type generation struct {
	cfg   *configs.Config
	loop  *asyncloop.Loop
	disp  *dispatch.Dispatcher
	ports []*portRun
	tw    *twoWay // polling and writes; on loop
}

// portRun is one port: its Reader and where its frames go. A reload that
// leaves the port's serial settings alone keeps the portRun (the Reader
// keeps reading, the device is never closed) and only retargets it.
type portRun struct {
	name string // immutable
	r    *serialcb.Reader
	log  *zap.Logger

	// mu is held by the frame callback while it checks and submits a frame;
	// retarget takes it, so once retarget returns no frame of this port can
	// still reach the previous dispatcher.
	mu    sync.Mutex
	disp  *dispatch.Dispatcher      // guarded by mu
	check atomic.Pointer[portCheck] // written under mu; metrics read it
	cfg   configs.Port              // owned by the goroutine running daemon.run
	// lastFrame is the UnixNano time of the last frame read; 0 before one.
	lastFrame atomic.Int64
	procs     *procGovernor // the daemon's; set before the port runs
	// pio is the port's polling and writes, which claims replies; prevPio
	// is the one a reload replaced, offered frames first until it is idle
	// (its outstanding request's reply is its own).
	pio, prevPio atomic.Pointer[portio.Port]

	stop context.CancelFunc // ends this port's read loop; set by startPort
	done chan struct{}      // closed when the read loop returned; err is then set
	err  error
}

func newPortRun(p configs.Port, r *serialcb.Reader, c *portCheck, disp *dispatch.Dispatcher, log *zap.Logger) *portRun {
	pr := &portRun{name: p.Name, r: r, log: log.With(zap.String("port", p.Name)), disp: disp, cfg: p}
	pr.check.Store(c)
	return pr
}

// onFrame is the Reader's callback: validate, then hand the frame to the
// current dispatcher. The lock is uncontended except during a reload.
// Send, not Submit: nothing here looks at the frame's future (the
// dispatcher logs and counts every failure), and a frame spooled directly
// then costs no allocation.
func (p *portRun) onFrame(f serialcb.Frame) {
	p.lastFrame.Store(f.ReceivedAt.UnixNano())
	p.procs.observe(f.ReceivedAt)
	p.mu.Lock()
	defer p.mu.Unlock()
	ok, invalid := p.check.Load().check(p.log, &f)
	p.offerReply(&f, invalid)
	if ok {
		p.disp.Send(f)
	}
}

// offerReply hands f to the port's polling, which takes it when it is the
// reply it awaits. Without polling or writes it costs two atomic loads.
func (p *portRun) offerReply(f *serialcb.Frame, invalid error) {
	if prev := p.prevPio.Load(); prev != nil {
		select {
		case <-prev.Idle():
			p.prevPio.CompareAndSwap(prev, nil)
		default:
			if prev.OnFrame(f, invalid) {
				return
			}
		}
	}
	if cur := p.pio.Load(); cur != nil {
		cur.OnFrame(f, invalid)
	}
}

// setPio makes pio the port's polling and writes; the one it replaces
// keeps getting frames until it is idle.
func (p *portRun) setPio(pio *portio.Port) {
	if old := p.pio.Swap(pio); old != nil && old != pio {
		p.prevPio.Store(old)
	}
}

// retarget switches the port's frames to disp with check c. It waits for a
// frame being submitted to the previous dispatcher (which never waits on
// the network: only for room in a queue that its loop empties, or for a
// store into its spool).
func (p *portRun) retarget(disp *dispatch.Dispatcher, c *portCheck) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.disp = disp
	p.check.Store(c)
}

// current returns the pipeline running now.
func (d *Daemon) current() *generation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

func (d *Daemon) setCurrent(p *generation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cur = p
}

// startPort runs p's read loop on a goroutine of wg under a context of its
// own. A read loop that ends while its context is live is a failure, sent
// to failed if nothing is there yet.
func (d *Daemon) startPort(ctx context.Context, wg *sync.WaitGroup, p *portRun, failed chan<- error,
	read func(ctx context.Context) error) {
	pctx, cancel := context.WithCancel(ctx)
	p.stop, p.done = cancel, make(chan struct{})
	wg.Go(func() {
		err := read(pctx)
		p.err = err
		close(p.done)
		if pctx.Err() == nil {
			select {
			case failed <- fmt.Errorf("port %s: %w", p.name, err):
			default:
			}
		}
	})
}

// reloader applies a SIGHUP to a running daemon. It lives on the goroutine
// running daemon.run, which owns the read loops.
type reloader struct {
	d        *Daemon
	ctx      context.Context // the daemon's: sink starts
	readCtx  context.Context // parent of every read loop
	readers  *sync.WaitGroup // the read loops'
	retiring *sync.WaitGroup // old pipelines draining
	failed   chan<- error
}

// reload re-reads the configuration and applies it; it reports whether
// the event loop changed. An invalid configuration is logged and the
// running one carries on untouched. Nothing here runs on the event loop:
// loading, opening sinks and waiting for read loops are I/O.
func (rl *reloader) reload() (loopChanged bool) {
	d := rl.d
	if d.load == nil {
		d.log.Warn("SIGHUP ignored: no config file to re-read (quick mode); restart to change the flags")
		return false
	}
	d.sdNotify(sd.SdNotifyReloading)
	defer d.sdNotify(sd.SdNotifyReady)
	cfg, err := d.load()
	if err == nil {
		loopChanged, err = rl.apply(cfg)
	}
	if err != nil {
		d.log.Error("config reload rejected; the running configuration carries on", zap.Error(err))
	}
	return loopChanged
}

// reloadRequest is a Reload waiting for Run.
type reloadRequest struct {
	cfg  *configs.Config
	done chan error // buffered: Run never waits on it
}

// Reload applies cfg, a checked configuration, to the running daemon, as
// SIGHUP does with Options.Load: ports whose serial settings are unchanged
// keep reading, others stop or start; changed sinks or routes get a new
// dispatcher, which takes over the spools once the old one handed over.
// An invalid cfg is returned and the running configuration carries on.
// Settings that only a restart changes are logged; cfg keeps the running
// state_dir and spool block, which also only a restart changes. Reload waits for Run to
// take cfg; it returns ctx's error if Run does not (or is not running).
func (d *Daemon) Reload(ctx context.Context, cfg *configs.Config) error {
	req := reloadRequest{cfg: cfg, done: make(chan error, 1)}
	select {
	case d.reloads <- req:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return <-req.done
}

// applyNotified is apply, with systemd told of the reload.
func (rl *reloader) applyNotified(cfg *configs.Config) (loopChanged bool, err error) {
	rl.d.sdNotify(sd.SdNotifyReloading)
	defer rl.d.sdNotify(sd.SdNotifyReady)
	return rl.apply(cfg)
}

// apply applies cfg; it reports whether the event loop changed. On an
// error, the running configuration is untouched.
func (rl *reloader) apply(cfg *configs.Config) (loopChanged bool, err error) {
	d := rl.d
	old := d.current()
	if keys := restartOnly(old.cfg, cfg); len(keys) > 0 {
		d.log.Warn("config reload: these settings take effect at the next restart", zap.Strings("keys", keys))
	}
	// The spools stay where they are until a restart.
	cfg.StateDir, cfg.Spool = old.cfg.StateDir, old.cfg.Spool
	nd, err := build(cfg, d.reg, d.log)
	if err != nil {
		return false, err
	}
	next := &generation{cfg: cfg, loop: old.loop, disp: old.disp}
	newDelivery := !sameDelivery(old.cfg, cfg)
	if newDelivery {
		nd.loop.Start()
		// The spools are opened once the old dispatcher released them.
		if err := nd.disp.StartSinks(rl.ctx); err != nil {
			shutdownLoop(nd.loop)
			return false, errors.Join(err, nd.disp.Close())
		}
		next.loop, next.disp = nd.loop, nd.disp
	} else if err := nd.disp.Close(); err != nil { // never started: nothing to drain
		d.log.Warn("closing unused sinks of the reloaded config", zap.Error(err))
	}

	byName := map[string]*portRun{}
	for _, p := range old.ports {
		byName[p.name] = p
	}
	newPorts := nd.current().ports
	var kept []*portRun
	var keptChecks []*portCheck
	var start []*portRun
	for i, pc := range cfg.Ports {
		if p := byName[pc.Name]; p != nil && sameSerial(p.cfg, pc) {
			delete(byName, pc.Name)
			c := p.check.Load()
			if p.cfg.Validate != pc.Validate || p.cfg.OnInvalid != pc.OnInvalid || p.cfg.Decode != pc.Decode {
				c = newPorts[i].check.Load()
			}
			p.cfg = pc
			kept, keptChecks = append(kept, p), append(keptChecks, c)
			next.ports = append(next.ports, p)
			continue
		}
		np := newPorts[i]
		np.disp = next.disp // not running yet: no lock needed
		np.procs = d.procs  // one governor per process
		start = append(start, np)
		next.ports = append(next.ports, np)
	}
	// Removed and changed ports stop first: a changed one must free its
	// device before its successor opens it. Their frames went to the old
	// dispatcher, which is drained below.
	var stopped []*portRun
	for _, p := range old.ports {
		if byName[p.name] == p {
			p.stop()
			<-p.done
			d.logInvalid(p.check.Load(), p.name)
			stopped = append(stopped, p)
		}
	}
	for i, p := range kept {
		prev := p.check.Load()
		p.retarget(next.disp, keptChecks[i])
		if prev != keptChecks[i] {
			d.logInvalid(prev, p.name) // no longer used by the read loop
		}
	}
	// Polling and writes of the new configuration, on the loop the ports
	// now submit to; each port's new schedule waits until the old one's
	// outstanding request is answered or timed out.
	readers := make([]*serialcb.Reader, len(next.ports))
	for i, p := range next.ports {
		readers[i] = p.r
	}
	ntw, err := buildTwoWay(cfg, next.loop, readers, d.log)
	if err != nil { // checked by build above: not expected
		d.log.Error("config reload: polling and writes not rebuilt; the previous ones carry on", zap.Error(err))
		next.tw = old.tw
	} else {
		old.tw.stop()
		next.tw = ntw
		for _, p := range kept {
			p.setPio(ntw.port(p.name))
		}
		for _, p := range start { // not reading yet
			p.pio.Store(ntw.port(p.name))
		}
	}
	d.setCurrent(next)
	if next.tw != old.tw {
		next.tw.start(rl.ctx, old.tw)
		if !newDelivery { // else retire waits for it before stopping its loop
			rl.retiring.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
				defer cancel()
				old.tw.wait(ctx)
				old.tw.closeDead()
			})
		}
	}
	for _, p := range start {
		d.startPort(rl.readCtx, rl.readers, p, rl.failed, func(ctx context.Context) error { return p.r.Run(ctx, p.onFrame) })
	}
	if newDelivery && spooling(cfg) {
		// A sink's spool has one owner at a time: the old dispatcher hands
		// over (every frame it took is on disk), then the new one opens the
		// spools. Meanwhile the new lanes hold frames in memory, within
		// their queues, then pause the read loops.
		d.retire(old, true)
		if err := nd.disp.StartSpools(); err != nil {
			d.log.Error("reload: opening the spools failed; frames wait in memory until the queues fill (restart serialcbd)", zap.Error(err))
		}
	} else if newDelivery {
		// No port submits to the old dispatcher any more: its Drain, handed
		// to its loop with CallSoon, comes after every frame it was given.
		rl.retiring.Go(func() { d.retire(old, false) })
	}
	d.log.Info("config reloaded", zap.String("file", cfg.File()), zap.Int("ports_kept", len(kept)),
		zap.Int("ports_started", len(start)), zap.Int("ports_stopped", len(stopped)),
		zap.Int("sinks", len(cfg.Sinks)), zap.Bool("sinks_restarted", newDelivery))
	return newDelivery, nil
}

// retire drains an old pipeline's dispatcher, stops its loop and closes its
// sinks: frames it was handed are delivered by the sinks they were routed to.
func (d *Daemon) retire(old *generation, handover bool) {
	dctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
	defer cancel()
	drain := old.disp.Drain
	if handover {
		drain = old.disp.Handover
	}
	if err := drain(dctx); err != nil {
		d.log.Error("reload: drain deadline of the previous sinks passed; undelivered frames were logged above", zap.Error(err))
	}
	if handover {
		for _, s := range old.disp.Stats().Sinks {
			if s.Spool != nil && s.Spool.Frames > 0 && !hasSink(d.current().cfg, s.Name) {
				d.log.Warn("reload: a removed sink left frames in its spool; add the sink back to deliver them, or purge them with `serialcbd spool purge`",
					zap.String("sink", s.Name), zap.Uint64("frames", s.Spool.Frames))
			}
		}
	}
	if old.tw != d.current().tw {
		old.tw.wait(dctx) // its outstanding requests end on old.loop
	}
	shutdownLoop(old.loop)
	if old.tw != d.current().tw {
		old.tw.closeDead()
	}
	if err := old.disp.Close(); err != nil {
		d.log.Error("reload: closing the previous sinks", zap.Error(err))
	}
	st := old.disp.Stats()
	d.log.Info("previous sinks drained", zap.Uint64("frames", st.Submitted), zap.Uint64("delivered", st.Delivered), zap.Uint64("failed", st.Failed))
}

// shutdownLoop stops a loop whose frames are drained.
func shutdownLoop(l *asyncloop.Loop) {
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = l.Shutdown(sctx)
}

// restartOnly lists the settings that differ between a and b but that a
// reload does not apply: the logger, the metrics listener and the stop
// settings are set up once.
func restartOnly(a, b *configs.Config) []string {
	var keys []string
	for _, k := range []struct {
		key  string
		same bool
	}{
		{"log", a.Log == b.Log},
		{"metrics_addr", reflect.DeepEqual(a.MetricsAddr, b.MetricsAddr)},
		{"drain_timeout", a.DrainTimeout == b.DrainTimeout},
		{"require_ports", a.RequirePorts == b.RequirePorts},
		{"state_dir", a.StateDir == b.StateDir},
		{"spool", reflect.DeepEqual(a.Spool, b.Spool)},
	} {
		if !k.same {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// sameSerial reports whether a port can keep its Reader: every setting the
// Reader uses is unchanged (validation is the callback's and switches live).
func sameSerial(a, b configs.Port) bool {
	a.Validate, a.OnInvalid, a.Poll, a.Write = "", "", nil, nil
	b.Validate, b.OnInvalid, b.Poll, b.Write = "", "", nil, nil
	return reflect.DeepEqual(a, b)
}

// sameDelivery reports whether the old dispatcher, loop and sinks can serve
// b: same sinks, same routes (invalid-frame routes included), same loop.
// Sinks are compared as YAML, so that a block moved to other lines of the
// file (its yaml.Node positions) is not a change.
func sameDelivery(a, b *configs.Config) bool {
	ya, erra := yaml.Marshal(a.Sinks)
	yb, errb := yaml.Marshal(b.Sinks)
	return erra == nil && errb == nil && bytes.Equal(ya, yb) &&
		a.Loop == b.Loop && reflect.DeepEqual(routes(a), routes(b))
}

// spooling reports whether cfg's sinks have spools.
func spooling(cfg *configs.Config) bool { return cfg.StateDir != "" && cfg.Spool.On() }

func hasSink(cfg *configs.Config, name string) bool {
	for _, s := range cfg.Sinks {
		if s.Name == name {
			return true
		}
	}
	return false
}
