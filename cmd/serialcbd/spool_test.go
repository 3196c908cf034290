package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
	"github.com/serialcbd/serialcbd/dispatch/deadletter"
	"github.com/serialcbd/serialcbd/dispatch/spool"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// runSpoolCLI runs the real command tree as run does, with stdin.
func runSpoolCLI(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb)
	cmd.SetIn(stdin)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(&errb, "serialcbd: %v\n", err)
		code = exitCode(err)
	}
	return code, out.String(), errb.String()
}

// spoolFixture is a state directory as the daemon leaves it: sink "api"
// with 5 frames spooled (2 delivered and acknowledged) and 3 dead letters
// (text, binary, with fields), sink "db" with an empty spool, and a
// directory that is no sink.
type spoolFixture struct {
	dir     string
	waiting []*serialcb.Frame // api's unacknowledged frames
	dead    []dispatch.DeadLetter
}

func newSpoolFixture(t *testing.T) *spoolFixture {
	t.Helper()
	fx := &spoolFixture{dir: filepath.Join(t.TempDir(), "state")}
	var gen serialcb.IDGen
	base := time.Date(2026, 11, 24, 18, 0, 0, 123456789, time.UTC)
	frame := func(seq int, payload string) *serialcb.Frame {
		at := base.Add(time.Duration(seq) * time.Second)
		return &serialcb.Frame{ID: gen.New(at), Port: "gps", Seq: uint64(seq), ReceivedAt: at, Payload: []byte(payload)}
	}
	var frames []*serialcb.Frame
	for i := 1; i <= 5; i++ {
		frames = append(frames, frame(i, fmt.Sprintf("$GPGGA,%d*5B", i)))
	}
	s, err := spool.Open(spool.Options{Dir: daemon.SpoolDir(fx.dir, "api")}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(frames); err != nil {
		t.Fatal(err)
	}
	if _, cur, err := s.Read(2); err != nil {
		t.Fatal(err)
	} else if err := s.Ack(cur); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fx.waiting = frames[2:]

	withFields := frame(8, `{"t":21.5}`)
	withFields.Fields = []byte(`{"t":21.5}`)
	failed := base.Add(time.Hour)
	fx.dead = []dispatch.DeadLetter{
		{Sink: "api", Frame: frame(6, "hello world"), Err: "http 422: bad payload", Attempts: 1, FailedAt: failed},
		{Sink: "api", Frame: frame(7, "\xb5\x62\x01\x07\xff\x00"), Err: "attempts exhausted: http 503", Attempts: 5, FailedAt: failed.Add(time.Second)},
		{Sink: "api", Frame: withFields, Err: "http 400", Attempts: 1, FailedAt: failed.Add(2 * time.Second)},
	}
	ds, err := deadletter.Open(daemon.DeadLetterPath(fx.dir, "api"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Append(fx.dead); err != nil {
		t.Fatal(err)
	}
	if err := ds.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = spool.Open(spool.Options{Dir: daemon.SpoolDir(fx.dir, "db")}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(fx.dir, "not-a-sink"), 0o750); err != nil {
		t.Fatal(err)
	}
	return fx
}

// lock opens the sink's spool the way the running daemon holds it.
func (fx *spoolFixture) lock(t *testing.T, sink string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(spool.Options{Dir: daemon.SpoolDir(fx.dir, sink)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readSpool returns every frame a consumer would get from the sink's spool.
func (fx *spoolFixture) readSpool(t *testing.T, sink string) []*serialcb.Frame {
	t.Helper()
	s, err := spool.Open(spool.Options{Dir: daemon.SpoolDir(fx.dir, sink)}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var all []*serialcb.Frame
	for {
		fs, _, err := s.Read(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 {
			return all
		}
		all = append(all, fs...)
	}
}

// sameSpooledFrame compares frames field by field, decoded fields included:
// the spool and the dead-letter file both keep them.
func sameSpooledFrame(a, b *serialcb.Frame) bool {
	return a.ID == b.ID && a.Port == b.Port && a.Seq == b.Seq && a.ReceivedAt.Equal(b.ReceivedAt) &&
		bytes.Equal(a.Payload, b.Payload) && bytes.Equal(a.Fields, b.Fields)
}

func tableRow(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no row %q in\n%s", first, out)
	return nil
}

// stats reads the spools and dead letters while the daemon (here: another
// spool.Open) holds the spools' locks, in text and JSON.
func TestSpoolStatsWhileLocked(t *testing.T) {
	fx := newSpoolFixture(t)
	held := fx.lock(t, "api")
	fx.lock(t, "db")
	want := held.Stats()

	code, out, errs := runSpoolCLI(t, nil, "spool", "stats", "--state-dir", fx.dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	row := tableRow(t, out, "api")
	oldest := dispatch.FormatTime(fx.waiting[0].ReceivedAt)
	if row[1] != "3" || row[len(row)-1] != "3" || !slices.Contains(row, oldest) {
		t.Errorf("api row %q, want 3 waiting, oldest %s, 3 dead:\n%s", row, oldest, out)
	}
	if row := tableRow(t, out, "db"); row[1] != "0" || row[len(row)-1] != "0" || !slices.Contains(row, "-") {
		t.Errorf("db row %q", row)
	}
	if strings.Contains(out, "not-a-sink") {
		t.Errorf("a directory without spool or dead letters is listed:\n%s", out)
	}

	code, out, errs = runSpoolCLI(t, nil, "spool", "stats", "--state-dir", fx.dir, "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got struct {
		StateDir string `json:"state_dir"`
		Sinks    []struct {
			Sink        string  `json:"sink"`
			Frames      uint64  `json:"frames"`
			Bytes       int64   `json:"bytes"`
			Segments    int     `json:"segments"`
			Oldest      string  `json:"oldest_received_at"`
			Age         float64 `json:"oldest_age_seconds"`
			DeadLetters int     `json:"dead_letters"`
		} `json:"sinks"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got.StateDir != fx.dir || len(got.Sinks) != 2 {
		t.Fatalf("%+v", got)
	}
	api := got.Sinks[0]
	if api.Sink != "api" || api.Frames != want.Frames || api.Frames != 3 || api.Bytes != want.Bytes ||
		api.Segments != want.Segments || api.Oldest != oldest || api.Age <= 0 || api.DeadLetters != 3 {
		t.Errorf("api %+v, spool stats %+v", api, want)
	}
}

func TestSpoolDeadList(t *testing.T) {
	fx := newSpoolFixture(t)
	fx.lock(t, "api") // list works while the daemon runs

	code, out, errs := runSpoolCLI(t, nil, "spool", "dead", "list", "--state-dir", fx.dir)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "FAILED_AT") {
		t.Fatalf("want a header and 3 letters:\n%s", out)
	}
	for i, want := range [][]string{
		{"2026-11-24T19:00:00.123Z", "api", "gps", " 6 ", fx.dead[0].Frame.ID.String(), " 1 ", `"http 422: bad payload"`, `"hello world"`},
		{" 7 ", " 5 ", `"attempts exhausted: http 503"`, "hex:b5620107ff00"},
		{" 8 ", `"{\"t\":21.5}"`},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}

	code, out, _ = runSpoolCLI(t, nil, "spool", "dead", "list", "--state-dir", fx.dir, "--limit", "1")
	if n := strings.Count(strings.TrimSpace(out), "\n"); code != exitOK || n != 1 {
		t.Errorf("--limit 1: exit %d, %d letters:\n%s", code, n, out)
	}
	code, out, _ = runSpoolCLI(t, nil, "spool", "dead", "list", "--state-dir", fx.dir, "--sink", "db")
	if code != exitOK || !strings.Contains(out, "no dead letters") {
		t.Errorf("--sink db: exit %d:\n%s", code, out)
	}

	// --json prints each letter as stored: the whole frame comes back.
	code, out, errs = runSpoolCLI(t, nil, "spool", "dead", "list", "--state-dir", fx.dir, "--sink", "api", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	jl := strings.Split(strings.TrimSpace(out), "\n")
	if len(jl) != 3 {
		t.Fatalf("--json: %d lines:\n%s", len(jl), out)
	}
	for i, line := range jl {
		l, err := deadletter.Parse([]byte(line))
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if w := fx.dead[i]; !sameSpooledFrame(&l.Frame, w.Frame) || l.Err != w.Err || l.Attempts != w.Attempts || !l.FailedAt.Equal(w.FailedAt) {
			t.Errorf("line %d: %+v, want %+v", i, l, w)
		}
	}

	// A torn last line (crash during a write) is reported, not fatal.
	f, err := os.OpenFile(daemon.DeadLetterPath(fx.dir, "api"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"failed_at":"2026-11-24T19:00:03Z","sink":"api","attem`)
	f.Close()
	code, out, errs = runSpoolCLI(t, nil, "spool", "dead", "list", "--state-dir", fx.dir)
	if code != exitOK || strings.Count(strings.TrimSpace(out), "\n") != 3 || !strings.Contains(errs, "line 4") || !strings.Contains(errs, "torn") {
		t.Errorf("torn line: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

// replay refuses while the daemon holds the lock (exit 1) and without
// --yes off a terminal (exit 2), changing nothing; then moves the letters
// into the spool, keeps damaged lines aside and removes the dead file.
func TestSpoolDeadReplay(t *testing.T) {
	fx := newSpoolFixture(t)
	deadPath := daemon.DeadLetterPath(fx.dir, "api")
	before, err := os.ReadFile(deadPath)
	if err != nil {
		t.Fatal(err)
	}

	held := fx.lock(t, "api")
	code, _, errs := runSpoolCLI(t, nil, "spool", "dead", "replay", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitRuntime || !strings.Contains(errs, "stop serialcbd first") {
		t.Errorf("locked: exit %d: %s", code, errs)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runSpoolCLI(t, strings.NewReader("y\n"), "spool", "dead", "replay", "--state-dir", fx.dir, "--sink", "api")
	if code != exitUsage || !strings.Contains(errs, "pass --yes") || !strings.Contains(out, "3 dead letter(s)") {
		t.Errorf("no --yes: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if after, _ := os.ReadFile(deadPath); !bytes.Equal(after, before) {
		t.Fatal("a refused replay changed the dead-letter file")
	}
	if got := fx.readSpool(t, "api"); len(got) != 3 {
		t.Fatalf("a refused replay changed the spool: %d frames", len(got))
	}

	torn := `{"failed_at":"2026-11-24T19:00:03Z","sink":"api","attem`
	f, err := os.OpenFile(deadPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(torn)
	f.Close()
	code, out, errs = runSpoolCLI(t, nil, "spool", "dead", "replay", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitOK || !strings.Contains(out, "replayed 3 dead letter(s)") || !strings.Contains(out, "1 damaged line(s)") {
		t.Fatalf("replay: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if _, err := os.Stat(deadPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead-letter file left after replay: %v", err)
	}
	if kept, err := os.ReadFile(deadPath + ".damaged"); err != nil || string(kept) != torn+"\n" {
		t.Errorf("damaged lines kept: %q %v", kept, err)
	}
	got := fx.readSpool(t, "api")
	want := append(append([]*serialcb.Frame(nil), fx.waiting...), fx.dead[0].Frame, fx.dead[1].Frame, fx.dead[2].Frame)
	if len(got) != len(want) {
		t.Fatalf("spool holds %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameSpooledFrame(got[i], want[i]) {
			t.Errorf("frame %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	code, out, _ = runSpoolCLI(t, nil, "spool", "dead", "replay", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitOK || !strings.Contains(out, "no dead letters") {
		t.Errorf("second replay: exit %d: %s", code, out)
	}
}

// On a terminal, replay asks; "n" changes nothing, "y" replays.
func TestSpoolDeadReplayAsksOnTerminal(t *testing.T) {
	fx := newSpoolFixture(t)
	answer := func(a string) (int, string, string) {
		p, err := vport.Open()
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		tty, err := os.OpenFile(p.SlavePath(), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		if _, err := p.Write([]byte(a + "\n")); err != nil {
			t.Fatal(err)
		}
		return runSpoolCLI(t, tty, "spool", "dead", "replay", "--state-dir", fx.dir, "--sink", "api")
	}
	code, out, errs := answer("n")
	if code != exitRuntime || !strings.Contains(out, "Replay? [y/N]") || !strings.Contains(errs, "aborted") {
		t.Errorf("answer n: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if _, err := os.Stat(daemon.DeadLetterPath(fx.dir, "api")); err != nil {
		t.Fatalf("aborted replay removed the dead letters: %v", err)
	}
	code, out, errs = answer("y")
	if code != exitOK || !strings.Contains(out, "replayed 3") {
		t.Errorf("answer y: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := fx.readSpool(t, "api"); len(got) != 6 {
		t.Errorf("spool holds %d frames after replay, want 6", len(got))
	}
}

func TestSpoolPurge(t *testing.T) {
	fx := newSpoolFixture(t)
	held := fx.lock(t, "api")
	code, _, errs := runSpoolCLI(t, nil, "spool", "purge", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitRuntime || !strings.Contains(errs, "stop serialcbd first") {
		t.Errorf("locked: exit %d: %s", code, errs)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runSpoolCLI(t, nil, "spool", "purge", "--state-dir", fx.dir, "--sink", "api")
	if code != exitUsage || !strings.Contains(out, "3 frame(s) waiting") || !strings.Contains(errs, "pass --yes") {
		t.Errorf("no --yes: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := fx.readSpool(t, "api"); len(got) != 3 {
		t.Fatalf("a refused purge changed the spool: %d frames", len(got))
	}

	code, out, errs = runSpoolCLI(t, nil, "spool", "purge", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitOK || !strings.Contains(out, "deleted 3 frame(s)") {
		t.Fatalf("purge: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if got := fx.readSpool(t, "api"); len(got) != 0 {
		t.Errorf("%d frames left after purge", len(got))
	}
	_, out, _ = runSpoolCLI(t, nil, "spool", "stats", "--state-dir", fx.dir)
	if row := tableRow(t, out, "api"); row[1] != "0" || row[len(row)-1] != "3" {
		t.Errorf("after purge: %q", row)
	}

	code, out, errs = runSpoolCLI(t, nil, "spool", "purge", "--state-dir", fx.dir, "--sink", "api", "--dead", "--yes")
	if code != exitOK || !strings.Contains(out, "3 dead letter(s)") || !strings.Contains(out, "deleted 3 dead letter(s)") {
		t.Fatalf("purge --dead: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if _, err := os.Stat(daemon.DeadLetterPath(fx.dir, "api")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead-letter file left: %v", err)
	}
	code, out, _ = runSpoolCLI(t, nil, "spool", "purge", "--state-dir", fx.dir, "--sink", "api", "--yes")
	if code != exitOK || !strings.Contains(out, "empty") {
		t.Errorf("purging an empty spool: exit %d: %s", code, out)
	}
}

func TestSpoolUsage(t *testing.T) {
	fx := newSpoolFixture(t)
	missing := filepath.Join(t.TempDir(), "none")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"group help", []string{"spool"}, exitOK, "serialcbd spool", ""},
		{"unknown subcommand", []string{"spool", "frob"}, exitUsage, "", `unknown command "frob"`},
		{"unknown dead subcommand", []string{"spool", "dead", "frob"}, exitUsage, "", `unknown command "frob"`},
		{"replay without sink", []string{"spool", "dead", "replay", "--state-dir", fx.dir, "--yes"}, exitUsage, "", "--sink NAME is required"},
		{"purge without sink", []string{"spool", "purge", "--state-dir", fx.dir}, exitUsage, "", "--sink NAME is required"},
		{"path as sink", []string{"spool", "purge", "--state-dir", fx.dir, "--sink", "../state", "--yes"}, exitUsage, "", "expected a sink name"},
		{"unknown sink", []string{"spool", "dead", "list", "--state-dir", fx.dir, "--sink", "apx"}, exitUsage, "", "sinks: api, db"},
		{"negative limit", []string{"spool", "dead", "list", "--state-dir", fx.dir, "--limit", "-1"}, exitUsage, "", "--limit"},
		{"missing state dir", []string{"spool", "stats", "--state-dir", missing}, exitRuntime, "", "no state directory " + missing},
		{"state_dir from config", []string{"spool", "stats", "--config", writeFile(t, "c.yaml", "state_dir: "+fx.dir+"\n"+validConfig)}, exitOK, "api", ""},
		{"bad config", []string{"spool", "stats", "-c", writeFile(t, "e.yaml", "state_dri: x\n"+validConfig)}, exitUsage, "", `unknown key "state_dri"`},
		{"config and state dir", []string{"spool", "stats", "-c", "x.yaml", "--state-dir", fx.dir}, exitUsage, "", "exclude each other"},
		{"extra argument", []string{"spool", "stats", "--state-dir", fx.dir, "x"}, exitUsage, "", `unexpected argument "x"`},
	}
	// Without state_dir the config means the default, relative to the
	// current directory (which other tests may have created: both ways).
	code, out, errs := runSpoolCLI(t, nil, "spool", "stats", "--json", "-c", writeFile(t, "d.yaml", validConfig))
	if !strings.Contains(out, `"state_dir": "./serialcbd-state"`) && !strings.Contains(errs, "no state directory ./serialcbd-state") {
		t.Errorf("config without state_dir: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runSpoolCLI(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errs, tt.stderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out, errs)
			}
		})
	}
}
