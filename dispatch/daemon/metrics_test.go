package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// pipeline is the daemon running in-process on one virtual port, with its
// metrics server on a free loopback port.
type pipeline struct {
	pair *vport.Pair
	d    *Daemon
	base string // http://127.0.0.1:PORT
	stop func() // stops the daemon and the metrics server, checking both
}

func startPipeline(t *testing.T, withMetrics bool) *pipeline {
	t.Helper()
	pair, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = pair.Close() })
	cfg := &configs.Config{
		Ports:    []configs.Port{{Name: "dev", Path: pair.Path(), Baud: 115200}},
		Sinks:    []configs.Sink{{Name: "file", URL: "file:" + filepath.Join(t.TempDir(), "out.jsonl")}},
		StateDir: t.TempDir(),
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d, err := build(cfg, NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{pair: pair, d: d}
	var ms *MetricsServer
	if withMetrics {
		ln, err := ListenMetrics("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ms = ServeMetrics(ln, d, zap.NewNop())
		p.base = "http://" + ms.addr.String()
	}
	// Not ready before the daemon runs: the loop is not started, the port
	// not open.
	if withMetrics {
		code, body := get(t, p.base+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"running":false`) {
			t.Fatalf("/readyz before start: %d %s", code, body)
		}
	}
	stopDaemon := startBuilt(t, d)
	stopped := false
	p.stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		stopDaemon()
		if err := ms.Close(); err != nil {
			t.Errorf("metrics server close: %v", err)
		}
	}
	t.Cleanup(p.stop)
	return p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the samples of a /metrics page in the text format, keyed
// by series as printed: name{label="value",...}.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples
}

// within polls cond until it holds or the deadline passes; only for waiting
// on a pseudo-terminal, whose bytes arrive when the kernel passes them on.
func within(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMetricsReadyz(t *testing.T) {
	p := startPipeline(t, true)
	const n = 1000
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, "frame %04d\n", i) // 11 bytes each
	}
	if _, err := p.pair.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	var m map[string]float64
	// The sink's counter moves when the write is acknowledged, the
	// dispatcher's when the frame's future resolves just after: wait for both.
	within(t, "every frame delivered", func() bool {
		m = scrape(t, p.base)
		return m[`serialcbd_sink_delivered_total{sink="file"}`] >= n && m[`serialcbd_frames_delivered_total`] >= n &&
			m[`serialcbd_sink_spool_frames{sink="file"}`] == 0 // acknowledged out of the spool
	})
	want := map[string]float64{
		`serialcbd_port_frames_total{port="dev"}`:                    n,
		`serialcbd_port_bytes_total{port="dev"}`:                     float64(buf.Len()),
		`serialcbd_port_oversize_frames_total{port="dev"}`:           0,
		`serialcbd_port_reconnects_total{port="dev"}`:                0,
		`serialcbd_port_invalid_frames_total{port="dev"}`:            0,
		`serialcbd_port_up{port="dev"}`:                              1,
		`serialcbd_sink_up{sink="file"}`:                             1,
		`serialcbd_sink_delivered_total{sink="file"}`:                n,
		`serialcbd_sink_failed_total{sink="file"}`:                   0,
		`serialcbd_sink_retried_total{sink="file"}`:                  0,
		`serialcbd_sink_pending_frames{sink="file"}`:                 0,
		`serialcbd_frames_submitted_total`:                           n,
		`serialcbd_frames_delivered_total`:                           n,
		`serialcbd_frames_failed_total`:                              0,
		`serialcbd_loop_unobserved_failures_total`:                   0,
		`serialcbd_frames_unrouted_total`:                            0,
		`serialcbd_port_flushed_frames_total{port="dev"}`:            0,
		`serialcbd_port_noise_bytes_total{port="dev"}`:               0,
		`serialcbd_sink_spooled_total{sink="file"}`:                  n,
		`serialcbd_sink_dead_lettered_total{sink="file"}`:            0,
		`serialcbd_sink_spool_dropped_frames_total{sink="file"}`:     0,
		`serialcbd_sink_delivery_latency_seconds_count{sink="file"}`: n,
		`promhttp_metric_handler_errors_total{cause="gathering"}`:    0,
	}
	for series, v := range want {
		got, ok := m[series]
		if !ok {
			t.Errorf("%s missing from /metrics", series)
		} else if got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for _, series := range []string{"serialcbd_throttled_total", "serialcbd_loop_queued", "serialcbd_loop_running_handlers",
		`serialcbd_sink_inflight_writes{sink="file"}`, "go_goroutines", "process_resident_memory_bytes",
		`serialcbd_port_last_frame_age_seconds{port="dev"}`, `serialcbd_sink_spool_bytes{sink="file"}`,
		`serialcbd_sink_delivery_latency_seconds_bucket{sink="file",le="0.001"}`} {
		if _, ok := m[series]; !ok {
			t.Errorf("%s missing from /metrics", series)
		}
	}

	if code, body := get(t, p.base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get(t, p.base+"/readyz")
	rd := decodeReadiness(t, body)
	if code != http.StatusOK || !rd.Ready || !rd.Ports["dev"].Up || !rd.Loop.Running {
		t.Errorf("/readyz while running: %d %s", code, body)
	}
	if s := rd.Sinks["file"]; s.Delivered != n {
		t.Errorf("/readyz sinks: %s", body)
	}

	// The device vanishes: not ready, and the body says which port.
	if err := p.pair.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, "/readyz to report the port down", func() bool {
		code, body = get(t, p.base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	rd = decodeReadiness(t, body)
	if rd.Ready || rd.Ports["dev"].Up || !rd.Loop.Running {
		t.Errorf("/readyz after the port vanished: %s", body)
	}
	if v := scrape(t, p.base)[`serialcbd_port_up{port="dev"}`]; v != 0 {
		t.Errorf("serialcbd_port_up = %v after the port vanished", v)
	}
	if code, _ := get(t, p.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the port vanished: %d", code)
	}

	// Stopping shuts the server down: nothing listens any more.
	p.stop()
	if resp, err := http.Get(p.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("metrics server still answers after stop: %s", resp.Status)
	}
}

func decodeReadiness(t *testing.T, body string) readiness {
	t.Helper()
	var rd readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return rd
}

func TestMetricsDisabled(t *testing.T) {
	ln, err := ListenMetrics("")
	if ln != nil || err != nil {
		t.Fatalf("ListenMetrics(\"\") = %v, %v; want nil, nil", ln, err)
	}
	ms := ServeMetrics(nil, nil, zap.NewNop())
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildInfoGauge(t *testing.T) {
	tests := []struct {
		build BuildInfo
		want  map[string]string
	}{
		{BuildInfo{Version: "0.1.0", Commit: "0123456789ab", GoVersion: "go1.26.8"},
			map[string]string{"version": "0.1.0", "commit": "0123456789ab", "goversion": "go1.26.8"}},
		{BuildInfo{}, map[string]string{"version": "devel", "commit": "", "goversion": runtime.Version()}},
	}
	for _, tt := range tests {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newBuildInfoGauge(tt.build))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(mfs) != 1 || mfs[0].GetName() != "serialcbd_build_info" || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gathered %v, want one serialcbd_build_info sample", mfs)
		}
		m := mfs[0].GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("value %v, want 1", v)
		}
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("labels %v, want %v", got, tt.want)
		}
	}
}
