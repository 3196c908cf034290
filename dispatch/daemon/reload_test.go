package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/configs"
)

// runFromFile runs the daemon of a config file as `run --config` does,
// SIGHUP included.
func runFromFile(t *testing.T, file string) *running {
	t.Helper()
	cfg, err := configs.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	d, err := build(cfg, NewRegistry(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	d.load = func() (*configs.Config, error) { return configs.Load(file) }
	return &running{d: d, logs: logs, stop: startBuilt(t, d)}
}

// complete counts the complete records of a file sink while it may be
// writing one (jsonlRecords reads them once the daemon stopped).
func complete(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return bytes.Count(data, []byte("\n"))
}

// waitComplete waits for n complete records in the file sinks at paths.
func waitComplete(t *testing.T, n int, paths ...string) {
	t.Helper()
	within(t, fmt.Sprintf("%d records", n), func() bool {
		got := 0
		for _, p := range paths {
			got += complete(t, p)
		}
		return got >= n
	})
}

// writeConfig writes a config file; its state_dir, unless text has one,
// is beside the file, not in the source tree.
func writeConfig(t *testing.T, file, text string) {
	t.Helper()
	if !strings.Contains(text, "state_dir:") {
		text = strings.TrimSuffix(text, "\n") + "\nstate_dir: " + filepath.Join(filepath.Dir(file), "state") + "\n" // last, so line numbers hold
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hangup sends SIGHUP to the test process, which the daemon has subscribed
// to, and waits for the log line with msg to appear n times in all.
func hangup(t *testing.T, r *running, msg string, n int) {
	t.Helper()
	if err := raiseHangup(); err != nil {
		t.Fatal(err)
	}
	within(t, msg, func() bool { return r.logs.FilterMessage(msg).Len() >= n })
}

// streamer writes numbered lines to a port until stopped.
type streamer struct {
	written atomic.Int64 // lines whose Write returned
	stop    chan struct{}
	done    chan error
}

func stream(w interface{ Write([]byte) (int, error) }, prefix string) *streamer {
	s := &streamer{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				s.done <- nil
				return
			default:
			}
			if _, err := fmt.Fprintf(w, "%s-%06d\n", prefix, i); err != nil {
				s.done <- err
				return
			}
			s.written.Add(1)
		}
	}()
	return s
}

// end stops the writer and returns how many lines it wrote.
func (s *streamer) end(t *testing.T) int {
	t.Helper()
	close(s.stop)
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
	return int(s.written.Load())
}

// SIGHUP with frames flowing: the port keeps its Reader (never reopened),
// a second port starts, and every line is delivered exactly once, by the
// old sink before the switch and by the new one after it.
func TestIntegrationReload(t *testing.T) {
	tests := []struct {
		name        string
		sinkChanged bool // out: file A → file B (new dispatcher); else unchanged
	}{
		{"sink changed", true},
		{"sinks unchanged, port added", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			one := openLink(t, filepath.Join(dir, "one"))
			two := openLink(t, filepath.Join(dir, "two"))
			a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
			file := filepath.Join(dir, "config.yaml")
			port := func(name, path string) string {
				return fmt.Sprintf("  - name: %s\n    path: %s\n    baud: 115200\n", name, path)
			}
			writeConfig(t, file, "ports:\n"+port("one", one.Path())+"sinks:\n  - name: out\n    url: file:"+a+"\n")
			r := runFromFile(t, file)
			reader := r.d.current().ports[0].r

			s := stream(one, "one")
			waitComplete(t, 50, a)
			after := b
			if !tt.sinkChanged {
				after = a
			}
			writeConfig(t, file, "ports:\n"+port("one", one.Path())+port("two", two.Path())+
				"sinks:\n  - name: out\n    url: file:"+after+"\n")
			hangup(t, r, "config reloaded", 1)
			switched := int(s.written.Load()) // lines from here on were written after the switch
			const twoLines = 100
			for i := range twoLines {
				if _, err := fmt.Fprintf(two, "two-%06d\n", i); err != nil {
					t.Fatal(err)
				}
			}
			waitComplete(t, switched+200, a, b)
			n := s.end(t)
			waitComplete(t, n+twoLines, a, b)
			r.stop()
			t.Logf("%d lines in %s, %d in %s", complete(t, a), filepath.Base(a), complete(t, b), filepath.Base(b))

			seen := map[string]string{} // payload → file
			for _, f := range []string{a, b} {
				ports, payloads := jsonlRecords(t, f)
				for i, p := range payloads {
					if prev, dup := seen[p]; dup {
						t.Errorf("%q delivered twice (%s and %s)", p, filepath.Base(prev), filepath.Base(f))
					}
					seen[p] = f
					if !strings.HasPrefix(p, ports[i]+"-") {
						t.Errorf("%q recorded for port %q", p, ports[i])
					}
				}
			}
			for i := range n {
				p := fmt.Sprintf("one-%06d", i)
				f, ok := seen[p]
				switch {
				case !ok:
					t.Errorf("%s lost", p)
				case i > switched && f != after:
					t.Errorf("%s, written after the reload, went to %s", p, filepath.Base(f))
				}
			}
			for i := range twoLines {
				if p := fmt.Sprintf("two-%06d", i); seen[p] != after {
					t.Errorf("%s of the added port went to %q, want %s", p, seen[p], filepath.Base(after))
				}
			}
			if len(seen) != n+twoLines {
				t.Errorf("%d records, want %d", len(seen), n+twoLines)
			}
			cur := r.d.current()
			if cur.ports[0].r != reader {
				t.Error("the unchanged port got a new Reader")
			}
			if st := reader.Stats(); st.Reconnects != 0 {
				t.Errorf("the unchanged port was reopened %d times", st.Reconnects)
			}
			if got := r.logs.FilterMessage("previous sinks drained").Len(); got != map[bool]int{true: 1}[tt.sinkChanged] {
				t.Errorf("%d 'previous sinks drained' lines", got)
			}
			entry := r.logs.FilterMessage("config reloaded").All()[0].ContextMap()
			if entry["ports_kept"] != int64(1) || entry["ports_started"] != int64(1) || entry["ports_stopped"] != int64(0) ||
				entry["sinks_restarted"] != tt.sinkChanged {
				t.Errorf("config reloaded: %v", entry)
			}
		})
	}
}

// A port removed from the config stops; its frames read before the reload
// are delivered.
func TestIntegrationReloadRemovesPort(t *testing.T) {
	dir := t.TempDir()
	one := openLink(t, filepath.Join(dir, "one"))
	two := openLink(t, filepath.Join(dir, "two"))
	out := filepath.Join(dir, "out.jsonl")
	file := filepath.Join(dir, "config.yaml")
	sinks := "sinks:\n  - name: out\n    url: file:" + out + "\n"
	writeConfig(t, file, fmt.Sprintf("ports:\n  - name: one\n    path: %s\n  - name: two\n    path: %s\n%s", one.Path(), two.Path(), sinks))
	r := runFromFile(t, file)
	if _, err := two.Write([]byte("two 1\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 1, out)
	writeConfig(t, file, fmt.Sprintf("ports:\n  - name: one\n    path: %s\n%s", one.Path(), sinks))
	hangup(t, r, "config reloaded", 1)
	if _, err := one.Write([]byte("one 1\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 2, out)
	r.stop()
	if _, got := jsonlRecords(t, out); strings.Join(got, "|") != "two 1|one 1" {
		t.Errorf("records %q", got)
	}
	cur := r.d.current()
	if len(cur.ports) != 1 || cur.ports[0].name != "one" {
		t.Errorf("ports after reload: %d", len(cur.ports))
	}
	entry := r.logs.FilterMessage("config reloaded").All()[0].ContextMap()
	if entry["ports_kept"] != int64(1) || entry["ports_stopped"] != int64(1) {
		t.Errorf("config reloaded: %v", entry)
	}
}

// An invalid new config is rejected with its file:line and the running
// pipeline carries on, unchanged.
func TestIntegrationReloadInvalid(t *testing.T) {
	dir := t.TempDir()
	one := openLink(t, filepath.Join(dir, "one"))
	out := filepath.Join(dir, "out.jsonl")
	file := filepath.Join(dir, "config.yaml")
	good := "ports:\n  - name: one\n    path: " + one.Path() + "\n    baud: 115200\nsinks:\n  - name: out\n    url: file:" + out + "\n"
	writeConfig(t, file, good)
	r := runFromFile(t, file)
	before := r.d.current()
	// Line 4: a typo of baud.
	writeConfig(t, file, strings.Replace(good, "    baud:", "    bauds:", 1))
	hangup(t, r, "config reload rejected; the running configuration carries on", 1)
	entry := r.logs.FilterMessage("config reload rejected; the running configuration carries on").All()[0]
	if msg := fmt.Sprint(entry.ContextMap()["error"]); !strings.Contains(msg, file+":4") || !strings.Contains(msg, "bauds") {
		t.Errorf("error %q does not name %s:4 and the key", msg, file)
	}
	t.Logf("logged: %v", entry.ContextMap()["error"])
	if r.d.current() != before {
		t.Error("the running pipeline was replaced")
	}
	if _, err := one.Write([]byte("after 1\nafter 2\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 2, out)
	r.stop()
	if _, got := jsonlRecords(t, out); strings.Join(got, "|") != "after 1|after 2" {
		t.Errorf("records %q", got)
	}
	if r.logs.FilterMessage("config reloaded").Len() != 0 {
		t.Error("an invalid config was applied")
	}
}

// Quick mode has no file to re-read: SIGHUP is logged and ignored, and it
// does not stop the daemon (its default action).
func TestIntegrationReloadQuickModeIgnored(t *testing.T) {
	one := openLink(t, filepath.Join(t.TempDir(), "one"))
	out := filepath.Join(t.TempDir(), "out.jsonl")
	cfg, err := quickConfig(t, 115200, false, "file:"+out, "one="+one.Path()), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := runDaemon(t, cfg)
	hangup(t, r, "SIGHUP ignored: no config file to re-read (quick mode); restart to change the flags", 1)
	if _, err := one.Write([]byte("still 1\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 1, out)
	r.stop()
}

// Reload applies a configuration given by the embedding program, without
// SIGHUP or a file; a configuration that cannot be built is returned and
// the running one carries on; once Run ended, Reload returns ctx's error.
func TestIntegrationReloadAPI(t *testing.T) {
	one := openLink(t, filepath.Join(t.TempDir(), "one"))
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")
	r := runDaemon(t, quickConfig(t, 115200, false, "file:"+first, "one="+one.Path()))
	if _, err := one.Write([]byte("a\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 1, first)

	bad := quickConfig(t, 115200, false, "file:"+second, "one="+one.Path())
	bad.Sinks[0].URL = "ftp://nowhere"
	if err := r.d.Reload(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "ftp://nowhere") {
		t.Fatalf("Reload(bad sink) = %v, want an error naming it", err)
	}
	if _, err := one.Write([]byte("b\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 2, first)

	if err := r.d.Reload(context.Background(), quickConfig(t, 115200, false, "file:"+second, "one="+one.Path())); err != nil {
		t.Fatalf("Reload = %v", err)
	}
	if _, err := one.Write([]byte("c\n")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, 1, second)
	r.stop()
	if n := r.logs.FilterMessage("config reloaded").Len(); n != 1 {
		t.Errorf("%d 'config reloaded' lines, want 1", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.d.Reload(ctx, quickConfig(t, 115200, false, "file:"+first, "one="+one.Path())); !errors.Is(err, context.Canceled) {
		t.Errorf("Reload after Run = %v, want context.Canceled", err)
	}
}
