package natssink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// frames makes n frames of port, each with a 64-byte payload and, when
// fields is set, a decoder fields object.
func frames(gen *serialcb.IDGen, port string, n int, fields bool) []*serialcb.Frame {
	out := make([]*serialcb.Frame, n)
	for i := range out {
		now := time.Now()
		f := &serialcb.Frame{ID: gen.New(now), Port: port, Seq: uint64(i + 1), ReceivedAt: now,
			Payload: fmt.Appendf(nil, "%-64s", fmt.Sprintf("%s frame %d", port, i+1))}
		if fields {
			f.Fields = fmt.Appendf(nil, `{"dev":"dev.%d","n":%d}`, i%3, i)
		}
		out[i] = f
	}
	return out
}

// newSink builds and starts a sink for spec with the given settings, closed
// at cleanup.
func newSink(t *testing.T, spec string, edit func(*Config)) *Sink {
	t.Helper()
	cfg, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t *testing.T, s *Sink, batch []*serialcb.Frame) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Write(ctx, batch)
}

// idSet returns the set of the frames' ids as text.
func idSet(fs []*serialcb.Frame) map[string]bool {
	m := make(map[string]bool, len(fs))
	for _, f := range fs {
		m[f.ID.String()] = true
	}
	return m
}

// checkExactlyOnce fails unless msgs hold every id of want exactly once and
// nothing else.
func checkExactlyOnce(t *testing.T, msgs []storedMsg, want map[string]bool) {
	t.Helper()
	seen := make(map[string]int, len(msgs))
	for _, m := range msgs {
		seen[m.id]++
	}
	dupes, extra, missing := 0, 0, 0
	for id, n := range seen {
		if !want[id] {
			extra++
		} else if n > 1 {
			dupes++
		}
	}
	for id := range want {
		if seen[id] == 0 {
			missing++
		}
	}
	if len(msgs) != len(want) || dupes+extra+missing > 0 {
		t.Fatalf("stream holds %d messages for %d frames: %d duplicated, %d unknown, %d missing ids",
			len(msgs), len(want), dupes, extra, missing)
	}
}

// pipeline is the daemon's delivery path: an asyncloop and a dispatcher
// with one sink.
type pipeline struct {
	loop *asyncloop.Loop
	d    *dispatch.Dispatcher
}

func newPipeline(t *testing.T, sink dispatch.Sink, opt dispatch.Options) *pipeline {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{Name: "nats", Sink: sink, Options: opt}}},
		zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{loop: loop, d: d}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pipeline) submit(fs []*serialcb.Frame) []*asyncloop.Future[dispatch.Receipt] {
	futs := make([]*asyncloop.Future[dispatch.Receipt], len(fs))
	for i, f := range fs {
		futs[i] = p.d.Submit(*f)
	}
	return futs
}

// wait fails the test unless every future resolves without error.
func wait(t *testing.T, futs []*asyncloop.Future[dispatch.Receipt]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, f := range futs {
		if _, err := f.Result(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d frames failed, first: %v", len(errs), len(futs), errs[0])
	}
}

// stop drains the dispatcher, stops the loop and closes the sink.
func (p *pipeline) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.d.Drain(ctx); err != nil {
		t.Errorf("drain: %v", err)
	}
	if err := p.loop.Shutdown(ctx); err != nil {
		t.Errorf("loop shutdown: %v", err)
	}
	if err := p.d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestIntegrationDispatcher sends 10,000 frames of two ports through the
// real dispatcher into an operator-made stream: the stream holds exactly
// those frames, once each, on the subjects the template gives, each body
// the frame's JSON record.
func TestIntegrationDispatcher(t *testing.T) {
	url := needNATS(t)
	stream, prefix := names(t)
	c := dial(t, url)
	c.createStream(t, stream, prefix+".>")

	s := newSink(t, url+"/"+prefix+".{port}", nil)
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 500, MaxInflight: 4})
	var gen serialcb.IDGen
	all := append(frames(&gen, "ttyA", 5000, false), frames(&gen, "tty B", 5000, false)...)
	wait(t, p.submit(all))
	p.stop(t)

	msgs := c.read(t, stream)
	checkExactlyOnce(t, msgs, idSet(all))
	byID := make(map[string]*serialcb.Frame, len(all))
	for _, f := range all {
		byID[f.ID.String()] = f
	}
	for _, m := range msgs {
		f := byID[m.id]
		if want := prefix + "." + sanitize(f.Port); m.subject != want {
			t.Fatalf("subject %q, want %q", m.subject, want)
		}
		if want := dispatch.AppendJSON(nil, f); string(m.data) != string(want) {
			t.Fatalf("body %s, want %s", m.data, want)
		}
	}
}

