//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.bug.st/serial"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/httpsink"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// Each frame starts with its send time: nanoseconds since the run's start on
// the monotonic clock, zero-padded to tsWidth digits (11.5 days of range).
const (
	tsWidth      = 15
	minFrameSize = tsWidth + 1 // digits and the newline
	maxFrameSize = 64 << 10    // the read loop's default MaxFrame
	benchStall   = 15 * time.Second
)

type benchFlags struct {
	frames, size, batch, ports int
	rate                       float64
	sink                       string
	json                       bool
	spool                      bool
}

func newBenchCmd(g *globals) *cobra.Command {
	var fl benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline on virtual ports: throughput, latency, CPU, memory",
		Long: `bench creates virtual serial ports inside the process, writes frames into them
and runs the real pipeline (read loops, event loop, dispatcher, sink) on them.
Each frame carries its send time, so latency is measured from the write into
the port to the sink's acknowledgement. Before the pipeline, the same writer
runs against a plain reader on the same kind of port: that is the ceiling the
port path allows, and serialcbd's results are shown as a share of it.

Sinks: the default is SQLite in a temporary directory; "http" is an HTTP
receiver inside the process on loopback answering 204, one POST per frame;
"http-ndjson" is the same receiver fed by the http sink with format: ndjson
(one POST per batch, one record per line; the receiver counts the lines and
checks them against X-Serialcbd-Frames); any other sink spec (sqlite:PATH,
file:PATH, http://…) is used as given.

Exit status 1 when a frame is lost.`,
		Example: `  serialcbd bench
  serialcbd bench --sink http --frames 50000
  serialcbd bench --sink http-ndjson
  serialcbd bench --rate 1000 --frames 10000
  serialcbd bench --ports 8 --json`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("bench takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fl.batch == 0 {
				fl.batch = 64
				if fl.rate > 0 {
					fl.batch = 1
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBench(ctx, g, fl)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &daemon.UsageError{Err: err} })
	f := cmd.Flags()
	f.IntVar(&fl.frames, "frames", 100000, "frames to write (split between the ports)")
	f.IntVar(&fl.size, "size", 64, fmt.Sprintf("bytes per frame, newline included (%d..%d)", minFrameSize, maxFrameSize))
	f.Float64Var(&fl.rate, "rate", 0, "frames per second over all ports; 0 = as fast as the port takes them")
	f.IntVar(&fl.batch, "batch", 0, "frames per write system call (default 1 with --rate, 64 without)")
	f.StringVar(&fl.sink, "sink", "", `sink spec; "http" = an HTTP receiver in the process, "http-ndjson" = the same with NDJSON batches (default: SQLite in a temporary directory)`)
	f.IntVar(&fl.ports, "ports", 1, "virtual ports read in parallel")
	f.BoolVar(&fl.json, "json", false, "print the results as JSON")
	f.BoolVar(&fl.spool, "spool", false, "store-and-forward through the on-disk spool, as `run` does by default (a frame then counts as taken once it is on disk: latency and frames/s are read → spooled; the sink empties the spool before the run ends)")
	return cmd
}

func (fl benchFlags) validate() error {
	switch {
	case fl.frames <= 0:
		return usagef("--frames must be positive")
	case fl.size < minFrameSize || fl.size > maxFrameSize:
		return usagef("--size must be %d..%d bytes (the frame carries a %d-digit timestamp and a newline)", minFrameSize, maxFrameSize, tsWidth)
	case fl.rate < 0 || math.IsNaN(fl.rate) || math.IsInf(fl.rate, 0):
		return usagef("--rate must be 0 (as fast as possible) or positive")
	case fl.batch < 0:
		return usagef("--batch must be positive (0 = the default)")
	case fl.ports <= 0 || fl.ports > 256:
		return usagef("--ports must be 1..256")
	case fl.frames < fl.ports:
		return usagef("--frames (%d) must be at least --ports (%d)", fl.frames, fl.ports)
	}
	return nil
}

