package pgsink

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

// testURL is the shared test server: trust auth, database test.
const testURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// needPostgres connects to the test server as an administrator, or skips
// the test when there is none (fails it in CI, which must have one).
func needPostgres(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testURL)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL not reachable at %s: %v (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", testURL, err)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	tb.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// uniqueName returns prefix_ and a random suffix, for tables and
// application names that no other test shares.
func uniqueName(prefix string) string {
	var b [6]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// newTable returns a table name that is dropped when the test ends.
func newTable(tb testing.TB, admin *pgx.Conn) string {
	tb.Helper()
	table := uniqueName("frames_test")
	tb.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+table); err != nil {
			tb.Errorf("drop table %s: %v", table, err)
		}
	})
	return table
}

// sinkURL is testURL with the given application_name.
func sinkURL(app string) string { return testURL + "&application_name=" + app }

// startSink starts a sink on the test server writing to table; its
// connections carry application name app. It is closed when the test ends.
func startSink(tb testing.TB, url, table string, log *zap.Logger) *Sink {
	tb.Helper()
	cfg, err := ParseSpec(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Table = table
	s, err := New(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// makeFrames returns n frames on two ports: binary payloads of 0-199
// bytes (NULs and invalid UTF-8 included), Fields on every other frame,
// and times with nanosecond digits.
func makeFrames(n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	base := time.Now().UTC()
	seq := map[string]uint64{}
	frames := make([]*serialcb.Frame, n)
	for i := range frames {
		port := []string{"ttyUSB0", "rs485-ä"}[i%2]
		seq[port]++
		at := base.Add(time.Duration(i)*time.Microsecond + time.Duration(rand.IntN(1000)))
		p := make([]byte, rand.IntN(200))
		for j := range p {
			p[j] = byte(rand.Uint32())
		}
		if i%7 == 0 {
			p = nil // an empty frame
		}
		f := &serialcb.Frame{ID: gen.New(at), Port: port, Seq: seq[port], ReceivedAt: at, Payload: p}
		if i%2 == 0 {
			f.Fields = fmt.Appendf(nil, `{"n":%d,"t":%.2f,"s":"v\u00e9 %d","ok":true}`, i, float64(i)/3, i)
		}
		frames[i] = f
	}
	return frames
}

// writeAll writes frames in batches of the given sizes (cycling), each
// until it succeeds, and fails the test on a permanent error.
func writeAll(tb testing.TB, s *Sink, frames []*serialcb.Frame, sizes ...int) {
	tb.Helper()
	for i, k := 0, 0; i < len(frames); k++ {
		n := min(sizes[k%len(sizes)], len(frames)-i)
		if err := s.Write(context.Background(), frames[i:i+n]); err != nil {
			tb.Fatalf("write frames %d-%d: %v", i, i+n, err)
		}
		i += n
	}
}

// checkTable asserts that table holds exactly frames, once each, with
// exact bytes, port, seq and times.
func checkTable(tb testing.TB, admin *pgx.Conn, table string, frames []*serialcb.Frame) {
	tb.Helper()
	rows, err := admin.Query(context.Background(), "SELECT id, port, seq, received_at, received_ns, payload, fields FROM "+table)
	if err != nil {
		tb.Fatal(err)
	}
	type row struct {
		port    string
		seq     int64
		at      time.Time
		ns      int64
		payload []byte
		fields  []byte
	}
	got := map[serialcb.ID]row{}
	for rows.Next() {
		var id [16]byte
		var r row
		if err := rows.Scan(&id, &r.port, &r.seq, &r.at, &r.ns, &r.payload, &r.fields); err != nil {
			tb.Fatal(err)
		}
		if _, dup := got[id]; dup {
			tb.Fatalf("id %s stored twice", serialcb.ID(id))
		}
		got[id] = r
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(got) != len(frames) {
		tb.Fatalf("table has %d rows, want %d", len(got), len(frames))
	}
	bad := 0
	for _, f := range frames {
		r, ok := got[f.ID]
		var problem string
		switch {
		case !ok:
			problem = "missing"
		case r.port != f.Port || r.seq != int64(f.Seq):
			problem = fmt.Sprintf("port/seq %q/%d, want %q/%d", r.port, r.seq, f.Port, f.Seq)
		case !bytes.Equal(r.payload, f.Payload) || r.payload == nil:
			problem = fmt.Sprintf("payload %x, want %x", r.payload, f.Payload)
		case r.ns != f.ReceivedAt.UnixNano():
			problem = fmt.Sprintf("received_ns %d, want %d", r.ns, f.ReceivedAt.UnixNano())
		case !r.at.Equal(f.ReceivedAt.Truncate(time.Microsecond)):
			problem = fmt.Sprintf("received_at %s, want %s", r.at, f.ReceivedAt)
		case !sameJSON(r.fields, f.Fields):
			problem = fmt.Sprintf("fields %s, want %s", r.fields, f.Fields)
		}
		if problem != "" {
			tb.Errorf("frame %s: %s", f.ID, problem)
			if bad++; bad > 5 {
				tb.FailNow()
			}
		}
	}
}

// sameJSON compares a stored jsonb (normalised by the server) with the
// frame's Fields; both nil means no fields.
func sameJSON(stored, fields []byte) bool {
	if stored == nil || fields == nil {
		return stored == nil && fields == nil
	}
	var a, b any
	return json.Unmarshal(stored, &a) == nil && json.Unmarshal(fields, &b) == nil && reflect.DeepEqual(a, b)
}

func count(tb testing.TB, admin *pgx.Conn, table string) int {
	tb.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// killBackends ends the sink's server processes, as a server restart or a
// network cut would, and returns how many it ended. It waits (up to 5s,
// PostgreSQL 14+) until they have exited.
func killBackends(tb testing.TB, admin *pgx.Conn, app string) int {
	tb.Helper()
	var n int
	err := admin.QueryRow(context.Background(),
		"SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = $1) t", app).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestIntegrationWriteExactlyOnce: 10,000 frames, with and without
// Fields, binary and empty payloads, written in batches of 1 to 1,000,
// arrive once each with exact bytes, port, seq and nanosecond time; the
// table and index exist; rewriting batches (dispatch's retry) adds no rows.
func TestIntegrationWriteExactlyOnce(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	s := startSink(t, sinkURL(uniqueName("pgsink")), table, zaptest.NewLogger(t))

	frames := makeFrames(10_000)
	writeAll(t, s, frames, 1, 1000, 37, 500, 2, 100, 999)
	checkTable(t, admin, table, frames)

	var indexed bool
	if err := admin.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%(port, seq)')", table).Scan(&indexed); err != nil {
		t.Fatal(err)
	}
	if !indexed {
		t.Error("no (port, seq) index")
	}

	t.Run("retried batches add no rows", func(t *testing.T) {
		writeAll(t, s, frames[:1000], 1000)            // the same batch again
		writeAll(t, s, frames[4000:6000], 3, 250, 700) // split differently
		mixed := append(makeFrames(10), frames[10:20]...)
		writeAll(t, s, mixed, len(mixed)) // new and known frames together
		checkTable(t, admin, table, append(frames, mixed[:10]...))
	})
}

// TestIntegrationSchemaTable: a schema-qualified table is created in its
// schema, and create_table: false writes to an existing table.
func TestIntegrationSchemaTable(t *testing.T) {
	admin := needPostgres(t)
	schema := uniqueName("pgsink_schema")
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })

	s := startSink(t, sinkURL(uniqueName("pgsink")), strings.ToUpper(schema)+".Frames", zaptest.NewLogger(t))
	frames := makeFrames(50)
	writeAll(t, s, frames, 50)
	checkTable(t, admin, schema+".frames", frames)

	cfg, _ := ParseSpec(sinkURL(uniqueName("pgsink")))
	cfg.Table, cfg.CreateTable = schema+".frames", false
	s2, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	more := makeFrames(10)
	writeAll(t, s2, more, 10)
	checkTable(t, admin, schema+".frames", append(frames, more...))
}

// TestIntegrationBadRowsIsolated: rows the server rejects (invalid JSON,
// a NUL in jsonb, invalid UTF-8 in port, a CHECK constraint) and a seq out of bigint range are
// permanent per-frame errors in a *dispatch.BatchError; the rest of the
// batch is stored, and a retry of the batch stores nothing twice.
func TestIntegrationBadRowsIsolated(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	s := startSink(t, sinkURL(uniqueName("pgsink")), table, zaptest.NewLogger(t))

	frames := makeFrames(200)
	bad := map[int]string{
		3:   "invalid input syntax for type json",
		77:  "unsupported Unicode escape sequence",
		120: "invalid byte sequence",
		121: "exceeds bigint",
		150: "violates check constraint",
		199: "invalid input syntax for type json",
	}
	frames[3].Fields = []byte(`{"a":`)
	frames[77].Fields = []byte(`{"a":"\u0000"}`)
	frames[120].Port = "tty\xff"
	frames[121].Seq = math.MaxInt64 + 1
	frames[199].Fields = []byte(`not json`)
	// A constraint of the operator's: class 23 like the server's own.
	if _, err := admin.Exec(context.Background(), "ALTER TABLE "+table+" ADD CONSTRAINT seq_sane CHECK (seq < 1000000000)"); err != nil {
		t.Fatal(err)
	}
	frames[150].Seq = 5_000_000_000

	for attempt := range 2 {
		err := s.Write(context.Background(), frames)
		be, ok := errors.AsType[*dispatch.BatchError](err)
		if !ok || len(be.Errs) != len(frames) {
			t.Fatalf("attempt %d: Write = %v, want a *dispatch.BatchError for %d frames", attempt, err, len(frames))
		}
		for i, e := range be.Errs {
			want, isBad := bad[i]
			switch {
			case !isBad && e != nil:
				t.Errorf("frame %d: %v, want delivered", i, e)
			case isBad && (e == nil || !dispatch.IsPermanent(e) || !strings.Contains(e.Error(), want)):
				t.Errorf("frame %d: %v, want a permanent error containing %q", i, e, want)
			}
		}
	}
	var good []*serialcb.Frame
	for i, f := range frames {
		if _, isBad := bad[i]; !isBad {
			good = append(good, f)
		}
	}
	checkTable(t, admin, table, good)
}

// TestIntegrationConnectionLost: backends killed while a write runs make
// that write fail retryably; the next writes reconnect and succeed; with
// writers retrying failed batches while backends are killed again and
// again, every frame is stored exactly once.
func TestIntegrationConnectionLost(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	app := uniqueName("pgsink")
	s := startSink(t, sinkURL(app), table, zaptest.NewLogger(t))
	ctx := context.Background()
	frames := makeFrames(10_000)

	t.Run("killed mid-write", func(t *testing.T) {
		// Hold the table locked so that the write is certainly running in
		// its backend when the backend is killed.
		locker, err := pgx.Connect(ctx, testURL)
		if err != nil {
			t.Fatal(err)
		}
		defer locker.Close(ctx)
		tx, err := locker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Write(ctx, frames[:100]) }()
		waitForLockWait(t, admin, app)
		if n := killBackends(t, admin, app); n == 0 {
			t.Fatal("no backend of the sink to kill")
		}
		err = <-done
		if err == nil || dispatch.IsPermanent(err) {
			t.Fatalf("Write with its backend killed = %v, want a retryable error", err)
		}
		if _, ok := errors.AsType[*dispatch.BatchError](err); ok {
			t.Fatalf("Write = %v: a lost connection must fail the whole batch", err)
		}
		t.Logf("write with its backend killed: %v", err)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		writeAll(t, s, frames[100:150], 50) // reconnects
		writeAll(t, s, frames[:100], 100)   // dispatch's retry
	})

	t.Run("killed while idle", func(t *testing.T) {
		// A connection idle for long (here: any time) is pinged before
		// use, so one the server closed meanwhile costs no failed write.
		s.pool.pingAfter = 0
		defer func() { s.pool.pingAfter = defaultPingAfter }()
		writeAll(t, s, frames[100:150], 50)
		if n := killBackends(t, admin, app); n == 0 {
			t.Fatal("no backend of the sink to kill")
		}
		if err := s.Write(ctx, frames[150:200]); err != nil {
			t.Fatalf("Write after the idle connection was killed = %v, want nil", err)
		}
	})

	t.Run("killed while streaming", func(t *testing.T) {
		rest := frames[200:]
		const writers, batch = 4, 50
		progress := make(chan struct{})
		errc := make(chan error, writers)
		var retried atomic.Int64
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				var failures []error
				defer func() { errc <- errors.Join(failures...) }()
				for i := w * batch; i < len(rest); i += writers * batch {
					b := rest[i:min(i+batch, len(rest))]
					for attempt := 0; ; attempt++ {
						err := s.Write(ctx, b)
						if err == nil {
							break
						}
						if dispatch.IsPermanent(err) || attempt == 20 {
							failures = append(failures, fmt.Errorf("batch at %d, attempt %d: %w", i, attempt, err))
							return
						}
						retried.Add(1)
					}
					progress <- struct{}{}
				}
			})
		}
		go func() { wg.Wait(); close(progress) }()
		batches, killed := 0, 0
		for range progress {
			batches++
			if batches%25 == 0 && batches <= 125 {
				killed += killBackends(t, admin, app)
			}
		}
		for range writers {
			if err := <-errc; err != nil {
				t.Error(err)
			}
		}
		if killed == 0 {
			t.Error("no backend was killed")
		}
		t.Logf("%d batches, %d backends killed, %d writes failed retryably and were retried", batches, killed, retried.Load())
	})

	checkTable(t, admin, table, frames)
}

