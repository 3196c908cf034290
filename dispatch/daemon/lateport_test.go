package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// running is a daemon built from cfg and run in-process until stop.
type running struct {
	d    *Daemon
	logs *observer.ObservedLogs
	stop func() // cancels and checks that run returned nil; idempotent
}

// runDaemon builds cfg and runs it until ready (every port present at start
// open), or fails the test.
func runDaemon(t *testing.T, cfg *configs.Config) *running {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	d, err := build(cfg, NewRegistry(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return &running{d: d, logs: logs, stop: startBuilt(t, d)}
}

// startBuilt runs a built daemon until it is ready, or fails the test, and
// returns an idempotent stop that checks run returned nil (also registered
// as a cleanup).
func startBuilt(t *testing.T, d *Daemon) (stop func()) {
	t.Helper()
	ready := make(chan struct{})
	d.ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatal("daemon not ready after 10s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("daemon: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// jsonlRecords returns port and payload of each record of a file sink.
func jsonlRecords(t *testing.T, path string) (ports, payloads []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec struct {
			Port    string `json:"port"`
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("bad JSONL line %q: %v", line, err)
		}
		ports = append(ports, rec.Port)
		payloads = append(payloads, rec.Payload)
	}
	return ports, payloads
}

func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var got []string
	within(t, fmt.Sprintf("%d records in %s", n, filepath.Base(path)), func() bool {
		_, got = jsonlRecords(t, path)
		return len(got) >= n
	})
	return got
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

// A port missing at start is not fatal: the daemon starts, says it waits
// for the port, and reads it once it appears, while another port present
// from the start is read meanwhile. Stable /dev/serial/by-id style symlinks
// work as paths, whether present at start or created later (as udev does).
func TestIntegrationPortAppearsLater(t *testing.T) {
	tests := []struct {
		name string
		rel  string // path of the late port under the temp dir
	}{
		{"plain path", "ttyLATE0"},
		{"by-id symlink", "serial/by-id/usb-TEST_Late-if00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "serial", "by-id"), 0o755); err != nil {
				t.Fatal(err)
			}
			early := openLink(t, filepath.Join(dir, "serial", "by-id", "usb-TEST_Early-if00"))
			late := filepath.Join(dir, tt.rel)
			out := filepath.Join(t.TempDir(), "out.jsonl")
			cfg := quickConfig(t, 115200, false, "file:"+out, "early="+early.Path(), "late="+late)
			r := runDaemon(t, cfg)
			if got := r.logs.FilterMessage("waiting for serial port late: not present; will open it when it appears").Len(); got != 1 {
				t.Errorf("%d 'waiting for serial port late' lines, want 1; logs: %v", got, r.logs.All())
			}
			if r.logs.FilterMessageSnippet("waiting for serial port early").Len() != 0 {
				t.Error("the port present at start is reported as waited for")
			}

			// The present port runs while the other is away.
			if _, err := early.Write([]byte("early 1\n")); err != nil {
				t.Fatal(err)
			}
			waitLines(t, out, 1)

			// The device appears; lines written now are kept by the pty
			// until the Reader opens it.
			dev := openLink(t, late)
			if _, err := dev.Write([]byte("late 1\nlate 2\nlate 3\n")); err != nil {
				t.Fatal(err)
			}
			got := waitLines(t, out, 4)
			r.stop()
			if want := []string{"early 1", "late 1", "late 2", "late 3"}; strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("records %q, want %q", got, want)
			}
		})
	}
}

// With require_ports a missing port stops the start with a usage error.
func TestRequirePortsMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "serial", "by-id", "usb-TEST_Gone-if00")
	cfg, err := quickConfig(t, 9600, true, "file:"+filepath.Join(t.TempDir(), "o.jsonl"), missing), error(nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := build(cfg, NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background())
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "usb-TEST_Gone-if00") {
		t.Fatalf("run = %v, want a usage error naming the port", err)
	}
}

