package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/portio"
)

// DefaultMetricsAddr is where `run` serves /metrics, /healthz and /readyz
// unless --metrics-addr says otherwise; `health` asks there by default.
const DefaultMetricsAddr = "127.0.0.1:9464"

// Timeouts of the metrics server: a scrape reads counters only, so every
// request is short; /readyz waits at most readyLoopWait for the event loop.
const (
	metricsShutdownTimeout = 5 * time.Second
	readyLoopWait          = time.Second
)

// MetricsAddr picks the metrics address: the flag when it was given
// (flagSet), else the config's metrics_addr, else flag (its default).
// setting names where the address comes from, for errors: "--metrics-addr"
// or "metrics_addr (FILE:LINE)".
func MetricsAddr(cfg *configs.Config, flag string, flagSet bool) (addr, setting string) {
	if flagSet || cfg == nil || cfg.MetricsAddr == nil {
		return flag, "--metrics-addr"
	}
	setting = "metrics_addr"
	if f := cfg.File(); f != "" {
		setting = fmt.Sprintf("metrics_addr (%s:%d)", f, cfg.Pos("metrics_addr"))
	}
	return *cfg.MetricsAddr, setting
}

// ListenMetrics is ListenMetricsAt for an address given by --metrics-addr.
func ListenMetrics(addr string) (net.Listener, error) {
	return ListenMetricsAt(addr, "--metrics-addr")
}

// ListenMetricsAt binds the metrics address before anything else starts,
// before a serial port is opened. A typo, an address in use (another
// instance: restarting would not help) or one this host lacks is a usage
// error (exit 2) naming setting, the place to change it (see MetricsAddr);
// other failures are runtime errors (exit 1). An empty addr disables the
// server: it returns a nil listener and no error.
func ListenMetricsAt(addr, setting string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	if err := CheckHostPort(addr); err != nil {
		return nil, Usagef("%s %q: %v", setting, addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, Usagef("metrics server: %v: another process listens on %s (another serialcbd instance?): give each instance its own address with %s, or \"\" to turn the server off",
			err, addr, setting)
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EACCES):
		return nil, Usagef("metrics server: %v: change %s", err, setting)
	case err != nil:
		return nil, fmt.Errorf("metrics server: %w (change %s)", err, setting)
	}
	return ln, nil
}

// CheckHostPort accepts HOST:PORT with a numeric port, HOST possibly empty
// (every interface), an IP address (IPv6 in brackets) or a host name.
func CheckHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("expected HOST:PORT, e.g. 127.0.0.1:9464 or :9464")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return configs.CheckListenAddr(addr)
}

// MetricsServer serves /metrics, /healthz and /readyz for one daemon. It
// owns the goroutine running Serve; Close stops it and waits for it.
type MetricsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan error // Serve's result, buffered: the goroutine never waits on it
}

// ServeMetrics starts serving on ln (from ListenMetrics). A nil ln gives a
// nil server, whose Close does nothing.
func ServeMetrics(ln net.Listener, d *Daemon, log *zap.Logger) *MetricsServer {
	if ln == nil {
		return nil
	}
	reg := newMetricsRegistry(d)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log),
		Registry:            reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: 4,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyLoopWait)
		defer cancel()
		rd := d.readiness(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !rd.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rd)
	})
	// Writes to ports: off unless a port has write: {http: true}.
	mux.Handle("/ports/", portio.HTTPHandler(func(name string) (portio.HTTPPort, bool) {
		cur := d.current()
		return cur.tw.lookup(cur.cfg, name)
	}))
	m := &MetricsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          zap.NewStdLog(log),
		},
		addr: ln.Addr(),
		done: make(chan error, 1),
	}
	go func() { m.done <- m.srv.Serve(ln) }()
	log.Info("metrics server listening", zap.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return m
}

// Close shuts the server down: no new connections, requests in progress
// get until the timeout, then the rest are closed. It waits for Serve to
// return. Nil-safe.
func (m *MetricsServer) Close() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, m.srv.Close())
	}
	if serr := <-m.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// readiness is the body of /readyz.
