package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
)

// Every sink spec the README documents resolves to a sink kind.
func TestRegistryResolvesDocumentedSpecs(t *testing.T) {
	reg := NewRegistry()
	dir := t.TempDir()
	for _, spec := range []string{
		"sqlite:" + filepath.Join(dir, "a.db"),
		"http://127.0.0.1:8080/ingest",
		"https://api.example.com/ingest",
		"file:" + filepath.Join(dir, "frames.jsonl"),
		"stdout",
		"postgres://serialcbd@db.example.com:5432/plant?sslmode=verify-full",
		"postgresql://127.0.0.1/test",
		"mqtt://127.0.0.1:1883/plant/{port}",
		"mqtts://broker.example.com/plant/{port}/{field.type}",
		"nats://127.0.0.1:4222/plant.{port}",
		"tls://nats.example.com:4222/plant.{port}",
		"kafka://k1.example.com:9092,k2.example.com/plant.{port}",
		"kafkas://k1.example.com:9093/plant",
		"amqp://127.0.0.1:5672/plant/site.{port}",
		"amqps://rabbit.example.com//frames",
	} {
		cfg := &configs.Config{Ports: []configs.Port{{Name: "p", Path: "/dev/x"}}, Sinks: []configs.Sink{{Name: "s", URL: spec}}}
		tg, err := reg.target(cfg, 0, zap.NewNop())
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if err := tg.Sink.Close(); err != nil {
			t.Errorf("%s: close: %v", spec, err)
		}
	}
	if _, err := reg.lookup("ftp://x"); err == nil || !strings.Contains(err.Error(), "expected sqlite:PATH") {
		t.Errorf("unknown scheme: %v", err)
	}
}
