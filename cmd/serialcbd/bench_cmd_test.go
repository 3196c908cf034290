//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/daemon/bench"
)

// runBenchCmd runs `serialcbd bench ARGS` in-process, the way run() does,
// without the root command (which registers it).
func runBenchCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb}
	cmd := newBenchCmd(g)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	code = exitOK
	if err := cmd.Execute(); err != nil {
		code = exitCode(err)
		errb.WriteString("serialcbd: " + err.Error() + "\n")
	}
	return code, out.String(), errb.String()
}

func benchJSON(t *testing.T, args ...string) bench.Report {
	t.Helper()
	code, stdout, stderr := runBenchCmd(t, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	return rep
}

func checkBench(t *testing.T, rep bench.Report, frames int) {
	t.Helper()
	for name, r := range map[string]bench.Result{"raw": rep.Raw, "serialcbd": rep.Serialcbd} {
		if r.Sent != frames || r.Delivered != frames || r.Lost != 0 || r.Failed != 0 {
			t.Errorf("%s: sent %d, delivered %d, lost %d, failed %d; want %d, %d, 0, 0", name, r.Sent, r.Delivered, r.Lost, r.Failed, frames, frames)
		}
		if r.LatencySamples != uint64(frames) {
			t.Errorf("%s: %d latency samples, want %d", name, r.LatencySamples, frames)
		}
		l := r.Latency
		if !(0 < l.P50 && l.P50 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
			t.Errorf("%s: latency percentiles out of order: %+v", name, l)
		}
		if r.FramesPerS <= 0 || r.DurationS <= 0 || r.CPUSPer1kFrame <= 0 {
			t.Errorf("%s: frames/s %v, duration %v s, CPU %v s per 1k frames; want all positive", name, r.FramesPerS, r.DurationS, r.CPUSPer1kFrame)
		}
	}
	if rep.PeakRSSKiB <= 0 {
		t.Errorf("peak RSS %d KiB", rep.PeakRSSKiB)
	}
}

func TestBenchSQLite(t *testing.T) {
	rep := benchJSON(t, "--frames", "2000")
	checkBench(t, rep, 2000)
	if rep.Batch != 64 || rep.Size != 64 || rep.Ports != 1 || !strings.HasPrefix(rep.Sink, "sqlite") {
		t.Errorf("defaults: batch %d, size %d, ports %d, sink %q", rep.Batch, rep.Size, rep.Ports, rep.Sink)
	}
}

func TestBenchHTTP(t *testing.T) {
	rep := benchJSON(t, "--frames", "2000", "--sink", "http")
	checkBench(t, rep, 2000)
}

func TestBenchHTTPNDJSON(t *testing.T) {
	rep := benchJSON(t, "--frames", "3000", "--sink", "http-ndjson")
	checkBench(t, rep, 3000)
	if !strings.HasPrefix(rep.Sink, "http-ndjson") {
		t.Errorf("sink label %q", rep.Sink)
	}
}

func TestBenchPortsSizesAndRate(t *testing.T) {
	rep := benchJSON(t, "--frames", "1001", "--ports", "3", "--size", "16", "--sink", "file:"+t.TempDir()+"/out.jsonl")
	checkBench(t, rep, 1001)
	rep = benchJSON(t, "--frames", "200", "--size", "4096", "--rate", "2000")
	checkBench(t, rep, 200)
	if rep.Batch != 1 {
		t.Errorf("--rate without --batch: batch %d, want 1", rep.Batch)
	}
	if rep.Serialcbd.DurationS < 0.09 {
		t.Errorf("200 frames at 2000/s took %.3f s; the rate was not applied", rep.Serialcbd.DurationS)
	}
}

func TestBenchTable(t *testing.T) {
	code, stdout, stderr := runBenchCmd(t, "--frames", "500")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"raw port", "serialcbd vs raw", "frames/s", "latency p99", "CPU s / 1,000 frames", "allocs / frame", "peak RSS"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if testing.Verbose() {
		os.Stdout.WriteString(stdout)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--frmes", "10"},
		{"--frames", "x"},
		{"--frames", "0"},
		{"--size", "8"},
		{"--rate", "-1"},
		{"--batch", "-1"},
		{"--ports", "0"},
		{"--sink", "ftp://x", "--frames", "10"},
		{"extra-arg"},
	} {
		code, _, stderr := runBenchCmd(t, args...)
		if code != exitUsage {
			t.Errorf("bench %v: exit %d, want %d\n%s", args, code, exitUsage, stderr)
		}
	}
}