// waitForLockWait returns once a backend of app waits for a lock. The
// server offers no notification for it: poll pg_stat_activity.
func waitForLockWait(t *testing.T, admin *pgx.Conn, app string) {
	t.Helper()
	for range 2000 {
		var waiting bool
		err := admin.QueryRow(context.Background(),
			"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock')", app).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the sink's write never waited for the table lock")
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestIntegrationStartUnreachable: Start against a closed port logs one
// warning and succeeds; Write then fails retryably. When the server
// answers at that address, the next Write creates the table and stores
// the batch.
func TestIntegrationStartUnreachable(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	addr := closedPort(t)
	core, logs := observer.New(zapcore.DebugLevel)
	s := startSink(t, "postgres://postgres:hunter2@"+addr+"/test?sslmode=disable&application_name="+uniqueName("pgsink"), table, zap.New(core))

	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 {
		t.Fatalf("%d warnings at start, want 1: %v", len(warns), logs.All())
	}
	line := warns[0].Message + fmt.Sprint(warns[0].ContextMap())
	for _, want := range []string{"not reachable", "starting anyway", addr, "pg_hba.conf"} {
		if !strings.Contains(line, want) {
			t.Errorf("warning %q does not mention %q", line, want)
		}
	}
	if strings.Contains(line, "hunter2") {
		t.Errorf("warning %q shows the password", line)
	}

	frames := makeFrames(20)
	for range 2 {
		err := s.Write(context.Background(), frames)
		if err == nil || dispatch.IsPermanent(err) {
			t.Fatalf("Write to a closed port = %v, want a retryable error", err)
		}
		if _, ok := errors.AsType[*dispatch.BatchError](err); ok {
			t.Fatalf("Write = %v: want a batch-level error", err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	}
	if n := len(logs.FilterLevelExact(zapcore.WarnLevel).All()); n != 1 {
		t.Errorf("%d warnings, want only the one at start", n)
	}

	// The server comes up: a forwarder at the same address.
	stop := forward(t, addr, "127.0.0.1:5432")
	defer stop()
	writeAll(t, s, frames, 20)
	checkTable(t, admin, table, frames)
	if n := logs.FilterMessageSnippet("server reachable").Len(); n != 1 {
		t.Errorf("%d logs of the server coming back, want 1", n)
	}
}

// TestIntegrationWriteHonoursContext: a write stuck on a lock, and a write
// waiting for a connection while max_conns are in use, return when their
// context ends, retryably; the sink carries on.
func TestIntegrationWriteHonoursContext(t *testing.T) {
	admin := needPostgres(t)
	table := newTable(t, admin)
	app := uniqueName("pgsink")
	cfg, _ := ParseSpec(sinkURL(app))
	cfg.Table, cfg.MaxConns = table, 1
	s, err := New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	frames := makeFrames(30)

	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	stuckCtx, cancelStuck := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Write(stuckCtx, frames[:10]) }()
	waitForLockWait(t, admin, app) // holds the only connection

	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = s.Write(wctx, frames[10:20])
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || dispatch.IsPermanent(err) || !strings.Contains(err.Error(), "max_conns") {
		t.Errorf("Write waiting for a connection = %v, want a retryable deadline error about max_conns", err)
	}

	cancelStuck()
	if err := <-done; err == nil || dispatch.IsPermanent(err) {
		t.Errorf("cancelled Write = %v, want a retryable error", err)
	} else {
		t.Logf("cancelled write: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	writeAll(t, s, frames, 30)
	checkTable(t, admin, table, frames)
}

// forward relays TCP connections from listen to target until stop, which
// closes the listener and every relayed connection and waits for its
// goroutines.
func forward(t *testing.T, listen, target string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex // guards conns and closed
		conns  []net.Conn
		closed bool
		wg     sync.WaitGroup
	)
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
			wg.Go(func() { _, _ = io.Copy(in, out); in.Close() })
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			mu.Lock()
			closed = true
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			ln.Close()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}
