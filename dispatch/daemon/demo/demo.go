package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	modbus "github.com/serialcbd/serialcbd/serialcb/vport/meter"
	"github.com/serialcbd/serialcbd/testdata"
)

// Options are the demo's settings: the flags of `serialcbd demo`.
type Options struct {
	// DB is the SQLite database the frames are written to.
	DB string
	// Baud is the rate the recordings are played at (8N1: Baud/10 bytes
	// per second); it must be positive.
	Baud int
	// Sinks are extra sink specs, delivered to besides DB.
	Sinks []string
	// Out receives the progress (only when it is a terminal) and the
	// summary.
	Out io.Writer
	// Log is the pipeline's logger; nil logs nothing.
	Log *zap.Logger
}

// recording is one stream the demo plays into one virtual port.
type recording struct {
	port string
	data []byte
}

// Run plays the recordings through the pipeline until they are read and
// delivered (or ctx ends), stops the pipeline as SIGTERM does and prints
// the summary. Its errors are *daemon.UsageError for bad options, else
// what went wrong; it fails when fewer frames were delivered than played.
func Run(ctx context.Context, o Options) error {
	if o.Baud <= 0 {
		return daemon.Usagef("--baud must be positive")
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	recs := []recording{{"gps", testdata.GPS}, {"env-sensor", testdata.Sensor}}
	cfg := &configs.Config{DrainTimeout: 10 * time.Second}
	var pairs []*vport.Pair
	defer func() {
		for _, p := range pairs {
			_ = p.Close()
		}
	}()
	for _, r := range recs {
		p, err := vport.Open()
		if err != nil {
			return fmt.Errorf("create virtual port: %w", err)
		}
		pairs = append(pairs, p)
		cfg.Ports = append(cfg.Ports, configs.Port{Name: r.port, Path: p.Path(), Baud: o.Baud})
	}
	// The polled device: a Modbus meter that only answers.
	mp, err := vport.Open()
	if err != nil {
		return fmt.Errorf("create virtual port: %w", err)
	}
	pairs = append(pairs, mp)
	cfg.Ports = append(cfg.Ports, configs.Port{Name: "meter", Path: mp.Path(), Baud: 9600, Parity: "even",
		Framing: "idle:3.5c", Validate: "crc16-modbus",
		Poll: []configs.Poll{{Name: "energy", Every: 200 * time.Millisecond, Send: "hex:010300000002C40B",
			ReplyTimeout: 200 * time.Millisecond, Retries: 1}}})
	meterCtx, stopMeter := context.WithCancel(ctx)
	var meterDone sync.WaitGroup
	defer func() { stopMeter(); _ = mp.Close(); meterDone.Wait() }()
	meterDone.Go(func() { _ = (&modbus.Meter{Delay: 5 * time.Millisecond}).Serve(meterCtx, mp) })
	cfg.Sinks = append(cfg.Sinks, configs.Sink{Name: "sqlite", URL: "sqlite:" + o.DB})
	for i, s := range o.Sinks {
		cfg.Sinks = append(cfg.Sinks, configs.Sink{Name: fmt.Sprintf("extra-%d", i+1), URL: s})
	}
	if err := cfg.Validate(); err != nil {
		return daemon.Usagef("%v", err)
	}
	// Store-and-forward as `run` does, in a spool that lives as long as the demo.
	state, err := os.MkdirTemp("", "serialcbd-demo-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	cfg.StateDir = state
	ready := make(chan struct{})
	d, err := daemon.New(cfg, o.Log, daemon.Options{Ready: func() { close(ready) }})
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(runCtx) }()
	select {
	case <-ready:
	case err := <-runErr:
		return err
	}

	earlier, since := earlierFrames(o.DB)
	if earlier > 0 {
		fmt.Fprintf(o.Out, "note: %s already holds %d frames from earlier runs; this run adds to them and the summary counts its own (delete the file for a fresh table)\n",
			o.DB, earlier)
	}
	total := 0
	for _, r := range recs {
		total += countLines(r.data)
	}
	bytesTotal := len(recs[0].data) + len(recs[1].data)
	fmt.Fprintf(o.Out, "serialcbd demo: playing %d recorded frames (%s) through 2 virtual ports at %d baud, polling a Modbus meter on a third, into %s\n",
		total, sizeOf(bytesTotal), o.Baud, o.DB)
	start := time.Now()
	var played sync.WaitGroup
	progress := make([]int, len(recs))
	var mu sync.Mutex
	for i, r := range recs {
		played.Go(func() {
			_ = play(runCtx, pairs[i], r.data, o.Baud, func(n int) { mu.Lock(); progress[i] = n; mu.Unlock() })
		})
	}
	done := make(chan struct{})
	go func() { played.Wait(); close(done) }()
	tty := isTerminal(o.Out)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	render := func() {
		mu.Lock()
		sent := progress[0] + progress[1]
		mu.Unlock()
		st := d.Stats()
		fmt.Fprintf(o.Out, "\r  %s %3d%%  frames read %5d  delivered %5d ", bar(sent, bytesTotal, 30), sent*100/bytesTotal, recordedFrames(d), st.Delivered)
	}
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-ctx.Done():
			waiting = false
		case <-tick.C:
		}
		if tty && waiting {
			render() // no progress bar into a pipe or a file: just the summary
		}
	}
	// Wait for the tail of the stream to be read and delivered, then stop
	// the way SIGTERM does.
	deadline := time.Now().Add(5 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		st := d.Stats()
		if int(recordedFrames(d)) >= total && st.Delivered+st.Failed >= st.Submitted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopRun()
	err = <-runErr
	if tty {
		render() // the final counts, which the summary repeats
		fmt.Fprintf(o.Out, "\n")
	}
	if err != nil {
		return err
	}
	return summary(o.Out, d, o.DB, since, total, elapsed)
}

// play writes data into the device side of a virtual port at baud/10 bytes
// per second, the pace of an 8N1 line.
func play(ctx context.Context, p *vport.Pair, data []byte, baud int, progress func(int)) error {
	const tick = 10 * time.Millisecond
	chunk := max(baud/10/int(time.Second/tick), 1)
	t := time.NewTicker(tick)
	defer t.Stop()
	for off := 0; off < len(data); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		n := min(chunk, len(data)-off)
		if _, err := p.Write(data[off : off+n]); err != nil {
			return err
		}
		off += n
		progress(off)
	}
	return nil
}
