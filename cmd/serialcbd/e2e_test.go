package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds serialcbd once per test run, as a user would.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "serialcbd-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "serialcbd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// socatPair starts `socat pty,raw,echo=0,link=dev pty,raw,echo=0,link=app`,
// the README's recipe, and returns the device end and the app end.
func socatPair(t *testing.T) (dev, app string) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("socat is not installed (.ci/run installs it)")
		}
		t.Skip("socat is not installed: apt-get install socat to run this end-to-end test")
	}
	dir := t.TempDir()
	dev, app = filepath.Join(dir, "dev"), filepath.Join(dir, "app")
	cmd := exec.Command("socat", "pty,raw,echo=0,link="+dev, "pty,raw,echo=0,link="+app)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// socat creates the links right after it starts; wait for that (bounded).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, e1 := os.Stat(dev)
		_, e2 := os.Stat(app)
		if e1 == nil && e2 == nil {
			return dev, app
		}
		if time.Now().After(deadline) {
			t.Fatal("socat did not create its pty links")
		}
	}
}

// daemonProc is a running `serialcbd run`.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	ready  chan struct{}
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, args ...string) *daemonProc {
	t.Helper()
	// No metrics server: tests must not depend on the default port being free.
	cmd := exec.Command(binary(t), append([]string{"run", "--log-format", "json", "--metrics-addr", ""}, args...)...)
	cmd.Dir = t.TempDir() // the default state directory lands there
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, stderr: &syncBuffer{}, ready: make(chan struct{}), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(d.stderr, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "serialcbd running") {
				close(d.ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
	}()
	go func() {
		<-scanDone // Wait closes the pipe: finish reading first
		d.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr.String())
		}
	})
	select {
	case <-d.ready:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("daemon exited at start: %v\n%s", err, d.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon not running after 30s:\n%s", d.stderr.String())
	}
	return d
}

// stop sends SIGTERM and returns the exit error and how long the exit took.
func (d *daemonProc) stop(t *testing.T) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		return err, time.Since(start)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit within 30s of SIGTERM")
	}
	return nil, 0
}

// receiver is an HTTP ingest endpoint that records accepted frame ids.
type receiver struct {
	mu       sync.Mutex
	ids      map[string]int
	payloads map[string]bool
	bad      []string
	want     int
	all      chan struct{}
}

