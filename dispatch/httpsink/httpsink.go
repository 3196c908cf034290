// Package httpsink delivers frames by HTTP POST. With the default format
// "json" each frame is one POST whose body is the frame's JSON record
// (dispatch.AppendJSON) and whose Idempotency-Key header is the frame's id,
// so that a receiver can drop the duplicates that at-least-once delivery
// produces. With format "ndjson" a whole batch is one POST whose body holds
// one record per line, keyed by the batch's first and last frame ids.
//
// The answer decides the outcome: 2xx delivered; 408, 429 and 5xx retryable
// (honouring Retry-After); 3xx and other 4xx permanent; network errors and
// timeouts retryable. Retries themselves are left to dispatch.
package httpsink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Defaults applied by ParseSpec.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultMaxConns = 16
)

// Body formats (Config.Format).
const (
	// FormatJSON posts each frame on its own: body = one JSON record.
	FormatJSON = "json"
	// FormatNDJSON posts each batch as one request: body = one JSON record
	// per line, Content-Type application/x-ndjson.
	FormatNDJSON = "ndjson"
)

// FramesHeader is the header of an NDJSON request that gives the number of
// records (lines) in its body.
const FramesHeader = "X-Serialcbd-Frames"

const (
	// maxConnsLimit bounds MaxConns: each connection may be a goroutine
	// pair and a socket, and one POST per frame gains nothing beyond this.
	maxConnsLimit = 1024
	// snippetLen is how much of an error answer's body goes in the error.
	snippetLen = 200
	// drainLimit is how much of an answer's body is read so that the
	// connection can be reused; past it, closing the connection is cheaper.
	drainLimit = 64 << 10
	// maxPooledBody is the largest NDJSON body buffer worth pooling; past
	// it (an oversize batch) it is left to the garbage collector.
	maxPooledBody = 4 << 20
)

// Config configures the HTTP sink.
type Config struct {
	// URL receives the POSTs; the whole sink spec. Its user info and query
	// are never written to logs or errors.
	URL string `yaml:"-"`
	// Timeout bounds one request: connecting, sending, and reading the
	// answer. A request that times out is retried.
	Timeout time.Duration `yaml:"timeout"`
	// Headers are added to every request, e.g. Authorization. Their values
	// are secrets as far as this sink is concerned: never logged.
	Headers map[string]string `yaml:"headers"`
	// MaxConns bounds the connections to the endpoint, hence the POSTs in
	// flight across all batches.
	MaxConns int `yaml:"max_conns"`
	// TLS applies to https URLs.
	TLS sinkconf.TLS `yaml:"tls"`
	// Format is the body format: FormatJSON (one POST per frame, the
	// default; "" means the same) or FormatNDJSON (one POST per batch).
	Format string `yaml:"format"`
}

// ndjson reports whether the sink posts whole batches.
func (c Config) ndjson() bool { return c.Format == FormatNDJSON }

// ParseSpec returns the default Config for a spec "http://…" or "https://…".
func ParseSpec(spec string) (Config, error) {
	if !strings.HasPrefix(spec, "http://") && !strings.HasPrefix(spec, "https://") {
		return Config{}, fmt.Errorf("http sink spec %q: want an http:// or https:// URL", sinkconf.Redact(spec))
	}
	return Config{URL: spec, Timeout: DefaultTimeout, MaxConns: DefaultMaxConns, Format: FormatJSON}, nil
}

// headers set by the sink itself, which configured headers must not replace.
var reservedHeaders = []string{"Content-Length", "Host", "Idempotency-Key", "Transfer-Encoding", FramesHeader}