// TestIntegrationRetryDeduplicates writes batches again, as dispatch does
// after a lost acknowledgement: the stream drops every frame it already has
// (same Nats-Msg-Id) and stores only the new ones.
func TestIntegrationRetryDeduplicates(t *testing.T) {
	url := needNATS(t)
	stream, prefix := names(t)
	c := dial(t, url)
	c.createStream(t, stream, prefix+".>")
	s := newSink(t, url+"/"+prefix+".x", nil)

	var gen serialcb.IDGen
	batch := frames(&gen, "p", 100, false)
	for range 3 {
		if err := write(t, s, batch); err != nil {
			t.Fatal(err)
		}
	}
	more := frames(&gen, "p", 50, false)
	if err := write(t, s, append(batch[50:], more...)); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, c.read(t, stream), idSet(append(batch, more...)))
}

// TestIntegrationFormats checks each body format on a real stream, and that
// format "fields" fails a frame without fields permanently while the rest of
// its batch is delivered.
func TestIntegrationFormats(t *testing.T) {
	url := needNATS(t)
	var gen serialcb.IDGen
	for _, format := range []string{FormatJSON, FormatRaw, FormatFields} {
		t.Run(format, func(t *testing.T) {
			stream, prefix := names(t)
			c := dial(t, url)
			c.createStream(t, stream, prefix+".>")
			s := newSink(t, url+"/"+prefix+".{port}.{field.dev}", func(c *Config) { c.Format = format })
			batch := frames(&gen, "p", 10, true)
			bare := frames(&gen, "q", 1, false)[0]
			batch = append(batch, bare)
			err := write(t, s, batch)
			delivered := batch
			if format == FormatFields {
				be, ok := errors.AsType[*dispatch.BatchError](err)
				if !ok || len(be.Errs) != len(batch) {
					t.Fatalf("want a BatchError, got %v", err)
				}
				for i, e := range be.Errs[:10] {
					if e != nil {
						t.Fatalf("frame %d: %v", i, e)
					}
				}
				if last := be.Errs[10]; !dispatch.IsPermanent(last) || !errors.Is(last, ErrNoFields) {
					t.Fatalf("frame without fields: %v, want permanent ErrNoFields", last)
				}
				delivered = batch[:10]
			} else if err != nil {
				t.Fatal(err)
			}
			msgs := c.read(t, stream)
			checkExactlyOnce(t, msgs, idSet(delivered))
			for i, m := range msgs {
				f := delivered[i]
				var want string
				switch format {
				case FormatJSON:
					want = string(dispatch.AppendJSON(nil, f))
				case FormatRaw:
					want = string(f.Payload)
				case FormatFields:
					want = string(f.Fields)
				}
				if string(m.data) != want {
					t.Fatalf("body %q, want %q", m.data, want)
				}
				wantSubj := prefix + "." + f.Port + "." + "unknown"
				if dev, ok := f.Field("dev"); ok {
					wantSubj = prefix + "." + f.Port + "." + strings.ReplaceAll(dev, ".", "_")
				}
				if m.subject != wantSubj {
					t.Fatalf("subject %q, want %q", m.subject, wantSubj)
				}
			}
		})
	}
}

// TestIntegrationNoStream: with no stream for the subject a Write fails
// retryably, with a message that says what to create; once the operator
// creates the stream the same batch goes through.
func TestIntegrationNoStream(t *testing.T) {
	url := needNATS(t)
	stream, prefix := names(t)
	c := dial(t, url)
	s := newSink(t, url+"/"+prefix+".{port}", nil)
	var gen serialcb.IDGen
	batch := frames(&gen, "p", 20, false)

	// The sink found at start that no stream takes the subjects: the whole
	// batch fails at once, before publishing.
	err := write(t, s, batch)
	if !errors.Is(err, ErrNoStream) || dispatch.IsPermanent(err) {
		t.Fatalf("write: %v, want retryable ErrNoStream", err)
	}
	if msg := err.Error(); !strings.Contains(msg, prefix+".*") {
		t.Errorf("message %q does not name the subjects to give the stream", msg)
	}

	c.createStream(t, stream, prefix+".*")
	if err := write(t, s, batch); err != nil {
		t.Fatalf("after creating the stream: %v", err)
	}
	checkExactlyOnce(t, c.read(t, stream), idSet(batch))
}

