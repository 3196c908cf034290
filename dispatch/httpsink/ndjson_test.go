package httpsink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// ndjsonRequest is one request as an NDJSON receiver saw it.
type ndjsonRequest struct {
	header http.Header
	method string
	body   []byte
}

// ndjsonServer records every request and answers with the codes of answer
// in turn (the last one repeats).
func ndjsonServer(t *testing.T, answer ...int) (url string, got func() []ndjsonRequest) {
	t.Helper()
	var mu sync.Mutex
	var reqs []ndjsonRequest
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		n := len(reqs)
		reqs = append(reqs, ndjsonRequest{r.Header.Clone(), r.Method, body})
		mu.Unlock()
		code := http.StatusNoContent
		if len(answer) > 0 {
			code = answer[min(n, len(answer)-1)]
		}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "7")
		}
		w.WriteHeader(code)
		if code >= 400 {
			_, _ = w.Write([]byte("bad batch"))
		}
	})
	return srv.URL + "/ingest", func() []ndjsonRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]ndjsonRequest(nil), reqs...)
	}
}

func ndjsonBatch(n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	base := frame(0, "")
	batch := make([]*serialcb.Frame, n)
	for i := range batch {
		p := "T=" + strconv.Itoa(20+i) + "\n\"q\""
		if i%3 == 2 {
			p = "\x02\xff" + strconv.Itoa(i) // binary: base64
		}
		batch[i] = &serialcb.Frame{ID: gen.New(base.ReceivedAt), Port: "ttyS0", Seq: uint64(i + 1), ReceivedAt: base.ReceivedAt, Payload: []byte(p)}
	}
	return batch
}

func useNDJSON(c *Config) { c.Format = FormatNDJSON }

func TestNDJSONRequest(t *testing.T) {
	url, got := ndjsonServer(t)
	s := start(t, url, func(c *Config) {
		useNDJSON(c)
		c.Headers = map[string]string{"Authorization": "Bearer s3cret"}
	})
	batch := ndjsonBatch(7)
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatalf("Write = %v, want nil", err)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 for the whole batch", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost {
		t.Errorf("method = %s, want POST", r.method)
	}
	for k, want := range map[string]string{
		"Content-Type":       "application/x-ndjson",
		"Idempotency-Key":    batch[0].ID.String() + ":" + batch[6].ID.String(),
		"X-Serialcbd-Frames": "7",
		"Authorization":      "Bearer s3cret",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if !bytes.HasSuffix(r.body, []byte("\n")) {
		t.Errorf("body does not end with a newline: %q", r.body)
	}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	i := 0
	for ; sc.Scan(); i++ {
		if i >= len(batch) {
			t.Fatalf("more lines than frames: %q", sc.Text())
		}
		// Each line is exactly the record of the one-POST-per-frame format.
		if want := string(dispatch.AppendJSON(nil, batch[i])); sc.Text() != want {
			t.Fatalf("line %d = %s, want %s", i, sc.Text(), want)
		}
		var rec record
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("line %d %s: %v", i, sc.Text(), err)
		}
		f := batch[i]
		if rec.ID != f.ID.String() || rec.Seq != f.Seq || rec.Port != "ttyS0" || rec.ReceivedAt != "2025-06-07T08:09:10.123456789Z" {
			t.Fatalf("line %d = %+v, want frame %d", i, rec, f.Seq)
		}
	}
	if i != len(batch) {
		t.Fatalf("%d lines, want %d", i, len(batch))
	}
}

// A retry of the same batch carries the same Idempotency-Key.
func TestNDJSONKeyStableAcrossRetries(t *testing.T) {
	url, got := ndjsonServer(t, http.StatusServiceUnavailable, http.StatusOK)
	s := start(t, url, useNDJSON)
	batch := ndjsonBatch(3)
	if err := s.Write(t.Context(), batch); err == nil {
		t.Fatal("first Write = nil, want the 503")
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatalf("retry = %v, want nil", err)
	}
	reqs := got()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	k0, k1 := reqs[0].header.Get("Idempotency-Key"), reqs[1].header.Get("Idempotency-Key")
	if k0 == "" || k0 != k1 || !bytes.Equal(reqs[0].body, reqs[1].body) {
		t.Fatalf("retry differs: keys %q, %q", k0, k1)
	}
}

func TestNDJSONOutcome(t *testing.T) {
	tests := []struct {
		code      int
		permanent bool
		after     bool
	}{
		{code: http.StatusServiceUnavailable, after: true},
		{code: http.StatusTooManyRequests},
		{code: http.StatusRequestTimeout},
		{code: http.StatusBadRequest, permanent: true},
		{code: http.StatusUnprocessableEntity, permanent: true},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			url, got := ndjsonServer(t, tt.code)
			s := start(t, url, useNDJSON)
			err := s.Write(t.Context(), ndjsonBatch(5))
			if err == nil {
				t.Fatal("Write = nil, want an error")
			}
			if be, ok := errors.AsType[*dispatch.BatchError](err); ok {
				t.Fatalf("Write = %v, a BatchError; want one error for the whole batch", be)
			}
			if dispatch.IsPermanent(err) != tt.permanent {
				t.Fatalf("IsPermanent(%v) = %v, want %v", err, !tt.permanent, tt.permanent)
			}
			if _, ok := errors.AsType[*dispatch.RetryAfterError](err); ok != tt.after {
				t.Fatalf("RetryAfter in %v = %v, want %v", err, ok, tt.after)
			}
			se, ok := errors.AsType[*StatusError](err)
			if !ok || se.Code != tt.code || !strings.Contains(err.Error(), "bad batch") {
				t.Fatalf("error %v: want a StatusError %d with the body", err, tt.code)
			}
			if n := len(got()); n != 1 {
				t.Fatalf("%d requests, want 1", n)
			}
		})
	}
}

func TestNDJSONNetworkErrorIsRetryable(t *testing.T) {
	srv := server(t, func(http.ResponseWriter, *http.Request) {})
	url := srv.URL
	srv.Close()
	s := start(t, url, useNDJSON)
	err := s.Write(t.Context(), ndjsonBatch(4))
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write = %v, want a retryable error", err)
	}
	if _, ok := errors.AsType[*dispatch.BatchError](err); ok {
		t.Fatalf("Write = %v, want one error for the whole batch", err)
	}
}

func TestFormatValidate(t *testing.T) {
	cfg, _ := ParseSpec("http://example.com/in")
	if cfg.Format != FormatJSON {
		t.Fatalf("default format = %q, want %q", cfg.Format, FormatJSON)
	}
	for _, f := range []string{"", FormatJSON, FormatNDJSON} {
		cfg.Format = f
		if err := cfg.Validate(); err != nil {
			t.Errorf("format %q: %v", f, err)
		}
	}
	cfg.Format = "ndjsn"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `format "ndjsn"`) {
		t.Fatalf("Validate() = %v, want a format error", err)
	}
	if ke, ok := errors.AsType[*sinkconf.KeyError](err); !ok || ke.Key != "format" {
		t.Fatalf("Validate() = %v, want a KeyError for format", err)
	}
	cfg.Format = FormatNDJSON
	cfg.Headers = map[string]string{FramesHeader: "1"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "set by the sink") {
		t.Fatalf("Validate() = %v, want the frames header reserved", err)
	}
}