// Validate checks the configuration without I/O (the TLS files are read by
// Start).
func (c Config) Validate() error {
	var errs []error
	u, err := sinkconf.ParseURL(c.URL)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if herr := sinkconf.CheckHostPort(u); herr != nil {
			err = fmt.Errorf("url %s: %w", safeURL(u), herr)
		}
	}
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("http sink: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("http sink: url %s: scheme must be http or https", safeURL(u)))
	case u.Scheme == "http" && c.TLS.IsSet():
		errs = append(errs, sinkconf.KeyErrorf("tls", "http sink: url %s: tls settings need an https URL", safeURL(u)))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("http sink: %w", err))
	}
	switch c.Format {
	case "", FormatJSON, FormatNDJSON:
	default:
		errs = append(errs, sinkconf.KeyErrorf("format", "http sink: format %q: must be %s (one POST per frame) or %s (one POST per batch)", c.Format, FormatJSON, FormatNDJSON))
	}
	if c.Timeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("timeout", "http sink: timeout %s: must be positive, e.g. 10s", c.Timeout))
	}
	if c.MaxConns < 1 || c.MaxConns > maxConnsLimit {
		errs = append(errs, sinkconf.KeyErrorf("max_conns", "http sink: max_conns %d: must be between 1 and %d", c.MaxConns, maxConnsLimit))
	}
	for name, value := range c.Headers {
		if !validHeaderName(name) {
			errs = append(errs, sinkconf.KeyErrorf("headers", "http sink: header %q: not a valid header name", name))
			continue
		}
		for _, r := range reservedHeaders {
			if strings.EqualFold(name, r) {
				errs = append(errs, sinkconf.KeyErrorf("headers", "http sink: header %q is set by the sink: remove it", name))
			}
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			// The value is not quoted: it may be a secret.
			errs = append(errs, sinkconf.KeyErrorf("headers", "http sink: header %q: value contains a line break or NUL", name))
		}
	}
	return errors.Join(errs...)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// safeURL is the URL as errors and logs show it: without user info and
// query, either of which may hold a credential.
func safeURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// Sink POSTs frames to one URL. Write is safe for concurrent use.
type Sink struct {
	cfg     Config
	log     *zap.Logger
	url     *url.URL
	safeURL string
	header  http.Header // configured headers, canonical; copied per request
	// sem holds a token per request in flight, across concurrent Writes,
	// so that requests queue here (before their timeout starts) rather
	// than inside the transport waiting for a connection.
	sem chan struct{}

	batches sync.Pool // *body, NDJSON bodies

	mu        sync.Mutex // guards client, transport, closed
	client    *http.Client
	transport *http.Transport
	closed    bool
}

var _ dispatch.Sink = (*Sink)(nil)

// New returns a sink for cfg. It does no I/O; Start reads the TLS files.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	u, _ := url.Parse(cfg.URL) // validated above
	h := make(http.Header, len(cfg.Headers)+1)
	if cfg.ndjson() {
		h.Set("Content-Type", "application/x-ndjson")
	} else {
		h.Set("Content-Type", "application/json")
	}
	for k, v := range cfg.Headers {
		h.Set(k, v)
	}
	s := &Sink{
		cfg:     cfg,
		log:     log,
		url:     u,
		safeURL: safeURL(u),
		header:  h,
		sem:     make(chan struct{}, cfg.MaxConns),
	}
	s.batches.New = func() any { return &body{pool: &s.batches} }
	return s, nil
}

// Start loads the TLS files, if any, and builds the HTTP client. It does not
// contact the endpoint: an endpoint that is down at start is a retryable
// condition of the first Write, not a failed start.
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("http sink: start after close")
	}
	if s.client != nil {
		return nil
	}
	// Without server_name, the transport checks the certificate against
	// the URL's host.
	tlsCfg, err := s.cfg.TLS.Config("")
	if err != nil {
		return fmt.Errorf("http sink: %w", err)
	}
	dialTimeout := min(s.cfg.Timeout, 30*time.Second)
	s.transport = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   dialTimeout,
		ForceAttemptHTTP2:     true,
		MaxConnsPerHost:       s.cfg.MaxConns,
		MaxIdleConns:          s.cfg.MaxConns,
		MaxIdleConnsPerHost:   s.cfg.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	s.client = &http.Client{
		Transport: s.transport,
		// A redirect of a POST is a configuration to fix, not to follow:
		// 301-303 would turn it into a body-less GET.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.log.Debug("http sink started", zap.String("url", s.safeURL), zap.Int("max_conns", s.cfg.MaxConns))
	s.probe(ctx, dialTimeout)
	return nil
}

