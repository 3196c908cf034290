package httpsink

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr bool
	}{
		{spec: "http://localhost:8080/ingest"},
		{spec: "https://api.example.com/v1/frames?token=x"},
		{spec: "ftp://example.com", wantErr: true},
		{spec: "example.com/x", wantErr: true},
		{spec: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			cfg, err := ParseSpec(tt.spec)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseSpec(%q) = %+v, want an error", tt.spec, cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.URL != tt.spec || cfg.Timeout != 10*time.Second || cfg.MaxConns != 16 || cfg.TLS != (sinkconf.TLS{}) {
				t.Fatalf("ParseSpec(%q) = %+v, want the defaults", tt.spec, cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("default config invalid: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base, _ := ParseSpec("https://user:hunter2@example.com/in?token=s3cret")
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "ok"},
		{name: "headers", edit: func(c *Config) { c.Headers = map[string]string{"Authorization": "Bearer x", "X-Site": "a"} }},
		{name: "content type", edit: func(c *Config) { c.Headers = map[string]string{"content-type": "application/vnd.x+json"} }},
		{name: "ca file", edit: func(c *Config) { c.TLS.CAFile = "/etc/ca.pem" }},
		{name: "bad url", edit: func(c *Config) { c.URL = "http://a b/%zz" }, wantErr: "url"},
		{name: "scheme", edit: func(c *Config) { c.URL = "ftp://example.com/" }, wantErr: "scheme must be http or https"},
		{name: "no host", edit: func(c *Config) { c.URL = "http:///path" }, wantErr: "missing host"},
		{name: "port only", edit: func(c *Config) { c.URL = "http://:8080/path" }, wantErr: "missing host"},
		{name: "port too high", edit: func(c *Config) { c.URL = "http://u:hunter2@example.com:99999/x" }, wantErr: `port "99999": must be a number between 1 and 65535`},
		{name: "port zero", edit: func(c *Config) { c.URL = "https://example.com:0/x" }, wantErr: `port "0"`},
		{name: "bad host", edit: func(c *Config) { c.URL = "http://-example-/x" }, wantErr: `host "-example-": not a valid host name`},
		{name: "bad escape", edit: func(c *Config) { c.URL = "http://u:hunter2%zz@example.com/x" }, wantErr: "invalid %-escape"},
		{name: "unparsable", edit: func(c *Config) { c.URL = "http://u:hunter2@[::1/x?token=s3cret" }, wantErr: "http sink: url http://u:xxxxx@[::1/x?token=xxxxx: missing ']'"},
		{name: "tls on http", edit: func(c *Config) { c.URL = "http://example.com"; c.TLS.InsecureSkipVerify = true }, wantErr: "need an https URL"},
		{name: "timeout", edit: func(c *Config) { c.Timeout = 0 }, wantErr: "timeout"},
		{name: "max conns", edit: func(c *Config) { c.MaxConns = 0 }, wantErr: "max_conns"},
		{name: "max conns high", edit: func(c *Config) { c.MaxConns = 100000 }, wantErr: "max_conns"},
		{name: "header name", edit: func(c *Config) { c.Headers = map[string]string{"Bad Name": "x"} }, wantErr: "not a valid header name"},
		{name: "reserved header", edit: func(c *Config) { c.Headers = map[string]string{"idempotency-key": "x"} }, wantErr: "set by the sink"},
		{name: "header injection", edit: func(c *Config) { c.Headers = map[string]string{"X-Token": "s3cret\r\nX-Evil: 1"} }, wantErr: "line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("Validate() error shows a secret: %v", err)
			}
		})
	}
}

// frame returns a frame with a fresh id.
func frame(seq uint64, payload string) *serialcb.Frame {
	var gen serialcb.IDGen
	at := time.Date(2025, 6, 7, 8, 9, 10, 123456789, time.UTC)
	return &serialcb.Frame{ID: gen.New(at), Port: "ttyS0", Seq: seq, ReceivedAt: at, Payload: []byte(payload)}
}

