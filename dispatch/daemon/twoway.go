package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/dispatch/portio/source"
	"github.com/serialcbd/serialcbd/serialcb"
)

// twoWay is a generation's polling and writes: a portio.Port for each port
// with poll or write settings, and the broker subscriptions that write to
// it. A reload builds a new one, which starts sending once the previous
// one's outstanding requests are answered or timed out.
type twoWay struct {
	log   *zap.Logger
	ports []*twoWayPort
}

type twoWayPort struct {
	name, path string
	p          *portio.Port
	r          *serialcb.Reader
	write      *configs.PortWrite // nil: no writes
	token      string
	deadPath   string // failed polls' dead letters; "" without a state directory
	dead       *deadletter.Store
	deadMu     sync.Mutex // one Append at a time
	sources    []*source.Source
	srcCfg     []source.Config
}

// buildTwoWay makes the Ports of cfg on loop, writing through readers (in
// cfg.Ports order). It does no I/O; its errors are configuration errors.
func buildTwoWay(cfg *configs.Config, loop *asyncloop.Loop, readers []*serialcb.Reader, log *zap.Logger) (*twoWay, error) {
	tw := &twoWay{log: log}
	for i, pc := range cfg.Ports {
		if len(pc.Poll) == 0 && pc.Write == nil {
			continue
		}
		key := fmt.Sprintf("ports[%d]", i)
		tp := &twoWayPort{name: pc.Name, path: pc.Path, r: readers[i], write: pc.Write}
		c := portio.Config{Port: pc.Name}
		for j, q := range pc.Poll {
			send, err := configs.ParseBytes(q.Send)
			if err != nil {
				return nil, cfg.Errorf(fmt.Sprintf("%s.poll[%d].send", key, j), "%v", err)
			}
			prefix, err := configs.ParseBytes(q.ReplyPrefix)
			if err != nil {
				return nil, cfg.Errorf(fmt.Sprintf("%s.poll[%d].reply_prefix", key, j), "%v", err)
			}
			c.Polls = append(c.Polls, portio.Poll{Name: q.Name, Every: q.Every, Send: send, ReplyTimeout: q.ReplyTimeout,
				Retries: q.Retries, ReplyPrefix: prefix})
		}
		if w := pc.Write; w != nil {
			prefix, err := configs.ParseBytes(w.ReplyPrefix)
			if err != nil {
				return nil, cfg.Errorf(key+".write.reply_prefix", "%v", err)
			}
			c.Writable, c.MaxBytes, c.PerSecond, c.Queue = true, w.MaxBytes, w.PerSecond, w.Queue
			c.ReplyTimeout, c.ReplyPrefix = w.ReplyTimeout, prefix
			if w.TokenEnv != "" {
				tok, ok := os.LookupEnv(w.TokenEnv)
				if !ok || tok == "" {
					return nil, cfg.Errorf(key+".write.token_env", "environment variable %s is not set (export the token, or remove token_env)", w.TokenEnv)
				}
				tp.token = tok
			}
			for _, u := range w.From {
				tp.srcCfg = append(tp.srcCfg, source.Config{URL: u, Port: pc.Name, ExpectReply: w.ExpectReply})
			}
		}
		if cfg.StateDir != "" && len(pc.Poll) > 0 {
			tp.deadPath = DeadLetterPath(cfg.StateDir, "poll."+pc.Name)
		}
		c.OnPoll = func(o portio.Outcome, err error) { tw.pollDone(loop, tp, o, err) }
		p, err := portio.New(loop, readers[i], c, log)
		if err != nil {
			return nil, cfg.Errorf(key, "%v", err)
		}
		tp.p = p
		tw.ports = append(tw.ports, tp)
	}
	return tw, nil
}

// port returns the Port of the port named name, or nil.
func (tw *twoWay) port(name string) *portio.Port {
	if tw == nil {
		return nil
	}
	for _, tp := range tw.ports {
		if tp.name == name {
			return tp.p
		}
	}
	return nil
}

