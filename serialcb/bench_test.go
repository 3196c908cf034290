//go:build linux

package serialcb

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// line64 is a 64-byte line, delimiter included.
var line64 = append(bytes.Repeat([]byte("0123456789abcdef"), 4)[:63], '\n')

// BenchmarkCutterLines measures line framing throughput (budget: ≥ 200 MB/s,
// 0 allocs/op) on 64-byte lines fed in read-sized chunks that do not align
// with lines, so a partial line is carried over every Feed.
func BenchmarkCutterLines(b *testing.B) {
	stream := bytes.Repeat(line64, 1024) // 64 KiB
	const chunk = 4093                   // prime: lines straddle every chunk edge
	c := NewCutter(Lines(nil), DefaultMaxFrame)
	frames := 0
	emit := func([]byte) { frames++ }
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for p := stream; len(p) > 0; {
			n := min(chunk, len(p))
			c.Feed(p[:n], emit, nil)
			p = p[n:]
		}
	}
	if frames != 1024*b.N {
		b.Fatalf("%d frames, want %d", frames, 1024*b.N)
	}
}

// BenchmarkReaderVport measures frames/s end to end through a real pty:
// device writes, kernel, blocking reads, framing, Frame with ID and payload
// copy, callback. The device writes 256 frames per system call.
func BenchmarkReaderVport(b *testing.B) {
	pair, err := vport.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer pair.Close()
	r, err := NewReader(PortConfig{Path: pair.Path(), Baud: 115200}, nil)
	if err != nil {
		b.Fatal(err)
	}
	batch := bytes.Repeat(line64, 256)
	got := make(chan struct{}, 1)
	want := uint64(b.N)
	count := uint64(0)
	onFrame := func(f Frame) {
		count++
		if count == want {
			got <- struct{}{}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, onFrame) }()
	defer func() {
		cancel()
		<-done
	}()

	b.SetBytes(int64(len(line64)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	wrote := make(chan error, 1)
	go func() {
		left := b.N
		for left > 0 {
			n := min(left, 256)
			if _, err := pair.Write(batch[:n*len(line64)]); err != nil {
				wrote <- err
				return
			}
			left -= n
		}
		wrote <- nil
	}()
	<-got
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-wrote; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "frames/s")
}