type readiness struct {
	Ready bool                     `json:"ready"`
	Loop  loopReadiness            `json:"loop"`
	Ports map[string]portReadiness `json:"ports"`
	// A sink that is down (failing or hanging) makes the daemon unready:
	// until the on-disk spool holds its frames, they wait in memory and a
	// long outage loses them.
	Sinks map[string]sinkReadiness `json:"sinks"`
}

type loopReadiness struct {
	Running bool `json:"running"`
	Queued  int  `json:"queued"`
}

type portReadiness struct {
	Up bool `json:"up"`
}

type sinkReadiness struct {
	Up bool `json:"up"`
	// Spooling: the sink is down but its frames are safe in its spool, so
	// the daemon stays ready. SpoolFrames counts them.
	Spooling    bool   `json:"spooling,omitempty"`
	SpoolFrames uint64 `json:"spool_frames,omitempty"`
	Pending     int64  `json:"pending"`
	Inflight    int64  `json:"inflight"`
	Delivered   uint64 `json:"delivered"`
	Failed      uint64 `json:"failed"`
}

// readiness is ready when every port is open and the event loop runs a
// function handed to it before ctx ends (a stuck or stopped loop is not).
func (d *Daemon) readiness(ctx context.Context) readiness {
	cur := d.current()
	rd := readiness{
		Ready: true,
		Ports: make(map[string]portReadiness, len(cur.ports)),
		Sinks: map[string]sinkReadiness{},
	}
	for _, p := range cur.ports {
		up := p.r.Stats().Up
		rd.Ports[p.name] = portReadiness{Up: up}
		rd.Ready = rd.Ready && up
	}
	for _, s := range cur.disp.Stats().Sinks {
		sr := sinkReadiness{Up: !s.Down, Pending: s.Pending, Inflight: s.Inflight, Delivered: s.Delivered, Failed: s.Failed}
		if s.Spool != nil {
			sr.SpoolFrames = s.Spool.Frames
			sr.Spooling = s.Down && !s.SpoolFailing
		}
		rd.Sinks[s.Name] = sr
		rd.Ready = rd.Ready && (sr.Up || sr.Spooling)
	}
	rd.Loop = loopReadiness{Running: loopAnswers(ctx, cur.loop), Queued: cur.loop.Stats().Queued}
	rd.Ready = rd.Ready && rd.Loop.Running
	return rd
}

// loopAnswers reports whether the event loop runs a function handed to it
// before ctx ends. Before Start and after Shutdown CallSoon fails at once.
func loopAnswers(ctx context.Context, loop *asyncloop.Loop) bool {
	pong := make(chan struct{})
	if err := loop.CallSoon(func() { close(pong) }); err != nil {
		return false
	}
	select {
	case <-pong:
		return true
	case <-ctx.Done():
		return false
	}
}

