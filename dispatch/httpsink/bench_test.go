package httpsink

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// benchWrite posts batches of batchSize 64-byte frames, one POST per frame,
// to a loopback server that reads the body and answers 204.
func benchWrite(b *testing.B, batchSize, maxConns int) {
	benchWriteFormat(b, batchSize, maxConns, FormatJSON)
}

// benchWriteFormat posts batches of batchSize 64-byte frames in format.
func benchWriteFormat(b *testing.B, batchSize, maxConns int, format string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg, err := ParseSpec(srv.URL + "/ingest")
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.Format = format
	cfg.Headers = map[string]string{"Authorization": "Bearer token"}
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	var gen serialcb.IDGen
	batch := make([]*serialcb.Frame, batchSize)
	now := time.Now()
	for i := range batch {
		batch[i] = &serialcb.Frame{
			ID: gen.New(now), Port: "ttyUSB0", Seq: uint64(i + 1), ReceivedAt: now,
			Payload: []byte(fmt.Sprintf("T=%08d;H=55.2;P=1013.25;flags=0x1f;crc=ABCD;pad=xxxxxxxxxxxxxxxxx", i))[:64],
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "frames/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/frame")
}

// BenchmarkWriteBatch is the budget: ≥ 10,000 POSTs/s on loopback, one POST
// per frame, with the default 16 connections.
func BenchmarkWriteBatch(b *testing.B) { benchWrite(b, 1000, DefaultMaxConns) }

// BenchmarkWriteOne is one frame per batch, one connection: the latency of a
// single delivery, client and server sharing the CPU.
func BenchmarkWriteOne(b *testing.B) { benchWrite(b, 1, 1) }

// BenchmarkWriteNDJSON posts batches of 500 64-byte frames as one NDJSON
// body each (the ndjson lane default), to a loopback server that reads the
// body and answers 204.
func BenchmarkWriteNDJSON(b *testing.B) { benchWriteFormat(b, 500, DefaultMaxConns, FormatNDJSON) }