// TestIntegrationNoStreamSubscriberListening: JetStream mode, no stream on
// the subject, and a plain subscriber listening there. Publishing would
// reach the subscriber, which never acknowledges, and every batch would
// wait ack_timeout for "timeout waiting for ack". Instead Start warns with
// what to do, a Write fails at once (retryably, ErrNoStream, naming the
// subjects) without publishing, and once a stream takes the subjects the
// next Write goes through. The ack timeout is an hour, so a stall would
// show as a hung test, not as a slow pass.
func TestIntegrationNoStreamSubscriberListening(t *testing.T) {
	url := needNATS(t)
	stream, prefix := names(t)
	c := dial(t, url)
	msgs := make(chan *nats.Msg, 100)
	sub, err := c.nc.ChanSubscribe(prefix+".>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	core, logs := observer.New(zapcore.InfoLevel)
	cfg, err := ParseSpec(url + "/" + prefix + ".{port}")
	if err != nil {
		t.Fatal(err)
	}
	cfg.AckTimeout = time.Hour
	s, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 || !strings.Contains(warns[0].Message, "no JetStream stream takes") ||
		!strings.Contains(warns[0].Message, "nats stream add --subjects \""+prefix+".*\"") ||
		!strings.Contains(warns[0].Message, "stream setting") {
		t.Fatalf("warnings at start: %v; want one saying which stream to create", warns)
	}

	var gen serialcb.IDGen
	batch := frames(&gen, "p", 5, false)
	for range 2 {
		err = write(t, s, batch)
		if !errors.Is(err, ErrNoStream) || dispatch.IsPermanent(err) || !strings.Contains(err.Error(), prefix+".*") {
			t.Fatalf("write: %v, want a retryable ErrNoStream naming %s.*", err, prefix)
		}
	}
	// Nothing was published: a ping round trip delivers anything in flight.
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(msgs); n != 0 {
		t.Fatalf("the subscriber got %d messages; the sink must not publish while no stream takes them", n)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings, want the one at start: %v", n, logs.All())
	}

	c.createStream(t, stream, prefix+".>")
	if err := write(t, s, batch); err != nil {
		t.Fatalf("after creating the stream: %v", err)
	}
	checkExactlyOnce(t, c.read(t, stream), idSet(batch))
	if n := logs.FilterMessageSnippet("now takes").Len(); n != 1 {
		t.Errorf("no log line saying the stream now takes the subjects: %v", logs.All())
	}
}

// TestIntegrationCreatesStream: with the stream setting the sink creates
// the stream at Start (subjects from the template, file storage, duplicate
// window), and again when it has been deleted while the sink runs.
func TestIntegrationCreatesStream(t *testing.T) {
	url := needNATS(t)
	stream, prefix := names(t)
	c := dial(t, url)
	c.deleteAtCleanup(t, stream)
	s := newSink(t, url+"/"+prefix+".{port}.{field.dev}.raw", func(c *Config) {
		c.Stream, c.DuplicateWindow = stream, time.Minute
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream not created at start: %v", err)
	}
	cfg := st.CachedInfo().Config
	if len(cfg.Subjects) != 1 || cfg.Subjects[0] != prefix+".*.*.raw" || cfg.Storage != jetstream.FileStorage || cfg.Duplicates != time.Minute {
		t.Fatalf("stream config: subjects %v storage %v duplicates %s", cfg.Subjects, cfg.Storage, cfg.Duplicates)
	}

	var gen serialcb.IDGen
	first := frames(&gen, "p", 30, true)
	if err := write(t, s, first); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, c.read(t, stream), idSet(first))

	// Deleted behind the sink's back: one retryable failure, then the
	// sink creates it again.
	if err := c.js.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	second := frames(&gen, "p", 30, true)
	err = write(t, s, second)
	if be, ok := errors.AsType[*dispatch.BatchError](err); !ok || !errors.Is(be.Errs[0], ErrNoStream) || dispatch.IsPermanent(be.Errs[0]) {
		t.Fatalf("write to a deleted stream: %v, want retryable ErrNoStream", err)
	}
	if err := write(t, s, second); err != nil {
		t.Fatalf("write after the stream was deleted: %v", err)
	}
	checkExactlyOnce(t, c.read(t, stream), idSet(second))
}

// TestIntegrationCore publishes with core NATS (jetstream: false) to a
// subscriber: it gets every frame, with the Nats-Msg-Id header, and no
// stream is involved.
func TestIntegrationCore(t *testing.T) {
	url := needNATS(t)
	_, prefix := names(t)
	c := dial(t, url)
	msgs := make(chan *nats.Msg, 2000)
	sub, err := c.nc.ChanSubscribe(prefix+".>", msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	s := newSink(t, url+"/"+prefix+".{port}", func(c *Config) { c.JetStream = false })
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 100, MaxInflight: 2})
	var gen serialcb.IDGen
	all := frames(&gen, "p", 1000, false)
	wait(t, p.submit(all))
	p.stop(t)

	want := idSet(all)
	timeout := time.After(30 * time.Second)
	for got := 0; got < len(all); got++ {
		select {
		case m := <-msgs:
			id := m.Header.Get(jetstream.MsgIDHeader)
			if !want[id] || m.Subject != prefix+".p" {
				t.Fatalf("unexpected message %q id %q", m.Subject, id)
			}
			delete(want, id)
		case <-timeout:
			t.Fatalf("subscriber got %d of %d frames", got, len(all))
		}
	}
}