// newMetricsRegistry returns a registry (never the global one) with the
// daemon's collector and the Go runtime and process collectors.
func newMetricsRegistry(d *Daemon) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStatsCollector(d),
		newBuildInfoGauge(d.build),
		newTwoWayCollector(func() *twoWay { return d.current().tw }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// newBuildInfoGauge is serialcbd_build_info{version,commit,goversion} 1,
// the usual way to put a build's version on a dashboard or an alert.
func newBuildInfoGauge(b BuildInfo) prometheus.Gauge {
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "serialcbd_build_info",
		Help:        "Always 1; its labels say which serialcbd this is.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}

// statsCollector reads the daemon's Stats() at scrape time: nothing is
// counted twice and the hot path does no metrics work at all.
type statsCollector struct {
	d *Daemon

	portBytes, portFrames, portOversize, portOversizeBytes, portUp, portReconnects *prometheus.Desc
	portInvalid, portLastFrameAge, portFlushed, portSilenceReopens, portUndecoded  *prometheus.Desc
	portNoise                                                                      *prometheus.Desc
	sinkDelivered, sinkFailed, sinkRetried, sinkPending, sinkInflight, sinkUp      *prometheus.Desc
	sinkSpooled, sinkDead, sinkSpoolFrames, sinkSpoolBytes, sinkSpoolDropped       *prometheus.Desc
	sinkSpoolCorrupt, sinkLatency                                                  *prometheus.Desc
	submitted, delivered, failed, throttled, unrouted                              *prometheus.Desc
	loopQueued, loopRunning, loopUnobserved, loopRejected, loopCallbackPanics      *prometheus.Desc
}

var _ prometheus.Collector = (*statsCollector)(nil)

func newStatsCollector(d *Daemon) *statsCollector {
	port := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("serialcbd_port_"+name, help, []string{"port"}, nil)
	}
	sink := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("serialcbd_sink_"+name, help, []string{"sink"}, nil)
	}
	plain := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("serialcbd_"+name, help, nil, nil)
	}
	return &statsCollector{
		d:                  d,
		portBytes:          port("bytes_total", "Bytes read from the serial port."),
		portFrames:         port("frames_total", "Frames cut from the port's stream and handed to the dispatcher."),
		portOversize:       port("oversize_frames_total", "Frames longer than max_frame, dropped."),
		portOversizeBytes:  port("oversize_bytes_total", "Bytes of the oversize frames dropped."),
		portUp:             port("up", "1 while the port is open, 0 while it is missing or being reopened."),
		portReconnects:     port("reconnects_total", "Successful reopens of the port after the first open."),
		portInvalid:        port("invalid_frames_total", "Frames that failed the port's validate check (dropped, or sent to the on_invalid sink)."),
		portLastFrameAge:   port("last_frame_age_seconds", "Seconds since the port's last frame (absent until the first frame)."),
		portUndecoded:      port("undecoded_frames_total", "Valid frames the port's decoder could not read; delivered without fields."),
		portFlushed:        port("flushed_frames_total", "Frames ended by silence (idle framing, or a lines flush) rather than a delimiter."),
		portSilenceReopens: port("silence_reopens_total", "Reopens forced by the silence watchdog (silence_timeout)."),
		portNoise:          port("noise_bytes_total", "Bytes dropped between frames: garbage, empty lines, packets failing their checksum (gnss), a banner before ready=."),
		sinkDelivered:      sink("delivered_total", "Frames the sink acknowledged."),
		sinkSpooled:        sink("spooled_total", "Frames written to the sink's on-disk spool."),
		sinkDead:           sink("dead_lettered_total", "Frames the sink will never take, written to its dead-letter file."),
		sinkSpoolFrames:    sink("spool_frames", "Frames in the sink's spool not yet acknowledged by the sink."),
		sinkSpoolBytes:     sink("spool_bytes", "Bytes of the sink's spool files on disk."),
		sinkSpoolDropped:   sink("spool_dropped_frames_total", "Undelivered frames deleted because the spool reached max_bytes or the disk filled (on_full: drop-oldest)."),
		sinkSpoolCorrupt:   sink("spool_corrupt_records_total", "Damaged spool regions found (torn writes after a crash); the good records are kept."),
		sinkLatency:        sink("delivery_latency_seconds", "Time from a frame's last byte read to the sink's acknowledgement."),
		sinkFailed:         sink("failed_total", "Frames given up for this sink (permanent error, retry limit, backlog full, shutdown)."),
		sinkRetried:        sink("retried_total", "Frames written again after a retryable error (once per retry)."),
		sinkPending:        sink("pending_frames", "Frames waiting in the sink's queue, not yet in a write."),
		sinkInflight:       sink("inflight_writes", "Batches being written or waiting to be retried."),
		sinkUp:             sink("up", "1 while the sink takes writes, 0 while it fails (retrying) or hangs."),
		submitted:          plain("frames_submitted_total", "Frames handed to the dispatcher by all ports."),
		delivered:          plain("frames_delivered_total", "Frames delivered to every sink they were routed to."),
		failed:             plain("frames_failed_total", "Frames that failed for at least one sink."),
		throttled:          plain("throttled_total", "Times a read loop waited for room in a healthy sink's queue (back-pressure)."),
		unrouted:           plain("frames_unrouted_total", "Frames no route matched (sent to unrouted_sink, or dropped)."),
		loopQueued:         plain("loop_queued", "Tasks waiting in the event loop's queue."),
		loopRunning:        plain("loop_running_handlers", "Handlers (sink writes) running now."),
		loopUnobserved:     plain("loop_unobserved_failures_total", "Failed futures whose error nobody read (a bug; see the logs)."),
		loopRejected:       plain("loop_rejected_total", "Tasks refused by the event loop (queue full, not running, closed)."),
		loopCallbackPanics: plain("loop_callback_panics_total", "Callbacks on the event loop that panicked and were recovered (a bug; see the logs)."),
	}
}

