package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// portCheck.accept decodes valid frames into f.Fields; a payload the
// decoder cannot read goes on without fields, counted, and logged at a
// limited rate; an empty object leaves f.Fields nil.
func TestPortCheckDecode(t *testing.T) {
	dec, err := decode.Parse(`regex:^(?P<k>[a-z]+)?=(?P<v>\d+)$`)
	if err != nil {
		t.Fatal(err)
	}
	c := &portCheck{action: "drop", dec: dec, decodeSpec: "regex:…"}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(core)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, tt := range []struct {
		payload, fields string
		after           time.Duration
	}{
		{"a=1", `{"k":"a","v":"1"}`, 0},
		{"nope", "", time.Second},     // logged: the first
		{"nope", "", 2 * time.Second}, // within 10 s: counted only
		{"=7", `{"v":"7"}`, 3 * time.Second},
		{"nope", "", 12 * time.Second}, // 11 s after the last line: logged
	} {
		f := &serialcb.Frame{Port: "p", Seq: uint64(i + 1), ReceivedAt: t0.Add(tt.after), Payload: []byte(tt.payload)}
		if !c.accept(log, f) {
			t.Fatalf("frame %d dropped", i)
		}
		if string(f.Fields) != tt.fields || f.Port != "p" || string(f.Payload) != tt.payload {
			t.Errorf("frame %d: fields %q, want %q", i, f.Fields, tt.fields)
		}
	}
	if n := c.undecoded.Load(); n != 3 {
		t.Errorf("undecoded %d, want 3", n)
	}
	lines := logs.FilterMessage("frames not decoded; delivered without fields").All()
	if len(lines) != 2 || lines[0].ContextMap()["frames"] != uint64(1) || lines[1].ContextMap()["frames"] != uint64(2) {
		t.Errorf("log lines %v, want 2 counting 1 then 2", lines)
	}

	// Fields are the frame's own: the next frame does not overwrite them.
	f1 := &serialcb.Frame{Payload: []byte("x=1")}
	f2 := &serialcb.Frame{Payload: []byte("y=2")}
	c.accept(log, f1)
	c.accept(log, f2)
	if string(f1.Fields) != `{"k":"x","v":"1"}` {
		t.Errorf("first frame's fields became %s", f1.Fields)
	}

	// An empty object: no fields.
	c.dec, _ = decode.Parse(`regex:^(?P<x>x)?`)
	f := &serialcb.Frame{Payload: []byte("y")}
	if !c.accept(log, f) || f.Fields != nil {
		t.Errorf("empty object: fields %q, want nil", f.Fields)
	}
}

// Frames read from a port reach the sink with the fields of the port's
// decoder; a line it cannot read reaches it too, without fields.
func TestIntegrationDecode(t *testing.T) {
	dev := openLink(t, filepath.Join(t.TempDir(), "env"))
	out := filepath.Join(t.TempDir(), "out.jsonl")
	cfg := &configs.Config{
		Ports: []configs.Port{{Name: "env", Path: dev.Path(), Baud: 115200, Framing: "lines", Decode: "csv:ms,temp_c;numbers"}},
		Sinks: []configs.Sink{{Name: "out", URL: "file:" + out}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := runDaemon(t, cfg)
	if _, err := dev.Write([]byte("100,21.43\nno columns\n200,21.5,extra\n")); err != nil {
		t.Fatal(err)
	}
	waitLines(t, out, 3)
	within(t, "undecoded frame counted", func() bool { return r.d.undecodedFrames(0) == 1 })
	r.stop()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var rec struct {
			Payload string          `json:"payload"`
			Fields  json.RawMessage `json:"fields"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		got = append(got, rec.Payload+" => "+string(rec.Fields))
	}
	want := []string{
		`100,21.43 => {"ms":100,"temp_c":21.43}`,
		`no columns => `,
		`200,21.5,extra => {"ms":200,"temp_c":21.5}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := len(r.logs.FilterMessage("frames not decoded; delivered without fields").All()); n != 1 {
		t.Errorf("%d 'not decoded' log lines, want 1", n)
	}
}

// Decoding a valid frame costs one allocation: the frame's own Fields.
func TestDecodedFrameAllocatesFieldsOnly(t *testing.T) {
	for _, spec := range []string{"nmea", "csv:ms,temp;numbers", "json", "hex"} {
		dec, err := decode.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		c := &portCheck{action: "drop", dec: dec}
		payload := map[string]string{
			"nmea":                "$GPGGA,092653.00,4851.5022,N,00217.6689,E,1,08,1.0,36.8,M,47.3,M,,*5B",
			"csv:ms,temp;numbers": "100,21.43",
			"json":                `{"a": 1}`,
			"hex":                 "\x01\x02",
		}[spec]
		f := serialcb.Frame{Port: "p", Payload: []byte(payload)}
		log := zap.NewNop()
		allocs := testing.AllocsPerRun(100, func() {
			if !c.accept(log, &f) || len(f.Fields) == 0 {
				t.Fatalf("%s: frame not decoded", spec)
			}
		})
		if allocs != 1 {
			t.Errorf("%s: %v allocations per decoded frame, want 1", spec, allocs)
		}
	}
}