// TestIntegrationUnreachable starts the sink against a port where no
// server listens: Start succeeds with one warning, a Write fails at once
// and retryably, and once a server comes up there the frames waiting in
// dispatch are delivered.
func TestIntegrationUnreachable(t *testing.T) {
	port := freePort(t)
	core, logs := observer.New(zapcore.InfoLevel)
	cfg, err := ParseSpec(fmt.Sprintf("nats://127.0.0.1:%d/unreach.{port}", port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Stream = "UNREACH"
	cfg.ConnectTimeout = time.Second
	s, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start with no server: %v", err)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings at start, want 1: %v", n, logs.All())
	}
	var gen serialcb.IDGen
	batch := frames(&gen, "p", 10, false)
	err = write(t, s, batch)
	if !errors.Is(err, ErrNotConnected) || dispatch.IsPermanent(err) {
		t.Fatalf("write with no server: %v, want retryable ErrNotConnected", err)
	}

	// Frames submitted while the server is down are delivered once it is
	// up: the sink has kept connecting.
	p := newPipeline(t, s, dispatch.Options{MaxBatch: 100, Retry: dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	futs := p.submit(batch)
	srv := startServerOn(t, port)
	wait(t, futs)
	p.stop(t)
	checkExactlyOnce(t, dial(t, srv.url()).read(t, "UNREACH"), idSet(batch))
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings, want 1: %v", n, logs.FilterLevelExact(zapcore.WarnLevel).All())
	}
}

// failSignal wraps a sink and signals its first failed Write.
type failSignal struct {
	*Sink
	failed chan struct{} // capacity 1: one pending signal is enough
}

func (f *failSignal) Write(ctx context.Context, batch []*serialcb.Frame) error {
	err := f.Sink.Write(ctx, batch)
	if err != nil {
		select {
		case f.failed <- struct{}{}:
		default:
		}
	}
	return err
}

// TestIntegrationServerRestart kills a private JetStream server (SIGKILL)
// while frames flow through the dispatcher and restarts it on the same port
// and store: every frame ends up in the stream exactly once, including those
// whose acknowledgement the crash lost.
func TestIntegrationServerRestart(t *testing.T) {
	srv := startServer(t)
	s := newSink(t, srv.url()+"/restart.{port}", func(c *Config) {
		c.Stream = "RESTART"
		c.AckTimeout = 2 * time.Second
	})
	fs := &failSignal{Sink: s, failed: make(chan struct{}, 1)}
	p := newPipeline(t, fs, dispatch.Options{MaxBatch: 100, MaxInflight: 2, MaxPending: 20_000,
		Retry: dispatch.RetryPolicy{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}})

	const total, chunk = 6000, 100
	var gen serialcb.IDGen
	all := frames(&gen, "p", total, false)
	futs := make([]*asyncloop.Future[dispatch.Receipt], 0, total)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The producer keeps two chunks in flight: it submits chunk k once
	// chunk k-2 is delivered, so frames are always in flight.
	for k := 0; k*chunk < total; k++ {
		if k >= 2 {
			if _, err := futs[(k-1)*chunk-1].Result(ctx); err != nil {
				t.Fatal(err)
			}
		}
		futs = append(futs, p.submit(all[k*chunk:(k+1)*chunk])...)
		if k*chunk == 1000 {
			// Crash the server with two chunks in flight, wait until a
			// Write has failed (the outage is seen), and restart it.
			select {
			case <-fs.failed:
				t.Fatal("a Write failed before the crash")
			default:
			}
			srv.kill()
			select {
			case <-fs.failed:
			case <-ctx.Done():
				t.Fatal("no Write failed while the server was down")
			}
			srv.start()
		}
	}
	wait(t, futs)
	p.stop(t)
	if st := p.d.Stats(); st.Sinks[0].Retried == 0 {
		t.Errorf("no retry recorded: %+v", st)
	}
	checkExactlyOnce(t, dial(t, srv.url()).read(t, "RESTART"), idSet(all))
}
