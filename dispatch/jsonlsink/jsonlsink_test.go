package jsonlsink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    Config
		wantErr string
	}{
		{spec: "stdout", want: Config{}},
		{spec: "file:./frames.jsonl", want: Config{Path: "./frames.jsonl"}},
		{spec: "file:/var/log/serialcbd/frames.jsonl", want: Config{Path: "/var/log/serialcbd/frames.jsonl"}},
		{spec: "file:", wantErr: "missing file path"},
		{spec: "stderr", wantErr: "want file:PATH or stdout"},
		{spec: "frames.jsonl", wantErr: "want file:PATH or stdout"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("default config invalid: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{cfg: Config{Path: "x.jsonl", Fsync: true}},
		{cfg: Config{Fsync: true}, wantErr: "fsync applies to file:PATH"},
		{cfg: Config{Path: "logs/"}, wantErr: "names a directory"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.wantErr)
		}
	}
}

type record struct {
	ID         string `json:"id"`
	Port       string `json:"port"`
	Seq        uint64 `json:"seq"`
	ReceivedAt string `json:"received_at"`
	Payload    string `json:"payload"`
	Encoding   string `json:"encoding"`
}

// decodeLines decodes every line of data strictly.
func decodeLines(t *testing.T, data []byte) []record {
	t.Helper()
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("output does not end with a newline: %q", data)
	}
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d %q: %v", len(recs)+1, sc.Bytes(), err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func frames(port string, from, n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	at := time.Date(2025, 6, 7, 8, 9, 10, 5, time.UTC)
	out := make([]*serialcb.Frame, n)
	for i := range out {
		out[i] = &serialcb.Frame{ID: gen.New(at), Port: port, Seq: uint64(from + i), ReceivedAt: at, Payload: []byte(fmt.Sprintf("line %d\n", from+i))}
	}
	return out
}

func startFile(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRecordLines(t *testing.T) {
	var out bytes.Buffer
	s := NewWriter(&out, nil)
	at := time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("X", -7200))
	batch := []*serialcb.Frame{
		{ID: serialcb.ID{0x01, 0x9a}, Port: "ttyUSB0", Seq: 1, ReceivedAt: at, Payload: []byte("T=21.5 \"ok\"\r")},
		{ID: serialcb.ID{0x01, 0x9b}, Port: "rs485", Seq: 2, ReceivedAt: at, Payload: []byte{0x80, 0x00, 0xff}},
		{ID: serialcb.ID{0x01, 0x9c}, Port: "p", Seq: 3, ReceivedAt: at},
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	recs := decodeLines(t, out.Bytes())
	if len(recs) != len(batch) {
		t.Fatalf("%d lines, want %d", len(recs), len(batch))
	}
	for i, f := range batch {
		r := recs[i]
		if r.ID != f.ID.String() || r.Port != f.Port || r.Seq != f.Seq || r.ReceivedAt != "2025-01-02T05:04:05.000000600Z" {
			t.Errorf("line %d = %+v, want the record of %+v", i, r, f)
		}
		payload := []byte(r.Payload)
		if r.Encoding == "base64" {
			var err error
			if payload, err = base64.StdEncoding.DecodeString(r.Payload); err != nil {
				t.Fatalf("line %d: %v", i, err)
			}
		}
		if !bytes.Equal(payload, f.Payload) {
			t.Errorf("line %d payload = %q, want %q", i, payload, f.Payload)
		}
	}
	if recs[1].Encoding != "base64" || recs[0].Encoding != "" {
		t.Errorf("encodings = %q, %q; want \"\", base64", recs[0].Encoding, recs[1].Encoding)
	}
}

func TestAppendAcrossRestarts(t *testing.T) {
	for _, fsync := range []bool{false, true} {
		t.Run(fmt.Sprintf("fsync=%v", fsync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "frames.jsonl")
			cfg, err := ParseSpec("file:" + path)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Fsync = fsync
			all := frames("p", 1, 5)
			for _, batch := range [][]*serialcb.Frame{all[:3], all[3:]} {
				s := startFile(t, cfg)
				if err := s.Write(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			recs := decodeLines(t, data)
			if len(recs) != len(all) {
				t.Fatalf("%d lines, want %d", len(recs), len(all))
			}
			for i, r := range recs {
				if r.ID != all[i].ID.String() {
					t.Errorf("line %d id %s, want %s", i, r.ID, all[i].ID)
				}
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := os.FileMode(0o644) &^ currentUmask(); fi.Mode().Perm() != want {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), want)
			}
		})
	}
}

func TestConcurrentBatchesDoNotInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "frames.jsonl")
	s := startFile(t, Config{Path: path})
	const writers, batches, size = 8, 40, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				if err := s.Write(t.Context(), frames(fmt.Sprint("port", w), b*size+1, size)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := decodeLines(t, data)
	if len(recs) != writers*batches*size {
		t.Fatalf("%d lines, want %d", len(recs), writers*batches*size)
	}
	// Each run of size lines is one batch: one port, consecutive seqs.
	for i := 0; i < len(recs); i += size {
		first := recs[i]
		if (first.Seq-1)%size != 0 {
			t.Fatalf("line %d starts mid-batch: %+v", i, first)
		}
		for j := 1; j < size; j++ {
			if r := recs[i+j]; r.Port != first.Port || r.Seq != first.Seq+uint64(j) {
				t.Fatalf("batch at line %d interleaved with %+v at line %d", i, r, i+j)
			}
		}
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "missing directory", path: filepath.Join(dir, "nope", "frames.jsonl"), wantErr: "its directory must exist"},
		{name: "directory", path: dir, wantErr: "for appending"},
	}
	if err := mkfifo(fifo); err == nil {
		tests = append(tests, struct{ name, path, wantErr string }{"fifo", fifo, "pipe or socket"})
	} else if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, path, wantErr string }{"read-only directory", filepath.Join(ro, "x.jsonl"), "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Path: tt.path}, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("Start() = %v, want an error naming %q and containing %q", err, tt.path, tt.wantErr)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestWriteErrorsAreRetryable(t *testing.T) {
	t.Run("writer", func(t *testing.T) {
		s := NewWriter(failWriter{syscall.EPIPE}, nil)
		err := s.Write(t.Context(), frames("p", 1, 2))
		if err == nil || dispatch.IsPermanent(err) || !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Write() = %v, want a retryable EPIPE", err)
		}
	})
	t.Run("disk full", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("no /dev/full")
		}
		s := startFile(t, Config{Path: "/dev/full"})
		err := s.Write(t.Context(), frames("p", 1, 2))
		if err == nil || dispatch.IsPermanent(err) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Write() = %v, want a retryable ENOSPC", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		var out bytes.Buffer
		s := NewWriter(&out, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Write(ctx, frames("p", 1, 2)); !errors.Is(err, context.Canceled) || out.Len() != 0 {
			t.Fatalf("Write() = %v and wrote %d bytes, want context.Canceled and nothing", err, out.Len())
		}
	})
}

func TestLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "frames.jsonl")
	s, err := New(Config{Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), frames("p", 1, 1)); err == nil {
		t.Fatal("Write before Start succeeded")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("New or Write created the file before Start")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if err := s.Write(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Write(t.Context(), frames("p", 1, 1)); err == nil {
		t.Fatal("Write after Close succeeded")
	}

	// The stdout sink writes to os.Stdout and never closes it.
	std, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if std.out != os.Stdout {
		t.Fatal("stdout sink does not write to os.Stdout")
	}
	if err := std.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stdout.Stat(); err != nil {
		t.Fatalf("stdout closed: %v", err)
	}
}