// pollDone runs on the loop for every poll's outcome: a failed poll is
// counted by its Port and stored as a dead letter (its request, the error
// and the attempts), written by a worker since it is disk I/O.
func (tw *twoWay) pollDone(loop *asyncloop.Loop, tp *twoWayPort, o portio.Outcome, err error) {
	// A poll that failed for want of a port (down, stopping) is counted
	// only: the Reader logs the port's outage.
	if err == nil || tp.deadPath == "" || !errors.Is(err, portio.ErrReplyTimeout) && !errors.Is(err, portio.ErrInvalidReply) {
		return
	}
	var send []byte
	for _, q := range tp.p.Polls() {
		if q.Name == o.Poll {
			send = q.Send
		}
	}
	letter := dispatch.DeadLetter{
		Sink:     "poll:" + o.Poll,
		Frame:    &serialcb.Frame{ID: o.RequestID, Port: tp.name, ReceivedAt: time.Now().UTC(), Payload: send},
		Err:      err.Error(),
		Attempts: o.Attempts,
		FailedAt: time.Now().UTC(),
	}
	f := asyncloop.Submit(loop, func(context.Context) (struct{}, error) {
		tp.deadMu.Lock()
		defer tp.deadMu.Unlock()
		if tp.dead == nil {
			if err := os.MkdirAll(parentDir(tp.deadPath), 0o750); err != nil {
				return struct{}{}, err
			}
			d, err := deadletter.Open(tp.deadPath)
			if err != nil {
				return struct{}{}, err
			}
			tp.dead = d
		}
		return struct{}{}, tp.dead.Append([]dispatch.DeadLetter{letter})
	})
	f.AddDoneCallback(func(f *asyncloop.Future[struct{}]) {
		if err := f.Err(); err != nil {
			tw.log.Error("cannot store a failed poll as a dead letter", zap.String("port", tp.name),
				zap.String("poll", o.Poll), zap.String("path", tp.deadPath), zap.Error(err))
		}
	})
}

func parentDir(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if os.IsPathSeparator(p[i]) {
			return p[:i]
		}
	}
	return "."
}

// start starts the schedules (each after the previous generation's Port
// of the same name is idle) and the broker subscriptions. A broker that is
// down is retried in the background; a bad source URL was rejected by
// validation.
func (tw *twoWay) start(ctx context.Context, prev *twoWay) {
	if tw == nil {
		return
	}
	for _, tp := range tw.ports {
		var after <-chan struct{}
		if pp := prev.port(tp.name); pp != nil {
			after = pp.Idle()
		}
		tp.p.Start(after)
		for _, sc := range tp.srcCfg {
			s, err := source.Start(ctx, sc, tp.p, tw.log)
			if err != nil {
				tw.log.Error("write source not started", zap.String("port", tp.name), zap.Error(err))
				continue
			}
			tp.sources = append(tp.sources, s)
		}
	}
	if len(tw.ports) > 0 {
		tw.log.Info("polling and writes started", zap.Int("ports", len(tw.ports)))
	}
}

// stop ends the subscriptions and the schedules; requests queued fail
// with portio.ErrStopped, the outstanding ones finish. wait waits for them.
func (tw *twoWay) stop() {
	if tw == nil {
		return
	}
	for _, tp := range tw.ports {
		for _, s := range tp.sources {
			s.Close()
		}
		tp.sources = nil
		tp.p.Stop()
	}
}

// wait waits, until ctx ends, for the outstanding requests stop let
// finish, then closes the dead-letter files. It must run before the loop
// shuts down.
func (tw *twoWay) wait(ctx context.Context) {
	if tw == nil {
		return
	}
	for _, tp := range tw.ports {
		select {
		case <-tp.p.Idle():
		case <-ctx.Done():
		}
		tp.p.Wait()
	}
}

// closeDead closes the dead-letter files; call it after the loop stopped.
func (tw *twoWay) closeDead() {
	if tw == nil {
		return
	}
	for _, tp := range tw.ports {
		tp.deadMu.Lock()
		if tp.dead != nil {
			if err := tp.dead.Close(); err != nil {
				tw.log.Warn("closing the failed-poll dead letters", zap.String("port", tp.name), zap.Error(err))
			}
			tp.dead = nil
		}
		tp.deadMu.Unlock()
	}
}

// lookup finds a port for the HTTP write endpoint by name or device path.
// A port read by the daemon without writes is reported with a nil Port, so
// the endpoint says the daemon owns it.
func (tw *twoWay) lookup(cfg *configs.Config, name string) (portio.HTTPPort, bool) {
	if tw != nil {
		for _, tp := range tw.ports {
			if tp.name == name || tp.path == name {
				hp := portio.HTTPPort{Port: tp.p, Token: tp.token}
				if tp.write != nil {
					hp.HTTP, hp.ExpectReply = tp.write.HTTP, tp.write.ExpectReply
				}
				return hp, true
			}
		}
	}
	for _, p := range cfg.Ports {
		if p.Name == name || p.Path == name {
			return portio.HTTPPort{}, true
		}
	}
	return portio.HTTPPort{}, false
}

