package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

// Each frame starts with its send time: nanoseconds since the run's start on
// the monotonic clock, zero-padded to tsWidth digits (11.5 days of range).
const (
	tsWidth      = 15
	MinFrameSize = tsWidth + 1 // digits and the newline
	MaxFrameSize = 64 << 10    // the read loop's default MaxFrame
	benchStall   = 15 * time.Second
)

// Options are a run's settings; the command's flags of the same names.
type Options struct {
	Frames int     // frames to write, split between the ports
	Size   int     // bytes per frame, newline included (MinFrameSize..MaxFrameSize)
	Batch  int     // frames per write system call
	Ports  int     // virtual ports read in parallel
	Rate   float64 // frames per second over all ports; 0: as fast as the port takes them
	// Sink is a sink spec; "http" is an HTTP receiver in the process,
	// "http-ndjson" the same fed NDJSON batches; "" is SQLite in a
	// temporary directory.
	Sink  string
	JSON  bool // print the report as JSON instead of a table
	Spool bool // store-and-forward through the on-disk spool, as `run` does
}

// Validate checks the options; its errors are *daemon.UsageError.
func (fl Options) Validate() error {
	switch {
	case fl.Frames <= 0:
		return daemon.Usagef("--frames must be positive")
	case fl.Size < MinFrameSize || fl.Size > MaxFrameSize:
		return daemon.Usagef("--size must be %d..%d bytes (the frame carries a %d-digit timestamp and a newline)", MinFrameSize, MaxFrameSize, tsWidth)
	case fl.Rate < 0 || math.IsNaN(fl.Rate) || math.IsInf(fl.Rate, 0):
		return daemon.Usagef("--rate must be 0 (as fast as possible) or positive")
	case fl.Batch < 0:
		return daemon.Usagef("--batch must be positive (0 = the default)")
	case fl.Ports <= 0 || fl.Ports > 256:
		return daemon.Usagef("--ports must be 1..256")
	case fl.Frames < fl.Ports:
		return daemon.Usagef("--frames (%d) must be at least --ports (%d)", fl.Frames, fl.Ports)
	}
	return nil
}

// Result is one path's measurements (raw port or the pipeline).
type Result struct {
	Sent           int     `json:"sent"`
	Delivered      int     `json:"delivered"`
	Failed         int     `json:"failed"`
	Lost           int     `json:"lost"`
	DurationS      float64 `json:"duration_s"`
	FramesPerS     float64 `json:"frames_per_s"`
	MBPerS         float64 `json:"mb_per_s"`
	Latency        Latency `json:"latency_us"`
	CPUSPer1kFrame float64 `json:"cpu_s_per_1k_frames"`
	AllocsPerFrame float64 `json:"allocs_per_frame"`
	BytesPerFrame  float64 `json:"alloc_bytes_per_frame"`
	LatencySamples uint64  `json:"latency_samples"`
}

// Latency is a path's latency percentiles in µs, from the write into the
// port to the sink's acknowledgement (the read, for the raw path).
type Latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// Report is a run's settings and both paths' results.
type Report struct {
	Frames     int     `json:"frames"`
	Size       int     `json:"size"`
	Rate       float64 `json:"rate"`
	Batch      int     `json:"batch"`
	Ports      int     `json:"ports"`
	Sink       string  `json:"sink"`
	GOMAXPROCS int     `json:"gomaxprocs"`
	Raw        Result  `json:"raw"`
	Serialcbd  Result  `json:"serialcbd"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	// Serialcbd's throughput as a percentage of the raw path's, and its p99
	// minus the raw path's p99.
	ThroughputPctOfRaw float64 `json:"throughput_pct_of_raw"`
	P99OverRawUs       float64 `json:"p99_over_raw_us"`
}

// Run measures the raw port path and then the pipeline with fl, writes the
// report to w (a table, or JSON with fl.JSON) and fails when a frame was
// lost. log is the pipeline's logger.
func Run(ctx context.Context, w io.Writer, fl Options, log *zap.Logger) error {
	if err := fl.Validate(); err != nil {
		return err
	}
	sink, label, cleanup, err := resolveSink(fl.Sink)
	if err != nil {
		return err
	}
	defer cleanup()

	rep := Report{Frames: fl.Frames, Size: fl.Size, Rate: fl.Rate, Batch: fl.Batch, Ports: fl.Ports,
		Sink: label, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if !fl.JSON {
		fmt.Fprintf(w, "serialcbd bench: %d frames of %d B, %s, %d per write, %d port(s), sink %s\n",
			fl.Frames, fl.Size, rateText(fl.Rate), fl.Batch, fl.Ports, label)
	}
	rep.Raw, err = runRaw(ctx, fl)
	if err != nil {
		return fmt.Errorf("raw port path: %w", err)
	}
	rep.Serialcbd, err = runPipeline(ctx, fl, sink, log)
	if err != nil {
		return err
	}
	if _, rss, err := rusage(); err == nil {
		rep.PeakRSSKiB = rss
	}
	if rep.Raw.FramesPerS > 0 {
		rep.ThroughputPctOfRaw = 100 * rep.Serialcbd.FramesPerS / rep.Raw.FramesPerS
	}
	rep.P99OverRawUs = rep.Serialcbd.Latency.P99 - rep.Raw.Latency.P99
	if fl.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := printBench(w, &rep); err != nil {
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

func printBench(w io.Writer, r *Report) error {
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