// benchResult is one path's measurements (raw port or the pipeline).
type benchResult struct {
	Sent           int          `json:"sent"`
	Delivered      int          `json:"delivered"`
	Failed         int          `json:"failed"`
	Lost           int          `json:"lost"`
	DurationS      float64      `json:"duration_s"`
	FramesPerS     float64      `json:"frames_per_s"`
	MBPerS         float64      `json:"mb_per_s"`
	Latency        latencyStats `json:"latency_us"`
	CPUSPer1kFrame float64      `json:"cpu_s_per_1k_frames"`
	AllocsPerFrame float64      `json:"allocs_per_frame"`
	BytesPerFrame  float64      `json:"alloc_bytes_per_frame"`
	LatencySamples uint64       `json:"latency_samples"`
}

type latencyStats struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

type benchReport struct {
	Frames     int         `json:"frames"`
	Size       int         `json:"size"`
	Rate       float64     `json:"rate"`
	Batch      int         `json:"batch"`
	Ports      int         `json:"ports"`
	Sink       string      `json:"sink"`
	GOMAXPROCS int         `json:"gomaxprocs"`
	Raw        benchResult `json:"raw"`
	Serialcbd  benchResult `json:"serialcbd"`
	PeakRSSKiB int64       `json:"peak_rss_kib"`
	// Serialcbd's throughput as a percentage of the raw path's, and its p99
	// minus the raw path's p99.
	ThroughputPctOfRaw float64 `json:"throughput_pct_of_raw"`
	P99OverRawUs       float64 `json:"p99_over_raw_us"`
}

func runBench(ctx context.Context, g *globals, fl benchFlags) error {
	if err := fl.validate(); err != nil {
		return err
	}
	// Back-pressure warnings are expected when writing as fast as possible.
	log, err := g.newLogger("error", "")
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	sink, label, cleanup, err := benchSink(fl.sink)
	if err != nil {
		return err
	}
	defer cleanup()

	rep := benchReport{Frames: fl.frames, Size: fl.size, Rate: fl.rate, Batch: fl.batch, Ports: fl.ports,
		Sink: label, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if !fl.json {
		printf(g.stdout, "serialcbd bench: %d frames of %d B, %s, %d per write, %d port(s), sink %s\n",
			fl.frames, fl.size, rateText(fl.rate), fl.batch, fl.ports, label)
	}
	rep.Raw, err = benchRaw(ctx, fl)
	if err != nil {
		return fmt.Errorf("raw port path: %w", err)
	}
	rep.Serialcbd, err = benchDaemon(ctx, fl, sink, log)
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		rep.PeakRSSKiB = ru.Maxrss // KiB on Linux
	}
	if rep.Raw.FramesPerS > 0 {
		rep.ThroughputPctOfRaw = 100 * rep.Serialcbd.FramesPerS / rep.Raw.FramesPerS
	}
	rep.P99OverRawUs = rep.Serialcbd.Latency.P99 - rep.Raw.Latency.P99
	if fl.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printBench(g.stdout, &rep); err != nil {
		return err
	}
	if s := rep.Serialcbd; s.Lost > 0 || s.Failed > 0 {
		return fmt.Errorf("bench: %d of %d frames lost, %d failed", s.Lost, s.Sent, s.Failed)
	}
	if rep.Raw.Lost > 0 {
		return fmt.Errorf("bench: the raw port path lost %d of %d frames", rep.Raw.Lost, rep.Raw.Sent)
	}
	return nil
}

func rateText(r float64) string {
	if r == 0 {
		return "as fast as possible"
	}
	return fmt.Sprintf("%g frames/s", r)
}

// benchSink resolves --sink into the sink entry, a label for the report and
// a cleanup.
func benchSink(spec string) (sink configs.Sink, label string, cleanup func(), err error) {
	sink.Name = "sink"
	switch spec {
	case "":
		dir, err := os.MkdirTemp("", "serialcbd-bench-")
		if err != nil {
			return sink, "", nil, err
		}
		sink.URL = "sqlite:" + filepath.Join(dir, "bench.db")
		return sink, "sqlite (temporary)", func() { _ = os.RemoveAll(dir) }, nil
	case "http", "http-ndjson":
		ndjson := spec == "http-ndjson"
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return sink, "", nil, err
		}
		srv := &http.Server{Handler: benchReceiver(ndjson), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		sink.URL = "http://" + ln.Addr().String() + "/ingest"
		label = "http (in-process receiver, 204)"
		if ndjson {
			// The entry a config file would give as  http: {format: ndjson}
			sink.HTTP = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: "format"},
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: httpsink.FormatNDJSON},
			}}
			label = "http-ndjson (in-process receiver counting lines, 204)"
		}
		return sink, label, func() { _ = srv.Close() }, nil
	}
	sink.URL = spec
	return sink, spec, func() {}, nil
}