// twoWayCollector exports the polling and write counters.
type twoWayCollector struct {
	current func() *twoWay

	pollSent, pollReplies, pollTimeouts, pollInvalid, pollFailed, pollSkipped *prometheus.Desc
	writes, writesRejected, writeBytes, unsolicited, midFrame                 *prometheus.Desc
}

var _ prometheus.Collector = (*twoWayCollector)(nil)

func newTwoWayCollector(current func() *twoWay) *twoWayCollector {
	poll := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("serialcbd_poll_"+name, help, []string{"port", "poll"}, nil)
	}
	port := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("serialcbd_port_"+name, help, append([]string{"port"}, labels...), nil)
	}
	return &twoWayCollector{
		current:        current,
		pollSent:       poll("requests_total", "Poll requests written to the port (retries included)."),
		pollReplies:    poll("replies_total", "Valid replies to poll requests."),
		pollTimeouts:   poll("timeouts_total", "Poll attempts without a reply within reply_timeout."),
		pollInvalid:    poll("invalid_replies_total", "Poll attempts whose reply failed validation."),
		pollFailed:     poll("failed_total", "Polls that failed: no valid reply after the retries (stored as dead letters), or the port was down."),
		pollSkipped:    poll("skipped_total", "Schedule ticks skipped because the previous request was still out."),
		writes:         port("writes_total", "Writes to the port from brokers and HTTP, by result.", "result"),
		writesRejected: port("writes_rejected_total", "Writes refused at once, by reason.", "reason"),
		writeBytes:     port("write_bytes_total", "Bytes written to the port (polls and writes)."),
		unsolicited:    port("unsolicited_frames_total", "Frames that arrived while a reply was awaited and were not it."),
		midFrame:       port("writes_mid_frame_total", "Writes that went out while a frame was still arriving (the device never paused)."),
	}
}

// Describe implements prometheus.Collector.
func (c *twoWayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pollSent, c.pollReplies, c.pollTimeouts, c.pollInvalid, c.pollFailed, c.pollSkipped,
		c.writes, c.writesRejected, c.writeBytes, c.unsolicited, c.midFrame} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *twoWayCollector) Collect(ch chan<- prometheus.Metric) {
	tw := c.current()
	if tw == nil {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, tp := range tw.ports {
		s := tp.p.Stats()
		for _, q := range s.Polls {
			counter(c.pollSent, q.Sent, tp.name, q.Name)
			counter(c.pollReplies, q.Replies, tp.name, q.Name)
			counter(c.pollTimeouts, q.Timeouts, tp.name, q.Name)
			counter(c.pollInvalid, q.Invalid, tp.name, q.Name)
			counter(c.pollFailed, q.Failed, tp.name, q.Name)
			counter(c.pollSkipped, q.Skipped, tp.name, q.Name)
		}
		if tp.write != nil {
			counter(c.writes, s.WritesOK, tp.name, "ok")
			counter(c.writes, s.WritesFailed, tp.name, "failed")
			counter(c.writesRejected, s.RejectedTooLarge, tp.name, "too_large")
			counter(c.writesRejected, s.RejectedRate, tp.name, "rate_limited")
			counter(c.writesRejected, s.RejectedQueue, tp.name, "queue_full")
			counter(c.writesRejected, s.RejectedPortDown, tp.name, "port_down")
		}
		ws := tp.r.WriteStats()
		counter(c.writeBytes, ws.WriteBytes, tp.name)
		counter(c.midFrame, ws.WritesMidFrame, tp.name)
		counter(c.unsolicited, s.Unsolicited, tp.name)
	}
}

// ReaderStats returns the read counters of the current pipeline's port
// called name; false when there is none.
func (d *Daemon) ReaderStats(name string) (serialcb.ReaderStats, bool) {
	for _, p := range d.current().ports {
		if p.name == name {
			return p.r.Stats(), true
		}
	}
	return serialcb.ReaderStats{}, false
}

// PortIOStats returns the polling and write counters of the current
// pipeline's port called name; false when it has neither polls nor writes.
func (d *Daemon) PortIOStats(name string) (portio.Stats, bool) {
	if p := d.current().tw.port(name); p != nil {
		return p.Stats(), true
	}
	return portio.Stats{}, false
}
