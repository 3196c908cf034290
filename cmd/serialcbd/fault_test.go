package main

// End-to-end fault injection (issue "Nothing read is ever lost", item 8):
// the built binary reads a socat pty pair while its sinks fail, vanish,
// come back, while it is killed with SIGKILL, while its port disappears,
// and while its spool's disk fills up. Every test polls real state (the
// receiver, `serialcbd spool stats`, SQLite, the JSON log) with a bounded
// deadline; the only sleeps pace a writer or a poll.

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultReceiver is an HTTP ingest endpoint that records, for every frame
// it accepts (2xx), the id and the payload. With fail > 0 it answers 503
// to that fraction of the requests, chosen by a seeded generator.
type faultReceiver struct {
	mu       sync.Mutex
	ids      map[string]int             // accepted id -> times accepted
	payloads map[string]map[string]bool // accepted payload -> ids it came with
	bad      []string
	refused  int
	fail     float64
	rng      *rand.Rand
}

func newFaultReceiver(fail float64, seed uint64) *faultReceiver {
	return &faultReceiver{ids: map[string]int{}, payloads: map[string]map[string]bool{}, fail: fail, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (rc *faultReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	type record struct {
		ID      string `json:"id"`
		Payload string `json:"payload"`
	}
	body, _ := io.ReadAll(r.Body)
	var recs []record
	var err error
	key := r.Header.Get("Idempotency-Key")
	wantKey := ""
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-ndjson") {
		// A whole batch, one record a line; the key is "FIRST_ID:LAST_ID".
		for line := range bytes.SplitSeq(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
			var rec record
			if err = json.Unmarshal(line, &rec); err != nil {
				break
			}
			recs = append(recs, rec)
		}
		if len(recs) > 0 {
			wantKey = recs[0].ID + ":" + recs[len(recs)-1].ID
		}
	} else {
		var rec record
		err = json.Unmarshal(body, &rec)
		recs = append(recs, rec)
		wantKey = rec.ID
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil || r.Method != http.MethodPost || len(recs) == 0 || recs[0].ID == "" || key != wantKey {
		rc.bad = append(rc.bad, fmt.Sprintf("%s %.200q key=%q err=%v", r.Method, body, key, err))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if rc.fail > 0 && rc.rng.Float64() < rc.fail {
		rc.refused++
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	for _, rec := range recs {
		rc.ids[rec.ID]++
		if rc.payloads[rec.Payload] == nil {
			rc.payloads[rec.Payload] = map[string]bool{}
		}
		rc.payloads[rec.Payload][rec.ID] = true
	}
	w.WriteHeader(http.StatusAccepted)
}

// distinct returns how many distinct payloads were accepted.
func (rc *faultReceiver) distinct() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.payloads)
}

// has reports whether payload p was accepted.
func (rc *faultReceiver) has(p string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.payloads[p]) > 0
}

// check verifies that the accepted frames are exactly the sent payloads,
// each under one id. With exactlyOnce every id was accepted once; else
// repeats are allowed (at-least-once) and returned as dups (extra
// deliveries). It returns the accepted id set.
func (rc *faultReceiver) check(t *testing.T, sent []string, exactlyOnce bool) (ids map[string]bool, dups int) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Errorf("%d bad requests, first: %s", len(rc.bad), rc.bad[0])
	}
	ids = map[string]bool{}
	for id, c := range rc.ids {
		ids[id] = true
		dups += c - 1
		if exactlyOnce && c != 1 {
			t.Errorf("id %s accepted %d times, want once", id, c)
		}
	}
	want := map[string]bool{}
	for _, p := range sent {
		want[p] = true
		switch got := rc.payloads[p]; {
		case len(got) == 0:
			t.Errorf("payload %q never accepted", p)
		case len(got) > 1:
			t.Errorf("payload %q accepted under %d different ids: the id must be stable across retries", p, len(got))
		}
	}
	for p := range rc.payloads {
		if !want[p] {
			t.Errorf("accepted payload %q was never sent", p)
		}
	}
	if len(rc.ids) != len(sent) {
		t.Errorf("%d distinct ids accepted, want %d", len(rc.ids), len(sent))
	}
	return ids, dups
}