// probe tells the operator at start, in one line, that the endpoint does
// not answer. It is not an error: the daemon carries on, and frames wait in
// the sink's queue and are retried until the endpoint answers.
func (s *Sink) probe(ctx context.Context, timeout time.Duration) {
	req := &http.Request{URL: s.url}
	if proxy, err := http.ProxyFromEnvironment(req); err != nil || proxy != nil {
		return // the endpoint is reached through a proxy: dialling it says nothing
	}
	host := s.url.Host
	if s.url.Port() == "" {
		host = net.JoinHostPort(s.url.Hostname(), map[string]string{"http": "80", "https": "443"}[s.url.Scheme])
	}
	dctx, cancel := context.WithTimeout(ctx, min(timeout, 2*time.Second))
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", host)
	if err != nil {
		s.log.Warn("HTTP sink unreachable at start; starting anyway: frames wait in the sink's queue and are retried until it answers",
			zap.String("url", s.safeURL), zap.Error(err))
		return
	}
	_ = conn.Close()
}

// Write delivers the batch. With FormatJSON it POSTs every frame, up to
// MaxConns at a time, and returns nil when all were delivered, otherwise a
// *dispatch.BatchError with each frame's classified error. With FormatNDJSON
// it POSTs the whole batch once, and the classified outcome (nil or an
// error) applies to every frame.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	client, closed := s.client, s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("http sink: write after close")
	}
	if client == nil {
		return errors.New("http sink: write before start")
	}
	if s.cfg.ndjson() {
		return s.postBatch(ctx, client, batch)
	}

	errs := make([]error, len(batch))
	var failed atomic.Bool
	var next atomic.Int64
	if workers := min(len(batch), s.cfg.MaxConns); workers == 1 {
		failed.Store(s.postAll(ctx, client, batch, errs, &next))
	} else {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				if s.postAll(ctx, client, batch, errs, &next) {
					failed.Store(true)
				}
			})
		}
		wg.Wait()
	}
	if failed.Load() {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

// postAll posts the frames whose index it takes from next until none is
// left, recording each outcome in errs, and reports whether any failed.
func (s *Sink) postAll(ctx context.Context, client *http.Client, batch []*serialcb.Frame, errs []error, next *atomic.Int64) bool {
	failed := false
	for {
		i := int(next.Add(1) - 1)
		if i >= len(batch) {
			return failed
		}
		if err := s.post(ctx, client, batch[i]); err != nil {
			errs[i] = err
			failed = true
		}
	}
}

// post sends one frame and classifies the outcome.
//
// The body is a fresh buffer behind a *bytes.Reader, the one kind of body
// net/http writes in the same write as the headers: with any other reader
// it flushes the headers first, in case the body blocks, and every POST
// costs two writes, two TCP segments and two wake-ups of the receiver.
// The transport may still read the body after Do returns (an answer can
// come before the whole body went out), so the buffer is left to the
// garbage collector rather than reused.
func (s *Sink) post(ctx context.Context, client *http.Client, f *serialcb.Frame) error {
	buf := dispatch.AppendJSON(make([]byte, 0, dispatch.BodySize(f, dispatch.FormatJSON)), f)
	var id [36]byte
	idText, _ := f.ID.AppendText(id[:0])
	open := func() io.ReadCloser { return io.NopCloser(bytes.NewReader(buf)) }
	return s.send(ctx, client, len(buf), open, string(idText), 0)
}

// postBatch sends the whole batch as one NDJSON body and classifies the
// outcome, which applies to every frame. The Idempotency-Key is the first
// and the last frame ids: a retry of the batch (which fails or succeeds as
// a whole, so dispatch retries it unchanged) carries the same key.
func (s *Sink) postBatch(ctx context.Context, client *http.Client, batch []*serialcb.Frame) error {
	b := s.batches.Get().(*body)
	b.refs.Store(1) // postBatch's reference; each reader adds one
	defer b.release()
	buf := b.buf[:0]
	for _, f := range batch {
		buf = dispatch.AppendJSON(buf, f)
		buf = append(buf, '\n')
	}
	b.buf = buf
	var key [73]byte
	k, _ := batch[0].ID.AppendText(key[:0])
	k = append(k, ':')
	k, _ = batch[len(batch)-1].ID.AppendText(k)
	return s.send(ctx, client, len(b.buf), b.reader, string(k), len(batch))
}

// send POSTs a body of size bytes, read through the readers open returns,
// with the given Idempotency-Key and, when frames > 0, the FramesHeader, and
// classifies the outcome. open is called once per attempt (the transport
// may retry on a stale keep-alive connection) and only while send runs.
func (s *Sink) send(ctx context.Context, client *http.Client, size int, open func() io.ReadCloser, key string, frames int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("POST %s: %w", s.safeURL, err)
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("POST %s: %w", s.safeURL, ctx.Err())
	}
	defer func() { <-s.sem }()

	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()

	h := make(http.Header, len(s.header)+2)
	for k, v := range s.header {
		h[k] = v // values are never modified: sharing the slices is safe
	}
	h["Idempotency-Key"] = []string{key}
	if frames > 0 {
		h[FramesHeader] = []string{strconv.Itoa(frames)}
	}

	req := (&http.Request{
		Method:        http.MethodPost,
		URL:           s.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          open(),
		GetBody:       func() (io.ReadCloser, error) { return open(), nil },
		ContentLength: int64(size),
		Host:          s.url.Host,
	}).WithContext(ctx)

	resp, err := client.Do(req)
	if err != nil {
		return s.netError(ctx, err)
	}
	return s.outcome(resp)
}

