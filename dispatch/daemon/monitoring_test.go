package daemon

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// exportedMetrics returns the names of the serialcbd_* metrics the
// daemon's collector exports (a histogram also as its _bucket, _sum and
// _count series).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	ch := make(chan *prometheus.Desc, 100)
	newStatsCollector(nil).Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names[m[1]] = true
		if strings.HasSuffix(m[1], "_seconds") {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[m[1]+s] = true
			}
		}
	}
	if len(names) < 30 {
		t.Fatalf("only %d metric names found: %v", len(names), names)
	}
	return names
}

var metricName = regexp.MustCompile(`serialcbd_[a-z0-9_]+`)

// checkNames fails for every serialcbd_* name in text that the daemon does
// not export, and returns the names used.
func checkNames(t *testing.T, file, text string, exported map[string]bool) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, n := range metricName.FindAllString(text, -1) {
		used[n] = true
		if !exported[n] {
			t.Errorf("%s uses %s, which the daemon does not export", file, n)
		}
	}
	return used
}

// TestMonitoringFilesUseExportedMetrics parses the shipped Prometheus
// rules (and their promtool test) and the Grafana dashboard and checks
// that every serialcbd_* metric they query is one the daemon exports, so
// a renamed metric cannot silently break an alert or a panel.
func TestMonitoringFilesUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)

	const rulesFile = "../../configs/prometheus/serialcbd-rules.yml"
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	alerts := map[string]bool{}
	var exprs strings.Builder
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("%s: a rule without alert or expr: %+v", rulesFile, r)
			}
			alerts[r.Alert] = true
			exprs.WriteString(r.Expr + "\n")
		}
	}
	for _, want := range []string{"SerialcbdDown", "SerialcbdPortDown", "SerialcbdPortSilent", "SerialcbdSinkFailing",
		"SerialcbdSpoolGrowing", "SerialcbdDeadLetters"} {
		if !alerts[want] {
			t.Errorf("%s has no alert %s", rulesFile, want)
		}
	}
	checkNames(t, rulesFile, exprs.String(), exported)

	const testFile = "../../configs/prometheus/serialcbd-rules.test.yml"
	raw, err = os.ReadFile(testFile)
	if err != nil {
		t.Fatal(err)
	}
	checkNames(t, testFile, string(raw), exported)

	const dashFile = "../../configs/grafana/serialcbd.json"
	raw, err = os.ReadFile(dashFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashFile, err)
	}
	var dexprs strings.Builder
	titles := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		titles[p.Title] = true
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashFile, p.Title)
		}
		for _, tg := range p.Targets {
			dexprs.WriteString(tg.Expr + "\n")
		}
	}
	used := checkNames(t, dashFile, dexprs.String(), exported)
	for _, want := range []string{"serialcbd_port_up", "serialcbd_port_frames_total", "serialcbd_port_invalid_frames_total",
		"serialcbd_sink_delivered_total", "serialcbd_sink_delivery_latency_seconds_bucket", "serialcbd_sink_spool_frames",
		"serialcbd_sink_dead_lettered_total", "serialcbd_loop_queued"} {
		if !used[want] {
			t.Errorf("%s: no panel queries %s", dashFile, want)
		}
	}
}

// TestREADMEListsEveryMetric: the metrics table of the README names every
// metric the daemon exports.
func TestREADMEListsEveryMetric(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	var missing []string
	for n := range exportedMetrics(t) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.Contains(readme, "`"+base+"`") || strings.Contains(readme, "`"+base+"` /") {
			continue
		}
		// The table groups spool_frames / _bytes on one row.
		if strings.HasSuffix(base, "_bytes") && strings.Contains(readme, "`"+strings.TrimSuffix(base, "_bytes")+"_frames` / `_bytes`") {
			continue
		}
		missing = append(missing, base)
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README.md does not list %v", missing)
	}
}