// fixedServer serves a handler on one 127.0.0.1 address that can be taken
// down (nothing listens: connection refused) and brought back.
type fixedServer struct {
	addr string
	h    http.Handler
	srv  *http.Server
	done chan struct{}
}

// newFixedServer reserves an address; nothing listens on it until up.
func newFixedServer(t *testing.T, h http.Handler) *fixedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fixedServer{addr: ln.Addr().String(), h: h}
	ln.Close()
	t.Cleanup(func() { s.down(t) })
	return s
}

func (s *fixedServer) url() string { return "http://" + s.addr + "/ingest" }

// up listens on the address again and serves.
func (s *fixedServer) up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen again on %s: %v", s.addr, err)
		}
	}
	s.srv = &http.Server{Handler: s.h}
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.srv, s.done)
}

// down closes the listener and every connection; idempotent.
func (s *fixedServer) down(t *testing.T) {
	t.Helper()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	<-s.done
	s.srv = nil
}

// writeFaultConfig writes a config file and returns its path.
func writeFaultConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "serialcbd.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// faultConfig is a config with one port and the given sinks (YAML list
// items), a short retry for HTTP and the given spool block.
func faultConfig(t *testing.T, stateDir, port, spoolYAML string, sinks ...string) string {
	t.Helper()
	return writeFaultConfig(t, fmt.Sprintf(`state_dir: %s
drain_timeout: 5s
spool:
%s
ports:
  - name: dev
    path: %s
    baud: 115200
    framing: lines
sinks:
%s
`, stateDir, spoolYAML, port, strings.Join(sinks, "\n")))
}

func sqliteSinkYAML(db string) string {
	return fmt.Sprintf("  - name: db\n    url: sqlite:%s", db)
}

// httpSinkYAML is the HTTP sink "api"; format is json (one POST per frame)
// or ndjson (one POST per batch).
func httpSinkYAML(url string, concurrency int, format string) string {
	return fmt.Sprintf(`  - name: api
    url: %s
    concurrency: %d
    http:
      timeout: 2s
      format: %s
    retry:
      initial: 20ms
      max: 300ms`, url, concurrency, format)
}

// payloadOf is frame i's payload: 63 bytes, 64 with the newline.
func payloadOf(i int) string {
	p := fmt.Sprintf("fault %07d ", i)
	return p + strings.Repeat("x", 63-len(p))
}

func payloads(from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, payloadOf(i))
	}
	return out
}

// writeFaultFrames writes frames [from, to) to the device end; with perSec > 0
// it paces them in bursts every 10 ms.
func writeFaultFrames(t *testing.T, dev string, from, to, perSec int) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeFaultFramesTo(f, from, to, perSec); err != nil {
		t.Fatal(err)
	}
}

// writeFaultFramesTo is writeFaultFrames on an open file; it may run on any goroutine.
func writeFaultFramesTo(f *os.File, from, to, perSec int) error {
	chunk := min(to-from, 4096)
	var tick *time.Ticker
	if perSec > 0 {
		chunk = max(1, perSec/100)
		tick = time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
	}
	var buf bytes.Buffer
	for i := from; i < to; {
		buf.Reset()
		for end := min(to, i+chunk); i < end; i++ {
			buf.WriteString(payloadOf(i))
			buf.WriteByte('\n')
		}
		if _, err := f.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write frames to %s: %w", f.Name(), err)
		}
		if tick != nil && i < to {
			<-tick.C
		}
	}
	return nil
}