// NMEA lines with good and bad checksums: good ones reach the main sink;
// bad ones are counted and dropped, or sent to the on_invalid sink only
// with the port name "<port>.invalid".
func TestIntegrationValidate(t *testing.T) {
	good := []string{"$GPGGA,1*4B", "$GPRMC,2*55", "$GPVTG,3*4D"}
	for _, g := range good {
		if err := (serialcb.NMEA{}).Valid([]byte(g)); err != nil {
			t.Fatalf("test data: %v", err)
		}
	}
	bad := []string{"$GPGGA,1*00", "garbage", "$GPRMC,2*4"}
	tests := []struct {
		name      string
		onInvalid string
		routes    []configs.Route
	}{
		{"drop (default)", "", nil},
		{"drop", "drop", nil},
		{"to a sink", "sink:rejects", nil},
		{"to a sink, with a route for all ports", "sink:rejects", []configs.Route{{Sinks: []string{"main"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := openLink(t, filepath.Join(t.TempDir(), "gps"))
			dir := t.TempDir()
			main, rejects := filepath.Join(dir, "main.jsonl"), filepath.Join(dir, "rejects.jsonl")
			cfg := &configs.Config{
				Ports: []configs.Port{{Name: "gps", Path: dev.Path(), Baud: 115200, Framing: `lines:\r\n`, Validate: "nmea", OnInvalid: tt.onInvalid}},
				Sinks: []configs.Sink{
					{Name: "main", URL: "file:" + main},
					{Name: "rejects", URL: "file:" + rejects},
				},
				Routes: tt.routes,
			}
			if tt.onInvalid == "" || tt.onInvalid == "drop" {
				// Without on_invalid: sink, route main only so rejects stays empty.
				cfg.Routes = []configs.Route{{Sinks: []string{"main"}}}
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			r := runDaemon(t, cfg)
			var stream bytes.Buffer
			for i := range good {
				stream.WriteString(good[i] + "\r\n" + bad[i] + "\r\n")
			}
			if _, err := dev.Write(stream.Bytes()); err != nil {
				t.Fatal(err)
			}
			got := waitLines(t, main, len(good))
			within(t, "bad frames counted", func() bool { return r.d.invalidFrames(0) == uint64(len(bad)) })
			toSink := tt.onInvalid == "sink:rejects"
			if toSink {
				waitLines(t, rejects, len(bad))
			}
			r.stop()
			if strings.Join(got, "|") != strings.Join(good, "|") {
				t.Errorf("main sink %q, want %q", got, good)
			}
			ports, rej := jsonlRecords(t, rejects)
			if !toSink {
				if len(rej) != 0 {
					t.Errorf("rejects sink got %q, want nothing", rej)
				}
			} else {
				if strings.Join(rej, "|") != strings.Join(bad, "|") {
					t.Errorf("rejects sink %q, want %q", rej, bad)
				}
				for _, p := range ports {
					if p != "gps.invalid" {
						t.Errorf("rejected record's port = %q, want gps.invalid", p)
					}
				}
			}
			// Rate limit: the first invalid frame is logged, the next ones
			// (within 10 s) are summed up at stop.
			lines := r.logs.FilterMessage("invalid frames").All()
			if len(lines) != 2 {
				t.Fatalf("%d 'invalid frames' lines, want 2 (first, then the rest at stop): %v", len(lines), lines)
			}
			if n := lines[0].ContextMap()["frames"]; n != uint64(1) {
				t.Errorf("first line counts %v frames, want 1", n)
			}
			if n := lines[1].ContextMap()["frames"]; n != uint64(len(bad)-1) {
				t.Errorf("stop line counts %v frames, want %d", n, len(bad)-1)
			}
		})
	}
}

// The validation on the read loop does not allocate for a valid frame.
func TestValidFrameDoesNotAllocate(t *testing.T) {
	for _, spec := range []string{"nmea", "sum8", "crc16-modbus"} {
		v, err := serialcb.ParseValidator(spec)
		if err != nil {
			t.Fatal(err)
		}
		c := &portCheck{v: v, invalidPort: "p.invalid"}
		payload := map[string][]byte{
			"nmea":         []byte("$GPGGA,1*4B\r\n"),
			"sum8":         {1, 2, 3, 6},
			"crc16-modbus": {0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x84, 0x0A},
		}[spec]
		f := serialcb.Frame{Port: "p", Payload: payload}
		log := zap.NewNop()
		allocs := testing.AllocsPerRun(100, func() {
			if !c.accept(log, &f) || f.Port != "p" {
				t.Fatalf("%s: valid frame rejected", spec)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per valid frame, want 0", spec, allocs)
		}
	}
}

// quickConfig is the configuration `serialcbd run --port … --sink SPEC`
// builds: one sink, named after its scheme, and ports given as PATH or
// NAME=PATH, framed by lines.
func quickConfig(t *testing.T, baud int, requirePorts bool, sink string, ports ...string) *configs.Config {
	t.Helper()
	name, _, _ := strings.Cut(sink, ":")
	cfg := &configs.Config{RequirePorts: requirePorts, Sinks: []configs.Sink{{Name: name, URL: sink}}}
	for _, p := range ports {
		n, path, ok := strings.Cut(p, "=")
		if !ok {
			n, path = filepath.Base(p), p
		}
		cfg.Ports = append(cfg.Ports, configs.Port{Name: n, Path: path, Baud: baud, Framing: "lines"})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}
