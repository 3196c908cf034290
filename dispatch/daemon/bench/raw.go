package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// meter takes the process's CPU time, allocation counters and bytes sent
// to storage around a phase.
type meter struct {
	at      time.Time
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
	disk    int64
	diskOK  bool
}

func readMeter() meter {
	m := meter{at: time.Now()}
	if cpu, _, err := rusage(); err == nil {
		m.cpu = cpu
	}
	m.disk, m.diskOK = diskWrites()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs, m.bytes = ms.Mallocs, ms.TotalAlloc
	return m
}

func (r *Result) finish(fl Options, start, end meter, elapsed time.Duration, h *histogram) {
	r.Lost = r.Sent - r.Delivered
	r.DurationS = elapsed.Seconds()
	if elapsed > 0 {
		r.FramesPerS = float64(r.Delivered) / elapsed.Seconds()
		r.MBPerS = r.FramesPerS * float64(fl.Size) / 1e6
	}
	if r.Sent > 0 {
		n := float64(r.Sent)
		r.CPUSPer1kFrame = (end.cpu - start.cpu).Seconds() / n * 1000
		r.AllocsPerFrame = float64(end.mallocs-start.mallocs) / n
		r.BytesPerFrame = float64(end.bytes-start.bytes) / n
	}
	r.LatencySamples = h.n
	r.Latency = Latency{P50: h.quantile(0.50), P99: h.quantile(0.99), P999: h.quantile(0.999), Max: us(h.max)}
}

// costs fills in what the phase cost per frame: CPU without the writers'
// threads (when they were measured), bytes sent to storage, and fsyncs and
// renames per second of the window from start to end.
func (r *Result) costs(start, end meter, dev devices, syncs, renames uint64) {
	if r.Sent == 0 {
		return
	}
	n := float64(r.Sent)
	cpu := end.cpu - start.cpu
	r.WriterExcluded = dev.external()
	if d, ok := dev.writers().total(); ok {
		cpu -= d
		r.WriterExcluded = true
	}
	r.CPUUsPerFrame = math.Round(cpu.Seconds()/n*1e7) / 10
	if start.diskOK && end.diskOK {
		r.DiskBytesPerFrame = math.Round(float64(end.disk-start.disk) / n)
	}
	if s := end.at.Sub(start.at).Seconds(); s > 0 {
		r.FsyncsPerS = math.Round(float64(syncs)/s*100) / 100
		r.RenamesPerS = math.Round(float64(renames)/s*100) / 100
	}
}

// writerCPU adds up the CPU time of the writers' threads in an open-loop
// run, where each writer locks its goroutine to a thread, so that a phase's
// CPU can be told without them (the device's side). What the runtime spends
// waking them (a few µs per write, on other threads) stays in.
type writerCPU struct {
	ns     atomic.Int64
	failed atomic.Bool
}

func (w *writerCPU) total() (time.Duration, bool) {
	if w == nil || w.failed.Load() {
		return 0, false
	}
	return time.Duration(w.ns.Load()), true
}

func us(ns int64) float64 { return math.Round(float64(ns)/10) / 100 }

// newWriterCPU returns a writerCPU for an open-loop run, nil at full speed
// (where a writer locked to a thread would change what is measured).
func newWriterCPU(fl Options) *writerCPU {
	if fl.Rate <= 0 {
		return nil
	}
	return &writerCPU{}
}

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

// runRaw is the ceiling: the same writers, and per port a plain reader
// that opens and reads the port the way the read loop does (serialcb.Open:
// on Linux the reads wait in Go's runtime poller), and counts lines.
func runRaw(ctx context.Context, fl Options) (Result, error) {
	dev, err := openDevices(fl)
	if err != nil {
		return Result{}, err
	}
	defer dev.close()
	paths := dev.paths()
	ports := make([]serial.Port, len(paths))
	defer func() {
		for _, p := range ports {
			if p != nil {
				_ = p.Close()
			}
		}
	}()
	for i, path := range paths {
		if ports[i], err = serialcb.Open(serialcb.PortConfig{Path: path, Baud: 115200}); err != nil {
			return Result{}, err
		}
	}
	hists := make([]histogram, fl.Ports)
	counts := make([]int, fl.Ports)
	var res Result
	base := time.Now()
	if c, ok := dev.(*child); ok {
		base = c.baseTime()
	}
	m0 := readMeter()
	var readers sync.WaitGroup
	var lastRead atomic.Int64
	for i, p := range ports {
		want := share(fl.Frames, fl.Ports, i)
		readers.Go(func() {
			counts[i] = rawRead(p, want, base, &hists[i])
			for t := int64(time.Since(base)); ; {
				if old := lastRead.Load(); old >= t || lastRead.CompareAndSwap(old, t) {
					break
				}
			}
		})
	}
	sent, werr := dev.write(ctx, base)
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
	dev.unblock()
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
	res.costs(m0, m1, dev, 0, 0)
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
func writeAll(ctx context.Context, pairs []*vport.Pair, fl Options, base time.Time, wcpu *writerCPU) (int, error) {
	frames := make([]int, len(pairs))
	for i := range pairs {
		frames[i] = share(fl.Frames, len(pairs), i)
	}
	return writeEach(ctx, pairs, frames, fl.Size, fl.Batch, fl.Rate/float64(len(pairs)), base, wcpu)
}

// writeEach runs one writer per port, frames[i] frames into pairs[i] at
// perPortRate, and returns the frames written.
func writeEach(ctx context.Context, pairs []*vport.Pair, frames []int, size, batch int, perPortRate float64, base time.Time, wcpu *writerCPU) (int, error) {
	var wg sync.WaitGroup
	sent := make([]int, len(pairs))
	errs := make([]error, len(pairs))
	for i, p := range pairs {
		wg.Go(func() {
			sent[i], errs[i] = writeFrames(ctx, p, frames[i], size, batch, perPortRate, base, wcpu)
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
//
// With wcpu set, the writer locks itself to a thread and adds the thread's
// CPU time to wcpu.
func writeFrames(ctx context.Context, w io.Writer, n, size, batch int, rate float64, base time.Time, wcpu *writerCPU) (int, error) {
	if wcpu != nil {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if t0, ok := threadCPU(); ok {
			defer func() {
				t1, ok := threadCPU()
				if !ok {
					wcpu.failed.Store(true)
				}
				wcpu.ns.Add(int64(t1 - t0))
			}()
		} else {
			wcpu.failed.Store(true)
		}
	}
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