// start returns a started sink posting to url, closed at the end of the test.
func start(t *testing.T, url string, edit func(*Config)) *Sink {
	t.Helper()
	cfg, err := ParseSpec(url)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
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

// server starts an httptest server closed at the end of the test.
func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// frameErr returns the only frame error of a one-frame batch's result.
func frameErr(t *testing.T, err error) error {
	t.Helper()
	if err == nil {
		return nil
	}
	var be *dispatch.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 1 {
		t.Fatalf("error = %v, want a *dispatch.BatchError of 1 frame", err)
	}
	if be.Errs[0] == nil {
		t.Fatal("BatchError without a failed frame")
	}
	return be.Errs[0]
}

type record struct {
	ID         string `json:"id"`
	Port       string `json:"port"`
	Seq        uint64 `json:"seq"`
	ReceivedAt string `json:"received_at"`
	Payload    string `json:"payload"`
	Encoding   string `json:"encoding"`
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name     string
		payload  string
		wantText string // payload field as decoded
		encoding string
	}{
		{name: "text", payload: "T=21.5\tH=40%\n\"quoted\" \\ \u2028", wantText: "T=21.5\tH=40%\n\"quoted\" \\ \u2028"},
		{name: "empty", payload: "", wantText: ""},
		{name: "binary", payload: "\x02\xff\x00\xfe\x03", wantText: base64.StdEncoding.EncodeToString([]byte("\x02\xff\x00\xfe\x03")), encoding: "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type got struct {
				header http.Header
				method string
				body   []byte
			}
			reqs := make(chan got, 1)
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				reqs <- got{r.Header.Clone(), r.Method, body}
				w.WriteHeader(http.StatusNoContent)
			})
			s := start(t, srv.URL+"/ingest", func(c *Config) {
				c.Headers = map[string]string{"Authorization": "Bearer s3cret", "x-site": "plant-1"}
			})
			f := frame(42, tt.payload)
			if err := s.Write(t.Context(), []*serialcb.Frame{f}); err != nil {
				t.Fatal(err)
			}
			r := <-reqs
			if r.method != http.MethodPost {
				t.Errorf("method = %s, want POST", r.method)
			}
			for k, want := range map[string]string{
				"Content-Type":    "application/json",
				"Idempotency-Key": f.ID.String(),
				"Authorization":   "Bearer s3cret",
				"X-Site":          "plant-1",
			} {
				if got := r.header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			var rec record
			dec := json.NewDecoder(strings.NewReader(string(r.body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rec); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			want := record{ID: f.ID.String(), Port: "ttyS0", Seq: 42, ReceivedAt: "2025-06-07T08:09:10.123456789Z", Payload: tt.wantText, Encoding: tt.encoding}
			if rec != want {
				t.Fatalf("body = %+v, want %+v", rec, want)
			}
			if tt.encoding == "base64" {
				raw, err := base64.StdEncoding.DecodeString(rec.Payload)
				if err != nil || string(raw) != tt.payload {
					t.Fatalf("base64 payload decodes to %q, %v; want %q", raw, err, tt.payload)
				}
			}
		})
	}
}