// Describe implements prometheus.Collector.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.portBytes, c.portFrames, c.portOversize, c.portOversizeBytes, c.portUp, c.portReconnects, c.portInvalid,
		c.portLastFrameAge, c.portFlushed, c.portSilenceReopens, c.portUndecoded, c.portNoise,
		c.sinkDelivered, c.sinkFailed, c.sinkRetried, c.sinkPending, c.sinkInflight, c.sinkUp,
		c.sinkSpooled, c.sinkDead, c.sinkSpoolFrames, c.sinkSpoolBytes, c.sinkSpoolDropped, c.sinkSpoolCorrupt, c.sinkLatency,
		c.submitted, c.delivered, c.failed, c.throttled, c.unrouted,
		c.loopQueued, c.loopRunning, c.loopUnobserved, c.loopRejected, c.loopCallbackPanics,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	cur := c.d.current()
	for _, p := range cur.ports {
		name := p.name
		st := p.r.Stats()
		counter(c.portBytes, st.Bytes, name)
		counter(c.portFrames, st.Frames, name)
		counter(c.portOversize, st.Oversize, name)
		counter(c.portOversizeBytes, st.OversizeBytes, name)
		counter(c.portReconnects, st.Reconnects, name)
		counter(c.portInvalid, p.check.Load().invalid.Load(), name)
		counter(c.portUndecoded, p.check.Load().undecoded.Load(), name)
		up := 0.0
		if st.Up {
			up = 1
		}
		gauge(c.portUp, up, name)
		counter(c.portFlushed, st.Flushed, name)
		counter(c.portSilenceReopens, st.SilenceReopens, name)
		counter(c.portNoise, st.Noise, name)
		if last := p.lastFrame.Load(); last > 0 {
			gauge(c.portLastFrameAge, time.Since(time.Unix(0, last)).Seconds(), name)
		}
	}
	ds := cur.disp.Stats()
	for _, s := range ds.Sinks {
		counter(c.sinkDelivered, s.Delivered, s.Name)
		counter(c.sinkFailed, s.Failed, s.Name)
		counter(c.sinkRetried, s.Retried, s.Name)
		gauge(c.sinkPending, float64(s.Pending), s.Name)
		gauge(c.sinkInflight, float64(s.Inflight), s.Name)
		gauge(c.sinkUp, map[bool]float64{true: 0, false: 1}[s.Down], s.Name)
		counter(c.sinkSpooled, s.Spooled, s.Name)
		counter(c.sinkDead, s.DeadLettered, s.Name)
		if sp := s.Spool; sp != nil {
			gauge(c.sinkSpoolFrames, float64(sp.Frames), s.Name)
			gauge(c.sinkSpoolBytes, float64(sp.Bytes), s.Name)
			counter(c.sinkSpoolDropped, sp.DroppedFrames, s.Name)
			counter(c.sinkSpoolCorrupt, sp.CorruptRecords, s.Name)
		}
		buckets := make(map[float64]uint64, len(dispatch.LatencyBounds))
		var cum uint64
		for i, b := range dispatch.LatencyBounds {
			cum += s.Latency.Counts[i]
			buckets[b] = cum
		}
		cum += s.Latency.Counts[len(dispatch.LatencyBounds)]
		ch <- prometheus.MustNewConstHistogram(c.sinkLatency, cum, s.Latency.Sum, buckets, s.Name)
	}
	counter(c.submitted, ds.Submitted)
	counter(c.delivered, ds.Delivered)
	counter(c.failed, ds.Failed)
	counter(c.throttled, ds.Throttled)
	counter(c.unrouted, ds.Unrouted)
	ls := cur.loop.Stats()
	gauge(c.loopQueued, float64(ls.Queued))
	gauge(c.loopRunning, float64(ls.Running))
	counter(c.loopUnobserved, ls.Unobserved)
	counter(c.loopRejected, ls.Rejected)
	counter(c.loopCallbackPanics, ls.CallbackPanics)
}