func newReceiver(want int) *receiver {
	return &receiver{ids: map[string]int{}, payloads: map[string]bool{}, want: want, all: make(chan struct{})}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rec struct {
		ID      string `json:"id"`
		Port    string `json:"port"`
		Seq     uint64 `json:"seq"`
		Payload string `json:"payload"`
	}
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err := json.Unmarshal(body, &rec); err != nil || r.Method != http.MethodPost || r.Header.Get("Idempotency-Key") != rec.ID {
		rc.bad = append(rc.bad, fmt.Sprintf("%s %q key=%q err=%v", r.Method, body, r.Header.Get("Idempotency-Key"), err))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	rc.ids[rec.ID]++
	rc.payloads[rec.Payload] = true
	if len(rc.ids) == rc.want {
		close(rc.all)
	}
	w.WriteHeader(http.StatusAccepted)
}

// The acceptance scenario of the core pipeline: a socat pty pair, 5,000
// lines, SQLite and HTTP sinks; both hold every frame once; SIGTERM exits 0
// within 5 s.
func TestEndToEndSocatSQLiteHTTP(t *testing.T) {
	const n = 5000
	dev, app := socatPair(t)
	rc := newReceiver(n)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	db := filepath.Join(t.TempDir(), "f.db")
	d := startDaemon(t, "--port", app, "--baud", "115200", "--sink", "sqlite:"+db, "--sink", srv.URL+"/ingest")

	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "frame %05d temp=21.%d\n", i, i%10)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	f.Close()

	select {
	case <-rc.all:
	case <-time.After(60 * time.Second):
		rc.mu.Lock()
		t.Fatalf("HTTP receiver has %d of %d frames after 60s", len(rc.ids), n)
	}
	err, took := d.stop(t)
	if err != nil {
		t.Fatalf("exit: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("exit took %v after SIGTERM, promised within 5s", took)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Errorf("%d bad requests, first: %s", len(rc.bad), rc.bad[0])
	}
	for id, c := range rc.ids {
		if c != 1 {
			t.Errorf("HTTP got id %s %d times", id, c)
		}
	}
	for i := range n {
		if p := fmt.Sprintf("frame %05d temp=21.%d", i, i%10); !rc.payloads[p] {
			t.Fatalf("HTTP receiver lacks %q", p)
		}
	}
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rows, ids, seqs int
	var minSeq, maxSeq int
	if err := conn.QueryRow(`SELECT count(*), count(DISTINCT id), count(DISTINCT seq), min(seq), max(seq) FROM frames`).Scan(&rows, &ids, &seqs, &minSeq, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if rows != n || ids != n || seqs != n || minSeq != 1 || maxSeq != n {
		t.Errorf("sqlite: %d rows, %d ids, %d seqs in [%d,%d]; want %d each in [1,%d]", rows, ids, seqs, minSeq, maxSeq, n, n)
	}
	var sqliteIDs []string
	r, err := conn.Query(`SELECT id FROM frames`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var id string
		_ = r.Scan(&id)
		sqliteIDs = append(sqliteIDs, id)
	}
	for _, id := range sqliteIDs {
		if rc.ids[id] != 1 {
			t.Fatalf("id %s is in SQLite but not at the HTTP receiver: the record id must be the same for every sink", id)
		}
	}
}

// Garbage, NUL bytes, invalid UTF-8 and a 1 MB line without a delimiter do
// not crash or stall the daemon; the frames around them are delivered.
func TestEndToEndBadInput(t *testing.T) {
	dev, app := socatPair(t)
	out := filepath.Join(t.TempDir(), "frames.jsonl")
	d := startDaemon(t, "--port", app, "--baud", "115200", "--max-frame", "4096", "--sink", "file:"+out)

	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 300)
	for i := range garbage {
		for garbage[i] = byte(rng.IntN(256)); garbage[i] == '\n' || garbage[i] == '\r'; garbage[i] = byte(rng.IntN(256)) {
		}
	}
	want := [][]byte{[]byte("good-1"), garbage, []byte("\x00\x00good-2\x00"), []byte("good-3"), []byte("\xff\xfegood-4\xc3"), []byte("good-5")}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stream bytes.Buffer
	for i, w := range want {
		stream.Write(w)
		stream.WriteString("\n")
		if i == 3 { // a 1 MB line with no delimiter, then the delimiter
			stream.Write(bytes.Repeat([]byte("x"), 1<<20))
			stream.WriteString("\n")
		}
	}
	if _, err := f.Write(stream.Bytes()); err != nil {
		t.Fatal(err)
	}

	var got [][]byte
	for deadline := time.Now().Add(30 * time.Second); len(got) < len(want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the file holds %d of %d frames", len(got), len(want))
		}
		got = readJSONL(t, out)
	}
	if err, _ := d.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	got = readJSONL(t, out)
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d = %q, want %q", i, got[i], want[i])
		}
	}
	if log := d.stderr.String(); !strings.Contains(log, "oversize") {
		t.Errorf("no oversize frame logged:\n%s", log)
	}
}

func readJSONL(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec struct {
			Payload  string `json:"payload"`
			Encoding string `json:"encoding"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("bad JSONL line %q: %v", line, err)
		}
		p := []byte(rec.Payload)
		if rec.Encoding == "base64" {
			if p, err = base64.StdEncoding.DecodeString(rec.Payload); err != nil {
				t.Fatal(err)
			}
		}
		frames = append(frames, p)
	}
	return frames
}

// The binary starts with a port that is not plugged in yet (a by-id path),
// says it waits for it, and reads it once it appears; SIGTERM exits 0.
func TestEndToEndPortAppearsLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "serial", "by-id", "usb-TEST_Late-if00")
	out := filepath.Join(dir, "frames.jsonl")
	d := startDaemon(t, "--port", "late="+path, "--sink", "file:"+out)
	if log := d.stderr.String(); !strings.Contains(log, "waiting for serial port late: not present; will open it when it appears") {
		t.Errorf("no waiting line in the log:\n%s", log)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	dev := openLink(t, path)
	if _, err := dev.Write([]byte("hello\nworld\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(readJSONL(t, out)) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the file holds %q", readJSONL(t, out))
		}
	}
	if err, _ := d.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if got := readJSONL(t, out); len(got) != 2 || string(got[0]) != "hello" || string(got[1]) != "world" {
		t.Errorf("frames %q, want hello, world", got)
	}
}

func openLink(t *testing.T, path string) *vport.Pair {
	t.Helper()
	p, err := vport.OpenLink(path)
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}
