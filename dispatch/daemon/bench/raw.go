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

// meter takes the process's CPU time and allocation counters around a phase.
type meter struct {
	cpu     time.Duration
	mallocs uint64
	bytes   uint64
}

func readMeter() meter {
	var m meter
	if cpu, _, err := rusage(); err == nil {
		m.cpu = cpu
	}
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
func runRaw(ctx context.Context, fl Options) (Result, error) {
	pairs, err := openPairs(fl.Ports)
	if err != nil {
		return Result{}, err
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
			return Result{}, err
		}
	}
	hists := make([]histogram, fl.Ports)
	counts := make([]int, fl.Ports)
	var res Result
	base := time.Now()
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
func writeAll(ctx context.Context, pairs []*vport.Pair, fl Options, base time.Time) (int, error) {
	var wg sync.WaitGroup
	sent := make([]int, len(pairs))
	errs := make([]error, len(pairs))
	perPortRate := fl.Rate / float64(len(pairs))
	for i, p := range pairs {
		wg.Go(func() {
			sent[i], errs[i] = writeFrames(ctx, p, share(fl.Frames, len(pairs), i), fl.Size, fl.Batch, perPortRate, base)
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