// netError turns a failed round trip into a retryable error that does not
// show the URL's query (url.Error would).
func (s *Sink) netError(ctx context.Context, err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("POST %s: no answer within %s: %w", s.safeURL, s.cfg.Timeout, err)
	}
	return fmt.Errorf("POST %s: %w", s.safeURL, err)
}

// outcome classifies an answer and releases its body so that the
// connection can be reused.
func (s *Sink) outcome(resp *http.Response) error {
	defer resp.Body.Close()
	code := resp.StatusCode
	if code >= 200 && code <= 299 {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		return nil
	}
	var snip [snippetLen]byte
	n, _ := io.ReadFull(resp.Body, snip[:])
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	err := &StatusError{Code: code, Status: resp.Status, Body: snippet(snip[:n]), URL: s.safeURL}
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500 && code <= 599:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return dispatch.RetryAfter(err, d)
		}
		return err
	case code >= 300 && code <= 499:
		if loc := resp.Header.Get("Location"); code < 400 && loc != "" {
			err.Body = "redirected to " + redactedLocation(loc) + ": point the sink at the final URL"
		}
		return dispatch.Permanent(err)
	default:
		// 1xx as a final answer or a code outside the standard range: the
		// server is confused; retrying may find it sane again.
		return err
	}
}

// StatusError reports an answer that was not 2xx.
type StatusError struct {
	Code   int    // status code
	Status string // status line, e.g. "503 Service Unavailable"
	Body   string // the start of the answer's body, for the error message
	URL    string // the endpoint without user info and query
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("POST %s: %s", e.URL, e.Status)
	}
	return fmt.Sprintf("POST %s: %s: %s", e.URL, e.Status, e.Body)
}

// snippet makes the start of a body printable on one line.
func snippet(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	q := strconv.Quote(s)
	if len(b) == snippetLen {
		// The body goes on: mark the cut.
		q = q[:len(q)-1] + "…\""
	}
	return q
}

func redactedLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return "an unparsable Location"
	}
	return safeURL(u)
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date.
// A date in the past means "now".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Close drops idle connections. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// body is a pooled NDJSON request buffer. A batch's body is large, so
// reusing it saves more than the extra write of the headers (see post)
// costs, once per batch. The transport may read and close a
// request body after Do has returned, and may ask GetBody for a fresh copy to
// retry on a stale keep-alive connection (Idempotency-Key makes a POST
// replayable), so the buffer goes back to the pool only once the caller and
// every reader handed to the transport are done with it.
type body struct {
	buf  []byte
	refs atomic.Int32
	pool *sync.Pool
}

// reader returns a new reference to b for the transport.
func (b *body) reader() io.ReadCloser {
	b.refs.Add(1)
	r := &bodyReader{b: b}
	r.Reset(b.buf)
	return r
}

func (b *body) release() {
	if b.refs.Add(-1) == 0 {
		if cap(b.buf) > maxPooledBody {
			b.buf = nil // an oversize frame or batch: do not pin its buffer
		}
		b.pool.Put(b)
	}
}

// bodyReader is one reader of a body; closing it (once, however often the
// transport calls Close) drops its reference.
type bodyReader struct {
	bytes.Reader
	b      *body
	closed atomic.Bool
}

func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.b.release()
	}
	return nil
}