func TestStatusOutcome(t *testing.T) {
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	tests := []struct {
		code       int
		retryAfter string
		body       string
		permanent  bool
		after      time.Duration // wanted Retry-After, 0 for none
		afterSlack time.Duration
		wantMsg    string
	}{
		{code: 200}, {code: 201}, {code: 202}, {code: 204},
		{code: 500, body: "boom", wantMsg: "500 Internal Server Error: \"boom\""},
		{code: 502},
		{code: 503, retryAfter: "120", after: 120 * time.Second},
		{code: 503, retryAfter: date, after: 30 * time.Second, afterSlack: 2 * time.Second},
		{code: 408},
		{code: 429, retryAfter: "2", after: 2 * time.Second},
		{code: 429, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", after: 0},
		{code: 429, retryAfter: "soon"},
		{code: 400, body: `{"error":"bad seq"}`, permanent: true, wantMsg: `400 Bad Request: "{\"error\":\"bad seq\"}"`},
		{code: 401, permanent: true},
		{code: 404, body: strings.Repeat("x", 1000), permanent: true, wantMsg: strings.Repeat("x", 200) + "…"},
		{code: 422, permanent: true, wantMsg: "422 Unprocessable Entity"},
		{code: 308, permanent: true, wantMsg: "redirected to https://elsewhere.example/in: point the sink at the final URL"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.code, tt.retryAfter), func(t *testing.T) {
			srv := server(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.code/100 == 3 {
					w.Header().Set("Location", "https://u:pw@elsewhere.example/in?key=k")
				}
				w.WriteHeader(tt.code)
				io.WriteString(w, tt.body)
			})
			s := start(t, srv.URL, nil)
			err := frameErr(t, s.Write(t.Context(), []*serialcb.Frame{frame(1, "x")}))
			if tt.code/100 == 2 {
				if err != nil {
					t.Fatalf("Write() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Write() = nil, want an error")
			}
			if got := dispatch.IsPermanent(err); got != tt.permanent {
				t.Fatalf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
			var ra *dispatch.RetryAfterError
			switch {
			case tt.retryAfter == "" || tt.retryAfter == "soon":
				if errors.As(err, &ra) {
					t.Fatalf("error %v asks to retry after %s, want no hint", err, ra.After)
				}
			case !errors.As(err, &ra):
				t.Fatalf("error %v has no Retry-After, want %s", err, tt.after)
			case ra.After < tt.after-tt.afterSlack || ra.After > tt.after+tt.afterSlack:
				t.Fatalf("retry after %s, want %s ± %s", ra.After, tt.after, tt.afterSlack)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tt.code {
				t.Fatalf("error %v: want a *StatusError with code %d", err, tt.code)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not contain %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "key=k") {
				t.Fatalf("error %q shows a credential", err)
			}
		})
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	release := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client leave
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	s := start(t, srv.URL, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	begin := time.Now()
	err := frameErr(t, s.Write(t.Context(), []*serialcb.Frame{frame(1, "x")}))
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write() = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Errorf("error %q does not say it timed out", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("Write took %s with a 100ms timeout", d)
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	s := start(t, "http://"+addr+"/x?token=s3cret", nil)
	err = frameErr(t, s.Write(t.Context(), []*serialcb.Frame{frame(1, "x")}))
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write() = %v, want a retryable error", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %q shows the URL's query", err)
	}
}

func TestCancelledIsRetryable(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {})
	s := start(t, srv.URL, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	batch := []*serialcb.Frame{frame(1, "a"), frame(2, "b"), frame(3, "c")}
	var be *dispatch.BatchError
	if err := s.Write(ctx, batch); !errors.As(err, &be) {
		t.Fatalf("Write() = %v, want a *dispatch.BatchError", err)
	}
	for i, err := range be.Errs {
		if err == nil || dispatch.IsPermanent(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("frame %d: error %v, want a retryable context.Canceled", i, err)
		}
	}
}

func TestMixedBatch(t *testing.T) {
	// The answer depends on the payload: "ok", "retry", "reject".
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		var rec record
		if err := json.NewDecoder(r.Body).Decode(&rec); err != nil {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		switch rec.Payload {
		case "retry":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "reject":
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
	})
	s := start(t, srv.URL, func(c *Config) { c.MaxConns = 4 })
	kinds := []string{"ok", "retry", "ok", "reject", "ok", "ok", "retry", "reject", "ok", "ok", "ok", "reject"}
	batch := make([]*serialcb.Frame, len(kinds))
	for i, k := range kinds {
		batch[i] = frame(uint64(i+1), k)
	}
	var be *dispatch.BatchError
	if err := s.Write(t.Context(), batch); !errors.As(err, &be) || len(be.Errs) != len(batch) {
		t.Fatalf("Write() = %v, want a *dispatch.BatchError of %d frames", err, len(batch))
	}
	for i, err := range be.Errs {
		switch kinds[i] {
		case "ok":
			if err != nil {
				t.Errorf("frame %d: error %v, want nil", i, err)
			}
		case "retry":
			if err == nil || dispatch.IsPermanent(err) {
				t.Errorf("frame %d: error %v, want retryable", i, err)
			}
		case "reject":
			if !dispatch.IsPermanent(err) {
				t.Errorf("frame %d: error %v, want permanent", i, err)
			}
		}
	}
}

func TestConcurrencyAndConnectionReuse(t *testing.T) {
	const maxConns = 4
	var inFlight, peak, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		inFlight.Add(-1)
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, strings.Repeat("e", 10000)) // must be drained
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	for _, path := range []string{"/ok", "/fail"} {
		conns.Store(0)
		peak.Store(0)
		s := start(t, srv.URL+path, func(c *Config) { c.MaxConns = maxConns })
		var wg sync.WaitGroup
		for w := range 3 { // concurrent batches share the bound
			wg.Go(func() {
				batch := make([]*serialcb.Frame, 100)
				for i := range batch {
					batch[i] = frame(uint64(w*100+i), "x")
				}
				err := s.Write(t.Context(), batch)
				if (path == "/ok") != (err == nil) {
					t.Errorf("%s: Write() = %v", path, err)
				}
			})
		}
		wg.Wait()
		s.Close()
		if p := peak.Load(); p > maxConns {
			t.Errorf("%s: %d requests in flight, want at most %d", path, p, maxConns)
		}
		// +1: Start's reachability probe opens one connection and closes it.
		if c := conns.Load(); c > maxConns+1 {
			t.Errorf("%s: %d connections for 300 requests, want at most %d (reused) + 1 (start probe)", path, c, maxConns)
		}
	}
}

// writeCounter counts the writes to the connections a transport dials.
type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestRequestIsOneWrite checks that a POST of one frame leaves in one write,
// headers and body together: with two, each POST is two TCP segments and
// wakes the receiver twice. net/http flushes the headers on their own
// unless it knows the body is in memory. (An NDJSON batch's pooled body
// takes two writes, once per batch.)
func TestRequestIsOneWrite(t *testing.T) {
	var posts atomic.Int64
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		posts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	s := start(t, srv.URL+"/ingest", nil)
	var writes atomic.Int64
	dial := s.transport.DialContext
	s.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{c, &writes}, nil
	}
	batch := make([]*serialcb.Frame, 20)
	for i := range batch {
		batch[i] = frame(uint64(i), "T=21.5")
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if p, w := posts.Load(), writes.Load(); p != 20 || w != p {
		t.Errorf("%d POSTs took %d writes, want 20 POSTs in one write each", p, w)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		tls         sinkconf.TLS
		wantStart   string // error of Start
		wantWriteOK bool
	}{
		{name: "unknown CA", tls: sinkconf.TLS{}},
		{name: "ca file", tls: sinkconf.TLS{CAFile: caFile}, wantWriteOK: true},
		{name: "insecure", tls: sinkconf.TLS{InsecureSkipVerify: true}, wantWriteOK: true},
		{name: "missing ca file", tls: sinkconf.TLS{CAFile: filepath.Join(dir, "nope.pem")}, wantStart: "read tls ca_file"},
		{name: "not PEM", tls: sinkconf.TLS{CAFile: notPEM}, wantStart: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := ParseSpec(srv.URL)
			cfg.TLS = tt.tls
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Start(t.Context())
			if tt.wantStart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantStart) {
					t.Fatalf("Start() = %v, want it to contain %q", err, tt.wantStart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = s.Write(t.Context(), []*serialcb.Frame{frame(1, "x")})
			if tt.wantWriteOK != (err == nil) {
				t.Fatalf("Write() = %v, want success %v", err, tt.wantWriteOK)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	srv := server(t, func(http.ResponseWriter, *http.Request) {})
	cfg, _ := ParseSpec(srv.URL)
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := []*serialcb.Frame{frame(1, "x")}
	if err := s.Write(t.Context(), batch); err == nil {
		t.Fatal("Write before Start succeeded")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Write(t.Context(), batch); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"99999999999", 0, false},
		{"Wed, 01 Jan 2025 00:01:00 GMT", time.Minute, true},
		{"Tuesday, 31-Dec-24 23:00:00 GMT", 0, true}, // past: now
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