// benchReceiver answers every POST with 204 once it has read the body. An
// NDJSON receiver counts the body's lines and answers 400 when they are not
// the X-Serialcbd-Frames the request announces (a malformed batch shows up
// as failed frames).
func benchReceiver(ndjson bool) http.Handler {
	// Copy buffers are pooled: io.Copy into a plain Writer would allocate
	// 32 KiB per request, charged to the pipeline's allocations.
	bufs := sync.Pool{New: func() any { return new([16 << 10]byte) }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ndjson {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var lines lineCounter
		buf := bufs.Get().(*[16 << 10]byte)
		_, err := io.CopyBuffer(&lines, r.Body, buf[:])
		bufs.Put(buf)
		want, herr := strconv.Atoi(r.Header.Get(httpsink.FramesHeader))
		if err != nil || herr != nil || int(lines) != want {
			http.Error(w, fmt.Sprintf("%d lines, %s %q", lines, httpsink.FramesHeader, r.Header.Get(httpsink.FramesHeader)), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// lineCounter is an io.Writer that counts newlines.
type lineCounter int

func (c *lineCounter) Write(p []byte) (int, error) {
	*c += lineCounter(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// meter takes the process's CPU time and allocation counters around a phase.
type meter struct {
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
}

func readMeter() meter {
	var m meter
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs, m.bytes = ms.Mallocs, ms.TotalAlloc
	return m
}

func (r *benchResult) finish(fl benchFlags, start, end meter, elapsed time.Duration, h *histogram) {
	r.Lost = r.Sent - r.Delivered
	r.DurationS = elapsed.Seconds()
	if elapsed > 0 {
		r.FramesPerS = float64(r.Delivered) / elapsed.Seconds()
		r.MBPerS = r.FramesPerS * float64(fl.size) / 1e6
	}
	if r.Sent > 0 {
		n := float64(r.Sent)
		r.CPUSPer1kFrame = (end.cpu - start.cpu).Seconds() / n * 1000
		r.AllocsPerFrame = float64(end.mallocs-start.mallocs) / n
		r.BytesPerFrame = float64(end.bytes-start.bytes) / n
	}
	r.LatencySamples = h.n
	r.Latency = latencyStats{P50: h.quantile(0.50), P99: h.quantile(0.99), P999: h.quantile(0.999), Max: us(h.max)}
}

func us(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }

// share splits n frames between p ports.
func share(n, p, i int) int {
	s := n / p
	if i < n%p {
		s++
	}
	return s
}

// openPairs makes p virtual ports; close them with closePairs.
func openPairs(p int) ([]*vport.Pair, error) {
	var pairs []*vport.Pair
	for range p {
		pr, err := vport.Open()
		if err != nil {
			closePairs(pairs)
			return nil, fmt.Errorf("create virtual port: %w", err)
		}
		pairs = append(pairs, pr)
	}
	return pairs, nil
}

func closePairs(pairs []*vport.Pair) {
	for _, p := range pairs {
		_ = p.Close()
	}
}

// benchRaw is the ceiling: the same writers, and per port a plain reader
// that opens the port the way the read loop does, reads and counts lines.
func benchRaw(ctx context.Context, fl benchFlags) (benchResult, error) {
	pairs, err := openPairs(fl.ports)
	if err != nil {
		return benchResult{}, err
	}
	defer closePairs(pairs)
	ports := make([]serial.Port, len(pairs))
	defer func() {
		for _, p := range ports {
			if p != nil {
				_ = p.Close()
			}
		}
	}()
	for i, pr := range pairs {
		if ports[i], err = serial.Open(pr.Path(), &serial.Mode{BaudRate: 115200}); err != nil {
			return benchResult{}, err
		}
	}
	hists := make([]histogram, fl.ports)
	counts := make([]int, fl.ports)
	var res benchResult
	base := time.Now()
	m0 := readMeter()
	var readers sync.WaitGroup
	var lastRead atomic.Int64
	for i, p := range ports {
		want := share(fl.frames, fl.ports, i)
		readers.Go(func() {
			counts[i] = rawRead(p, want, base, &hists[i])
			for t := int64(time.Since(base)); ; {
				if old := lastRead.Load(); old >= t || lastRead.CompareAndSwap(old, t) {
					break
				}
			}
		})
	}
	sent, werr := writeAll(ctx, pairs, fl, base)
	res.Sent = sent
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(benchStall):
	}
	for _, p := range ports {
		_ = p.Close() // unblocks a reader still waiting for lost bytes
	}
	closePairs(pairs)
	<-done
	m1 := readMeter()
	var h histogram
	for i := range hists {
		h.merge(&hists[i])
		res.Delivered += counts[i]
	}
	elapsed := time.Since(base)
	if res.Delivered == res.Sent {
		elapsed = time.Duration(lastRead.Load())
	}
	res.finish(fl, m0, m1, elapsed, &h)
	return res, errors.Join(werr, ctx.Err())
}

// rawRead reads lines until want have arrived or the port fails, recording
// now − timestamp for each. All lines of one read arrive at the same time.
func rawRead(p serial.Port, want int, base time.Time, h *histogram) int {
	buf := make([]byte, serialcb.DefaultReadBuffer)
	n := 0
	var ts int64
	inTS := true
	for n < want {
		k, err := p.Read(buf)
		if err != nil || k == 0 { // closed: no read timeout is set, so 0 bytes means the end
			return n
		}
		now := int64(time.Since(base))
		b := buf[:k]
		for len(b) > 0 {
			for inTS && len(b) > 0 {
				if c := b[0]; c >= '0' && c <= '9' {
					ts = ts*10 + int64(c-'0')
					b = b[1:]
				} else {
					inTS = false
				}
			}
			i := indexNL(b)
			if i < 0 {
				break
			}
			h.record(now - ts)
			n++
			b = b[i+1:]
			ts, inTS = 0, true
		}
	}
	return n
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// parseTS reads the send time at the start of a frame's payload.
func parseTS(p []byte) int64 {
	var ts int64
	for _, c := range p[:min(len(p), tsWidth)] {
		if c < '0' || c > '9' {
			break
		}
		ts = ts*10 + int64(c-'0')
	}
	return ts
}

// writeAll runs one writer per port and returns the frames written.
func writeAll(ctx context.Context, pairs []*vport.Pair, fl benchFlags, base time.Time) (int, error) {
	var wg sync.WaitGroup
	sent := make([]int, len(pairs))
	errs := make([]error, len(pairs))
	perPortRate := fl.rate / float64(len(pairs))
	for i, p := range pairs {
		wg.Go(func() {
			sent[i], errs[i] = writeFrames(ctx, p, share(fl.frames, len(pairs), i), fl.size, fl.batch, perPortRate, base)
		})
	}
	wg.Wait()
	total := 0
	for _, s := range sent {
		total += s
	}
	return total, errors.Join(errs...)
}

// writeFrames writes n frames of size bytes into w, batch frames per write,
// each stamped just before its write. With rate > 0 the frames follow the
// schedule frame i at i/rate seconds, checked on a ticker (no busy wait):
// a tick that comes late writes every frame that became due.
func writeFrames(ctx context.Context, w io.Writer, n, size, batch int, rate float64, base time.Time) (int, error) {
	buf := make([]byte, batch*size)
	for i := range buf {
		buf[i] = 'x'
	}
	for f := range batch {
		buf[f*size+size-1] = '\n'
	}
	write := func(k int) error {
		ts := uint64(time.Since(base))
		for f := range k {
			d := buf[f*size : f*size+tsWidth]
			for j, v := tsWidth-1, ts; j >= 0; j-- {
				d[j] = byte('0' + v%10)
				v /= 10
			}
		}
		_, err := w.Write(buf[:k*size])
		return err
	}
	sent := 0
	if rate <= 0 {
		for sent < n {
			if err := ctx.Err(); err != nil {
				return sent, err
			}
			k := min(batch, n-sent)
			if err := write(k); err != nil {
				return sent, err
			}
			sent += k
		}
		return sent, nil
	}
	period := max(time.Duration(float64(batch)/rate*float64(time.Second)), 100*time.Microsecond)
	t := time.NewTicker(period)
	defer t.Stop()
	start := time.Now()
	for sent < n {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-t.C:
		}
		due := min(n, int(time.Since(start).Seconds()*rate))
		for due-sent >= batch || (due == n && sent < n) {
			k := min(batch, due-sent)
			if err := write(k); err != nil {
				return sent, err
			}
			sent += k
		}
	}
	return sent, nil
}

// benchDaemon runs the daemon's pipeline on fresh virtual ports: the
// read loops submit each frame to the dispatcher, and a done-callback on its
// future (run on the event loop, one at a time) records the latency from the
// frame's timestamp to the acknowledgement of every routed sink.
func benchDaemon(ctx context.Context, fl benchFlags, sink configs.Sink, log *zap.Logger) (benchResult, error) {
	pairs, err := openPairs(fl.ports)
	if err != nil {
		return benchResult{}, err
	}
	defer closePairs(pairs)
	cfg := &configs.Config{DrainTimeout: 10 * time.Second}
	if fl.spool {
		dir, err := os.MkdirTemp("", "serialcbd-bench-state-")
		if err != nil {
			return benchResult{}, err
		}
		defer os.RemoveAll(dir)
		cfg.StateDir = dir
	}
	for i, p := range pairs {
		cfg.Ports = append(cfg.Ports, configs.Port{Name: fmt.Sprintf("bench%d", i), Path: p.Path(), Baud: 115200})
	}
	cfg.Sinks = []configs.Sink{sink}
	if err := cfg.Validate(); err != nil {
		return benchResult{}, usagef("--sink %q: %v", fl.sink, err)
	}
	d, err := daemon.New(cfg, log, daemon.Options{})
	if err != nil {
		return benchResult{}, err
	}
	acks := newAckRecorder(fl)
	acks.base = time.Now() // before any goroutine that reads it starts
	onDone := acks.done

	var res benchResult
	err = d.RunWith(ctx, func(f serialcb.Frame) {
		acks.stamp(f)
		d.Submit(f).AddDoneCallback(onDone)
	}, func(ctx context.Context) error {
		m0 := readMeter()
		start := time.Since(acks.base)
		sent, werr := writeAll(ctx, pairs, fl, acks.base)
		res.Sent = sent
		acks.wait(ctx, sent)
		elapsed := time.Duration(acks.last.Load()) - start
		if acks.completed.Load() < int64(sent) {
			elapsed = time.Since(acks.base) - start
		}
		m1 := readMeter()
		res.Delivered = int(acks.delivered.Load())
		res.Failed = int(acks.failed.Load())
		res.finish(fl, m0, m1, elapsed, &acks.hist)
		return werr
	})
	return res, err
}

// ackRecorder keeps each in-flight frame's send time, indexed by port and
// sequence number in a ring, so that the done-callback needs no per-frame
// closure; the ring is larger than the frames a port can have in flight
// (the sink's queue cap), and a slot taken by a later frame is detected.
type ackRecorder struct {
	base      time.Time
	portIdx   map[string]int
	rings     [][]tsSlot
	hist      histogram // loop goroutine only
	completed atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	unmatched atomic.Int64
	last      atomic.Int64 // ns since base of the latest acknowledgement
	progress  chan struct{}
}

type tsSlot struct {
	seq uint64
	ts  int64
}

const ackRing = 1 << 16

func newAckRecorder(fl benchFlags) *ackRecorder {
	a := &ackRecorder{portIdx: make(map[string]int), progress: make(chan struct{}, 1)}
	for i := range fl.ports {
		a.portIdx[fmt.Sprintf("bench%d", i)] = i
		a.rings = append(a.rings, make([]tsSlot, min(ackRing, share(fl.frames, fl.ports, i)+1)))
	}
	return a
}

// stamp runs on the port's read loop, before Submit hands the frame over.
func (a *ackRecorder) stamp(f serialcb.Frame) {
	r := a.rings[a.portIdx[f.Port]]
	r[f.Seq%uint64(len(r))] = tsSlot{seq: f.Seq, ts: parseTS(f.Payload)}
}

// done runs on the event loop goroutine, one call at a time.
func (a *ackRecorder) done(fut *asyncloop.Future[dispatch.Receipt]) {
	now := int64(time.Since(a.base))
	if fut.Err() != nil {
		a.failed.Add(1)
	} else {
		a.delivered.Add(1)
		rc, _ := fut.Result(context.Background())
		if i, ok := a.portIdx[rc.Port]; ok {
			r := a.rings[i]
			if s := r[rc.Seq%uint64(len(r))]; s.seq == rc.Seq {
				a.hist.record(now - s.ts)
			} else {
				a.unmatched.Add(1)
			}
		}
	}
	a.last.Store(now)
	a.completed.Add(1)
	select {
	case a.progress <- struct{}{}:
	default:
	}
}

// wait returns once want frames completed, ctx ends, or nothing completes
// for benchStall.
func (a *ackRecorder) wait(ctx context.Context, want int) {
	stall := time.NewTimer(benchStall)
	defer stall.Stop()
	for a.completed.Load() < int64(want) {
		select {
		case <-a.progress:
			stall.Reset(benchStall)
		case <-stall.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// histogram is a log-linear latency histogram in nanoseconds: exact below
// 128 ns, then 128 buckets per power of two (under 0.8% error), fixed size,
// no allocation per sample.
type histogram struct {
	counts [58 << histSub]uint64
	n      uint64
	max    int64
}

const histSub = 7

func histIndex(v int64) int {
	u := uint64(max(v, 0))
	if u < 1<<histSub {
		return int(u)
	}
	shift := bits.Len64(u) - (histSub + 1)
	return (shift+1)<<histSub + int(u>>shift) - 1<<histSub
}

// histMid is the middle of bucket i.
func histMid(i int) int64 {
	if i < 1<<histSub {
		return int64(i)
	}
	shift := i>>histSub - 1
	m := uint64(i&(1<<histSub-1) + 1<<histSub)
	return int64(m<<shift + (uint64(1)<<shift)/2)
}

func (h *histogram) record(v int64) {
	h.counts[histIndex(v)]++
	h.n++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile in microseconds.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= max(rank, 1) {
			return us(min(histMid(i), h.max))
		}
	}
	return us(h.max)
}

func printBench(w io.Writer, r *benchReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	raw, s := r.Raw, r.Serialcbd
	row := func(name, a, b, c string) { fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, a, b, c) }
	num := func(v float64, prec int) string { return groupDigits(fmt.Sprintf("%.*f", prec, v)) }
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", 100*a/b)
	}
	diff := func(a, b float64) string { return fmt.Sprintf("%+.0f µs", a-b) }
	fmt.Fprintln(w)
	row("", "raw port", "serialcbd", "serialcbd vs raw")
	row("frames sent", num(float64(raw.Sent), 0), num(float64(s.Sent), 0), "")
	row("frames delivered", num(float64(raw.Delivered), 0), num(float64(s.Delivered), 0), "")
	row("frames lost", num(float64(raw.Lost), 0), num(float64(s.Lost), 0), "")
	row("duration", fmt.Sprintf("%.3f s", raw.DurationS), fmt.Sprintf("%.3f s", s.DurationS), "")
	row("frames/s", num(raw.FramesPerS, 0), num(s.FramesPerS, 0), ratio(s.FramesPerS, raw.FramesPerS))
	row("MB/s", fmt.Sprintf("%.1f", raw.MBPerS), fmt.Sprintf("%.1f", s.MBPerS), "")
	for _, l := range []struct {
		name string
		a, b float64
	}{{"latency p50", raw.Latency.P50, s.Latency.P50}, {"latency p99", raw.Latency.P99, s.Latency.P99},
		{"latency p99.9", raw.Latency.P999, s.Latency.P999}, {"latency max", raw.Latency.Max, s.Latency.Max}} {
		row(l.name, fmt.Sprintf("%.0f µs", l.a), fmt.Sprintf("%.0f µs", l.b), diff(l.b, l.a))
	}
	row("CPU s / 1,000 frames", fmt.Sprintf("%.5f", raw.CPUSPer1kFrame), fmt.Sprintf("%.5f", s.CPUSPer1kFrame), "")
	row("allocs / frame", fmt.Sprintf("%.2f", raw.AllocsPerFrame), fmt.Sprintf("%.2f", s.AllocsPerFrame), "")
	row("alloc bytes / frame", fmt.Sprintf("%.0f", raw.BytesPerFrame), fmt.Sprintf("%.0f", s.BytesPerFrame), "")
	row("peak RSS (process)", "", fmt.Sprintf("%.1f MiB", float64(r.PeakRSSKiB)/1024), "")
	return tw.Flush()
}

// groupDigits puts thousands separators into a formatted number.
func groupDigits(s string) string {
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}
