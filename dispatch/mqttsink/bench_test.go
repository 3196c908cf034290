package mqttsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// BenchmarkWrite publishes batches of 100 frames of 64 bytes (JSON records)
// to the shared broker and reports frames/s: Write returns once every frame
// of the batch is acknowledged (QoS 1) or written to the socket (QoS 0).
// Nobody subscribes: the broker acknowledges and drops the messages.
//
//	go test -run '^$' -bench BenchmarkWrite -benchtime 3s ./dispatch/mqttsink/
func BenchmarkWrite(b *testing.B) {
	needMosquitto(b)
	const batchLen = 100
	for _, qos := range []int{0, 1} {
		b.Run(fmt.Sprint("qos", qos), func(b *testing.B) {
			s := newSink(b, "mqtt://"+sharedBroker+"/"+topicPrefix(b)+"/frames", nil, func(c *Config) { c.QoS = qos })
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if !s.Connected() {
				b.Fatal("not connected")
			}
			var gen serialcb.IDGen
			batch := make([]*serialcb.Frame, batchLen)
			payload := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") // 64 bytes
			for i := range batch {
				now := time.Now()
				batch[i] = &serialcb.Frame{ID: gen.New(now), Port: "ttyUSB0", Seq: uint64(i + 1), ReceivedAt: now, Payload: payload}
			}
			ctx := context.Background()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if err := s.Write(ctx, batch); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*batchLen)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