// waitFor polls cond until it holds or the deadline passes; cond returns a
// description of the state for the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %s not reached; %s", timeout, what, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// spoolStat runs `serialcbd spool stats --json` and returns the sinks'
// waiting frames and dead letters.
func spoolStat(t *testing.T, stateDir string) (waiting, dead map[string]uint64) {
	t.Helper()
	out, err := exec.Command(binary(t), "spool", "stats", "--state-dir", stateDir, "--json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("spool stats: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("spool stats: %v", err)
	}
	var st struct {
		Sinks []struct {
			Sink   string `json:"sink"`
			Frames uint64 `json:"frames"`
			Dead   uint64 `json:"dead_letters"`
		} `json:"sinks"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("spool stats output %q: %v", out, err)
	}
	waiting, dead = map[string]uint64{}, map[string]uint64{}
	for _, s := range st.Sinks {
		waiting[s.Sink], dead[s.Sink] = s.Frames, s.Dead
	}
	return waiting, dead
}

// spooled is a waitFor condition: sink has exactly n frames waiting.
func spooled(t *testing.T, stateDir, sink string, n uint64) func() (bool, string) {
	return func() (bool, string) {
		w, _ := spoolStat(t, stateDir)
		return w[sink] == n, fmt.Sprintf("spool of %s holds %d frames, want %d", sink, w[sink], n)
	}
}

// sqliteCounts returns the rows and distinct ids of the frames table (0, 0
// before the table exists).
func sqliteCounts(t *testing.T, db string) (rows, ids int) {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.QueryRow(`SELECT count(*), count(DISTINCT id) FROM frames`).Scan(&rows, &ids); err != nil {
		if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "unable to open") {
			return 0, 0
		}
		t.Fatalf("sqlite %s: %v", db, err)
	}
	return rows, ids
}

// sqliteFrames returns payload -> id for every row.
func sqliteFrames(t *testing.T, db string) map[string]string {
	t.Helper()
	conn, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(`SELECT id, payload FROM frames`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id string
		var p []byte
		if err := rows.Scan(&id, &p); err != nil {
			t.Fatal(err)
		}
		if prev, ok := out[string(p)]; ok {
			t.Errorf("payload %q in SQLite twice, ids %s and %s", p, prev, id)
		}
		out[string(p)] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sqliteHas is a waitFor condition: the table holds n rows with n ids.
func sqliteHas(t *testing.T, db string, n int) func() (bool, string) {
	return func() (bool, string) {
		rows, ids := sqliteCounts(t, db)
		return rows >= n, fmt.Sprintf("SQLite holds %d rows, %d distinct ids; want %d", rows, ids, n)
	}
}

// received is a waitFor condition: the receiver accepted n distinct payloads.
func received(rc *faultReceiver, n int) func() (bool, string) {
	return func() (bool, string) {
		got := rc.distinct()
		return got >= n, fmt.Sprintf("receiver accepted %d of %d payloads", got, n)
	}
}

// exitCleanly sends SIGTERM and expects exit 0.
func exitCleanly(t *testing.T, d *daemonProc) {
	t.Helper()
	if err, took := d.stop(t); err != nil {
		t.Errorf("exit after SIGTERM (%v): %v", took, err)
	}
}

// kill9 kills the daemon with SIGKILL and waits for it.
func kill9(t *testing.T, d *daemonProc) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.exited <- err // for the Cleanup of startDaemon
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still running 10s after SIGKILL")
	}
}

// (a) An HTTP sink that answers 503 to 30% of the requests gets every frame,
// each id accepted exactly once.
func TestFaultHTTP503(t *testing.T) {
	const n = 2000
	dev, app := socatPair(t)
	rc := newFaultReceiver(0.3, 8)
	srv := newFixedServer(t, rc)
	srv.up(t)
	state := t.TempDir()
	d := startDaemon(t, "--config", faultConfig(t, state, app, "  sync: interval", httpSinkYAML(srv.url(), 16, "json")))
	writeFaultFrames(t, dev, 0, n, 0)
	took := waitFor(t, 20*time.Second, "all frames accepted", received(rc, n))
	waitFor(t, 10*time.Second, "spool of api empty", spooled(t, state, "api", 0))
	exitCleanly(t, d)
	rc.check(t, payloads(0, n), true)
	rc.mu.Lock()
	t.Logf("%d frames delivered in %v through %d answers 503", n, took, rc.refused)
	if rc.refused == 0 {
		t.Error("the receiver never answered 503: the scenario did not happen")
	}
	rc.mu.Unlock()
	if _, dead := spoolStat(t, state); dead["api"] != 0 {
		t.Errorf("%d dead letters for api, want 0", dead["api"])
	}
}

// (b) The HTTP endpoint goes away (connection refused) for the ~10 s in
// which 10,000 frames arrive at 1,000/s, then comes back on the same
// address: every frame is delivered, each id once.
func TestFaultHTTPDownWhileReading(t *testing.T) {
	const n, warm = 10000, 100
	dev, app := socatPair(t)
	rc := newFaultReceiver(0, 0)
	srv := newFixedServer(t, rc)
	srv.up(t)
	state := t.TempDir()
	d := startDaemon(t, "--config", faultConfig(t, state, app, "  sync: interval", httpSinkYAML(srv.url(), 16, "json")))

	writeFaultFrames(t, dev, 0, warm, 0)
	waitFor(t, 10*time.Second, "the first frames accepted", received(rc, warm))
	srv.down(t)
	downAt := time.Now()
	writeFaultFrames(t, dev, warm, n, 1000)
	// All the frames reached the daemon: they wait on disk for the sink.
	waitFor(t, 10*time.Second, "the outage's frames in the spool", spooled(t, state, "api", n-warm))
	down := time.Since(downAt)
	srv.up(t)
	took := waitFor(t, 20*time.Second, "all frames accepted", received(rc, n))
	waitFor(t, 10*time.Second, "spool of api empty", spooled(t, state, "api", 0))
	exitCleanly(t, d)
	rc.check(t, payloads(0, n), true)
	t.Logf("endpoint down %v while %d frames arrived; all delivered %v after it came back", down.Round(time.Millisecond), n-warm, took)
	if !strings.Contains(d.stderr.String(), "connection refused") {
		t.Error("the log does not mention the refused connections")
	}
}

// (c) SQLite + HTTP (down); 3,000 frames wait on disk for HTTP; kill -9;
// HTTP comes up; the daemon restarts on the same state dir: HTTP gets every
// frame (repeats allowed and counted), SQLite holds each frame exactly once,
// under the same ids.
func TestFaultKill9DuringOutage(t *testing.T) {
	const n = 3000
	dev, app := socatPair(t)
	rc := newFaultReceiver(0, 0)
	srv := newFixedServer(t, rc)
	state := t.TempDir()
	db := filepath.Join(t.TempDir(), "frames.db")
	cfg := faultConfig(t, state, app, "  sync: interval", sqliteSinkYAML(db), httpSinkYAML(srv.url(), 16, "json"))
	d := startDaemon(t, "--config", cfg)
	writeFaultFrames(t, dev, 0, n, 0)
	waitFor(t, 15*time.Second, "all frames on disk for api", spooled(t, state, "api", n))
	waitFor(t, 10*time.Second, "all frames in SQLite", sqliteHas(t, db, n))
	kill9(t, d)

	srv.up(t)
	d2 := startDaemon(t, "--config", cfg)
	took := waitFor(t, 20*time.Second, "all frames accepted after restart", received(rc, n))
	waitFor(t, 10*time.Second, "spools empty", func() (bool, string) {
		w, _ := spoolStat(t, state)
		return w["api"] == 0 && w["db"] == 0, fmt.Sprintf("waiting: %v", w)
	})
	exitCleanly(t, d2)

	ids, dups := rc.check(t, payloads(0, n), false)
	t.Logf("after kill -9 and restart: %d frames delivered in %v, %d repeated deliveries (at-least-once)", n, took, dups)
	rows, distinct := sqliteCounts(t, db)
	if rows != n || distinct != n {
		t.Errorf("SQLite: %d rows, %d distinct ids; want %d each", rows, distinct, n)
	}
	byPayload := sqliteFrames(t, db)
	for _, p := range payloads(0, n) {
		id, ok := byPayload[p]
		if !ok {
			t.Errorf("SQLite lacks %q", p)
			continue
		}
		if !ids[id] {
			t.Errorf("frame %q has id %s in SQLite, which HTTP never accepted: one id per frame for every sink", p, id)
		}
	}
}

// socatAt runs `socat pty,link=dev pty,link=app` on given link paths and
// waits for both links; stop ends it with SIGTERM (socat removes the links).
type socatProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func socatAt(t *testing.T, dev, app string) *socatProc {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("socat is not installed (.ci/run installs it)")
		}
		t.Skip("socat is not installed: apt-get install socat to run this end-to-end test")
	}
	cmd := exec.Command("socat", "pty,raw,echo=0,link="+dev, "pty,raw,echo=0,link="+app)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &socatProc{cmd: cmd, done: make(chan struct{})}
	go func() { defer close(p.done); _ = cmd.Wait() }()
	t.Cleanup(func() { p.stop() })
	waitFor(t, 10*time.Second, "socat pty links", func() (bool, string) {
		_, e1 := os.Stat(dev)
		_, e2 := os.Stat(app)
		return e1 == nil && e2 == nil, fmt.Sprintf("stat: %v, %v", e1, e2)
	})
	return p
}

func (p *socatProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// (d) The port disappears (socat ends, its ptys go) and comes back under
// the same path: the daemon reopens it and the frames of both sides of the
// gap are in SQLite exactly once.
func TestFaultPortRemovedAndRecreated(t *testing.T) {
	const n = 100
	dir := t.TempDir()
	dev, app := filepath.Join(dir, "dev"), filepath.Join(dir, "app")
	sc := socatAt(t, dev, app)
	state := t.TempDir()
	db := filepath.Join(t.TempDir(), "frames.db")
	d := startDaemon(t, "--config", faultConfig(t, state, app, "  sync: interval", sqliteSinkYAML(db)))
	writeFaultFrames(t, dev, 0, n, 0)
	waitFor(t, 10*time.Second, "first batch in SQLite", sqliteHas(t, db, n))

	sc.stop()
	waitFor(t, 10*time.Second, "the daemon notices the lost port", func() (bool, string) {
		return strings.Contains(d.stderr.String(), "serial port lost; reconnecting"), "no \"serial port lost\" line in the log"
	})
	socatAt(t, dev, app)
	took := waitFor(t, 15*time.Second, "the daemon reopens the port", func() (bool, string) {
		return strings.Contains(d.stderr.String(), "serial port back"), "no \"serial port back\" line in the log"
	})
	writeFaultFrames(t, dev, n, 2*n, 0)
	waitFor(t, 10*time.Second, "second batch in SQLite", sqliteHas(t, db, 2*n))
	exitCleanly(t, d)
	rows, ids := sqliteCounts(t, db)
	if rows != 2*n || ids != 2*n {
		t.Errorf("SQLite: %d rows, %d distinct ids; want %d each", rows, ids, 2*n)
	}
	got := sqliteFrames(t, db)
	for _, p := range payloads(0, 2*n) {
		if _, ok := got[p]; !ok {
			t.Errorf("SQLite lacks %q", p)
		}
	}
	t.Logf("port reopened %v after socat came back", took)
}

// vmHWM returns a process's peak resident set size in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM line %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// (e) A long outage does not grow memory: 200,000 frames of 64 bytes wait
// on disk while the peak RSS of the daemon stays under 100 MiB; then the
// sink comes back and gets them all, each once. The sink posts NDJSON
// batches: the point is memory during the outage, not 200,000 POSTs.
func TestFaultLongOutageMemory(t *testing.T) {
	const n = 200000
	const limit = 100 << 20
	dev, app := socatPair(t)
	rc := newFaultReceiver(0, 0)
	srv := newFixedServer(t, rc)
	state := t.TempDir()
	d := startDaemon(t, "--config", faultConfig(t, state, app, "  sync: interval", httpSinkYAML(srv.url(), 4, "ndjson")))
	start := time.Now()
	writeFaultFrames(t, dev, 0, n, 0)
	waitFor(t, 20*time.Second, "all frames on disk", spooled(t, state, "api", n))
	spoolTook := time.Since(start)
	peak := vmHWM(t, d.cmd.Process.Pid)
	t.Logf("%d frames of 64 B read and spooled in %v; peak RSS (VmHWM) %.1f MiB", n, spoolTook.Round(time.Millisecond), float64(peak)/(1<<20))
	if peak >= limit {
		t.Errorf("peak RSS %.1f MiB with %d frames waiting, want under %d MiB", float64(peak)/(1<<20), n, limit>>20)
	}

	srv.up(t)
	took := waitFor(t, 30*time.Second, "all frames accepted", received(rc, n))
	waitFor(t, 10*time.Second, "spool of api empty", spooled(t, state, "api", 0))
	t.Logf("the sink came back and got all %d frames in %v; peak RSS now %.1f MiB", n, took.Round(time.Millisecond), float64(vmHWM(t, d.cmd.Process.Pid))/(1<<20))
	exitCleanly(t, d)
	rc.check(t, payloads(0, n), true)
}

// (f) The spool's disk fills up (a 2 MiB tmpfs, max_bytes 0) while the sink
// is down: the daemon says so, drops the oldest frames, keeps reading, and
// delivers the newest once the sink is back; SIGTERM exits 0.
func TestFaultSpoolDiskFull(t *testing.T) { faultSpoolDiskFull(t, "2m", 50000) }

// faultSpoolDiskFull runs scenario (f) with the state dir on a tmpfs of
// the given size and n frames of 64 bytes.
func faultSpoolDiskFull(t *testing.T, size string, n int) {
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", state).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %s tmpfs on %s: %v: %s", size, state, err, out)
		}
		t.Skipf("cannot mount a %s tmpfs (needs root): %v: %s", size, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", state).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", state, err, out)
		}
	})
	dev, app := socatPair(t)
	rc := newFaultReceiver(0, 0)
	srv := newFixedServer(t, rc)
	d := startDaemon(t, "--config", faultConfig(t, state, app, "  sync: interval\n  max_bytes: 0", httpSinkYAML(srv.url(), 16, "json")))

	// The writer runs on its own goroutine so that a daemon that stops
	// reading fails the test instead of hanging it; closing the file
	// unblocks it.
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	writeErr := make(chan error, 1)
	go func() { writeErr <- writeFaultFramesTo(f, 0, n, 0) }()
	defer func() {
		f.Close() // unblocks a writer still waiting on the pty
		if err := <-writeErr; err != nil && !errors.Is(err, os.ErrClosed) {
			t.Error(err)
		}
	}()
	written := false
	select {
	case err := <-writeErr:
		writeErr <- err
		written = true
	case <-time.After(15 * time.Second):
		t.Errorf("BUG: the daemon stopped reading with a full spool disk (on_full drop-oldest): %d frames not taken by the pty after 15s", n)
	}
	overflow := false
	for _, line := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(line, "spool overflow: oldest frames DROPPED") && strings.Contains(line, "disk full") {
			overflow = true
		}
	}
	if !overflow {
		t.Error("no \"spool overflow: oldest frames DROPPED\" line with reason \"disk full\" in the log")
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("the daemon exited with a full disk: %v", err)
	default:
	}
	srv.up(t)
	if !written {
		select {
		case err := <-writeErr:
			writeErr <- err
			t.Log("reading resumed once the sink came back")
		case <-time.After(10 * time.Second):
			t.Fatal("reading did not resume within 10s of the sink coming back")
		}
	}
	last := payloadOf(n - 1)
	waitFor(t, 20*time.Second, "the last frame delivered", func() (bool, string) {
		return rc.has(last), fmt.Sprintf("receiver has %d frames, not the last one", rc.distinct())
	})
	exitCleanly(t, d)
	_, dead := spoolStat(t, state)
	t.Logf("disk full: %d of %d frames delivered, %d dropped, %d dead letters", rc.distinct(), n, n-rc.distinct(), dead["api"])
}
