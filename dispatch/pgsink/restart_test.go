package pgsink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
)

// TestIntegrationServerRestart: 10,000 frames through the real dispatcher
// into a PostgreSQL cluster of the test's own, which crashes (pg_ctl stop
// -m immediate) after about 3,000 are delivered and comes back on the same
// port and data directory while frames keep arriving. While it is down
// writes fail retryably and nothing resolves; once it is back every frame
// resolves delivered and is stored exactly once.
func TestIntegrationServerRestart(t *testing.T) {
	began := time.Now()
	pg := newPrivatePG(t)
	pg.start(t)

	app := uniqueName("pgsink")
	table := uniqueName("frames_test")
	log := zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel))
	cfg, err := ParseSpec(pg.url(app))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Table = table
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	loop := asyncloop.New(asyncloop.Options{QueueSize: 4096, Workers: 16})
	loop.Start()
	d, err := dispatch.New(loop, dispatch.Config{Targets: []dispatch.Target{{
		Name: "pg",
		Sink: s,
		Options: dispatch.Options{
			MaxBatch:    200,
			MaxInflight: 4,
			// Above the 10,000 frames: none may fail ErrBacklogFull while
			// the server is down.
			MaxPending: 20_000,
			Retry:      dispatch.RetryPolicy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		},
	}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped here on the way out, or by the cleanup when the test fails
	// earlier, so that no goroutine outlives the test (goleak) and the
	// cluster is stopped only after the sink let go of it.
	stopped := false
	stopDispatch := func(timeout time.Duration) error {
		if stopped {
			return nil
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var errs []error
		if err := d.Drain(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		if err := loop.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("loop shutdown: %w", err))
		}
		if err := d.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
		return errors.Join(errs...)
	}
	t.Cleanup(func() {
		if err := stopDispatch(5 * time.Second); err != nil {
			t.Logf("stopping the dispatcher after a failure: %v", err)
		}
	})
	ctx := context.Background()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sinkStats := func() dispatch.SinkStats { return d.Stats().Sinks[0] }

	frames := makeFrames(10_000)
	futs := make([]*asyncloop.Future[dispatch.Receipt], 0, len(frames))
	submit := func(from, to int) {
		for _, f := range frames[from:to] {
			futs = append(futs, d.Submit(*f))
		}
	}

	// Up: crash the server once about 3,000 frames are stored, while the
	// rest of the first 5,000 are being written.
	submit(0, 5000)
	waitUntil(t, 15*time.Second, "3,000 frames delivered", func() bool { return sinkStats().Delivered >= 3000 })
	pg.crash(t)
	atCrash := sinkStats()
	t.Logf("server crashed with %d frames delivered", atCrash.Delivered)

	// Down: a write fails, retryably and for the whole batch.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = s.Write(wctx, frames[5000:5010])
	cancel()
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write with the server down = %v, want a retryable error", err)
	}
	if _, ok := errors.AsType[*dispatch.BatchError](err); ok {
		t.Fatalf("Write with the server down = %v, want a batch-level error", err)
	}
	t.Logf("write with the server down: %v", err)

	// Frames keep arriving; the dispatcher retries until the server is back.
	submit(5000, 8000)
	waitUntil(t, 15*time.Second, "the dispatcher to retry with the server down", func() bool {
		st := sinkStats()
		return st.Retried > atCrash.Retried && st.Down
	})
	if st := sinkStats(); st.Failed != 0 {
		t.Fatalf("%d frames failed with the server down, want them retried: %+v", st.Failed, st)
	}
	for i, f := range futs[5000:8000] {
		select {
		case <-f.Done():
			_, err := f.Result(ctx)
			t.Fatalf("frame %d resolved with the server down: %v", 5000+i, err)
		default:
		}
	}

	// Back up: same port, same data directory (crash recovery).
	pg.start(t)
	submit(8000, 10_000)

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	failed := 0
	for i, f := range futs {
		if _, err := f.Result(rctx); err != nil {
			if failed++; failed <= 5 {
				t.Errorf("frame %d: %v", i, err)
			}
		}
	}
	if err := stopDispatch(10 * time.Second); err != nil {
		t.Error(err)
	}
	if failed > 0 {
		t.Fatalf("%d of %d frames not delivered", failed, len(futs))
	}
	st := d.Stats()
	t.Logf("stats: submitted %d, delivered %d, failed %d, retried %d", st.Submitted, st.Delivered, st.Failed, st.Sinks[0].Retried)
	if st.Delivered != uint64(len(frames)) || st.Failed != 0 || st.Sinks[0].Failed != 0 {
		t.Errorf("stats %+v: want %d delivered, none failed", st, len(frames))
	}
	if st.Sinks[0].Retried == 0 {
		t.Error("no batch was retried across the crash")
	}

	admin := pg.connect(t)
	var rows, ids int
	if err := admin.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+table).Scan(&rows, &ids); err != nil {
		t.Fatal(err)
	}
	if rows != len(frames) || ids != len(frames) {
		t.Fatalf("table has %d rows with %d distinct ids, want %d of each", rows, ids, len(frames))
	}
	checkTable(t, admin, table, frames)
	t.Logf("done in %s (cluster setup included)", time.Since(began).Round(time.Millisecond))
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// privatePG is a PostgreSQL cluster of one test's own: its own data
// directory, port and socket directory, trust authentication. As root it
// runs as the postgres user (the server refuses to run as root).
type privatePG struct {
	bin  string   // directory of initdb, pg_ctl, postgres
	as   []string // command prefix running a program as the cluster's owner; nil: as the test
	su   bool     // as ends in su's -c: the command goes as one quoted line
	dir  string   // temporary directory: data, socket, log
	data string
	port int
}

// skipOrFail skips the test, or fails it under CI=true, whose machines
// must be able to run it.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// newPrivatePG creates (initdb) a cluster in a temporary directory that is
// removed when the test ends, after the cluster is stopped.
func newPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	bin := findPGBin()
	if bin == "" {
		skipOrFail(t, "no PostgreSQL server binaries (initdb, pg_ctl, postgres) under /usr/lib/postgresql/*/bin: install the postgresql package")
	}
	pg := &privatePG{bin: bin}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(t, "running as root and no postgres user to run a private PostgreSQL server as: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if p, err := exec.LookPath("runuser"); err == nil {
			pg.as = []string{p, "-u", "postgres", "--"}
		} else if p, err := exec.LookPath("su"); err == nil {
			pg.as, pg.su = []string{p, "postgres", "-s", "/bin/sh", "-c"}, true
		} else {
			skipOrFail(t, "running as root and neither runuser nor su to run a private PostgreSQL server as postgres")
		}
	}

	// Not t.TempDir: its parent is private to root, out of postgres's reach.
	dir, err := os.MkdirTemp("", "pgsink-restart-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pg.dir, pg.data = dir, filepath.Join(dir, "data")
	pg.port = freePort(t)

	if out, err := pg.run("initdb", "-D", pg.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// Registered after the directory's removal, so it runs before it.
	t.Cleanup(func() { pg.stop(t, "immediate") })
	conf := fmt.Sprintf("\n# TestIntegrationServerRestart\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 20\n",
		pg.port, strings.ReplaceAll(dir, "'", "''"))
	f, err := os.OpenFile(filepath.Join(pg.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return pg
}

// findPGBin returns the newest /usr/lib/postgresql/<version>/bin that has
// initdb, pg_ctl and postgres, or "".
func findPGBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		ok := true
		for _, prog := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, prog)); err != nil || fi.Mode()&0o111 == 0 {
				ok = false
			}
		}
		if ok {
			return dir
		}
	}
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run runs one of the cluster's programs as its owner and returns its
// output.
func (pg *privatePG) run(prog string, args ...string) ([]byte, error) {
	argv := append([]string{filepath.Join(pg.bin, prog)}, args...)
	switch {
	case pg.su:
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		argv = append(append([]string{}, pg.as...), strings.Join(quoted, " "))
	case len(pg.as) > 0:
		argv = append(append([]string{}, pg.as...), argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = pg.dir // the owner's cwd must be readable to it
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// The server pg_ctl starts writes to its log file, not to our pipe;
	// should it hold the pipe anyway, do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// start starts the server and waits until it accepts connections.
func (pg *privatePG) start(t *testing.T) {
	t.Helper()
	logFile := filepath.Join(pg.dir, "server.log")
	if out, err := pg.run("pg_ctl", "start", "-D", pg.data, "-l", logFile, "-w", "-t", "30"); err != nil {
		serverLog, _ := os.ReadFile(logFile)
		t.Fatalf("pg_ctl start: %v\n%s\nserver log:\n%s", err, out, serverLog)
	}
}

// crash stops the server as a crash would (SIGQUIT to every process: no
// checkpoint, connections cut, crash recovery at the next start) and
// waits until it has exited.
func (pg *privatePG) crash(t *testing.T) {
	t.Helper()
	if out, err := pg.run("pg_ctl", "stop", "-D", pg.data, "-m", "immediate", "-w", "-t", "30"); err != nil {
		t.Fatalf("pg_ctl stop -m immediate: %v\n%s", err, out)
	}
}

// stop stops the server if it runs; for cleanups.
func (pg *privatePG) stop(t *testing.T, mode string) {
	t.Helper()
	if _, err := pg.run("pg_ctl", "status", "-D", pg.data); err != nil {
		return // not running (exit status 3), or no data directory
	}
	if out, err := pg.run("pg_ctl", "stop", "-D", pg.data, "-m", mode, "-w", "-t", "30"); err != nil {
		t.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
}

// url is the sink's URL for the cluster, with application name app.
func (pg *privatePG) url(app string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&application_name=%s", pg.port, app)
}

// connect returns an administrator's connection, closed when the test ends.
func (pg *privatePG) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.url(uniqueName("pgsink_admin")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}
