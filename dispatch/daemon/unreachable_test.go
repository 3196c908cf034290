package daemon

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/configs"
)

// A sink that is unreachable at start gets one clear warning; the daemon
// starts anyway, and the other sinks receive every frame meanwhile.
func TestIntegrationSinkUnreachableAtStart(t *testing.T) {
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("http_proxy", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/ingest"
	ln.Close()
	dir := t.TempDir()
	dev := openLink(t, filepath.Join(dir, "dev"))
	out := filepath.Join(dir, "frames.jsonl")
	cfg := &configs.Config{
		DrainTimeout: 500 * time.Millisecond, // the HTTP frames cannot be delivered: do not wait long at stop
		Ports:        []configs.Port{{Name: "dev", Path: dev.Path(), Baud: 115200}},
		Sinks: []configs.Sink{
			{Name: "file", URL: "file:" + out},
			{Name: "api", URL: down},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := runDaemon(t, cfg)
	for i := range 20 {
		if _, err := fmt.Fprintf(dev, "line %d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	waitLines(t, out, 20)
	r.stop()
	if n := r.logs.FilterMessageSnippet("unreachable at start").Len(); n != 1 {
		t.Errorf("%d 'unreachable at start' warnings, want 1", n)
	}
	if st := r.d.disp.Stats(); st.Sinks[0].Delivered != 20 || st.Sinks[1].Delivered != 0 {
		t.Errorf("delivered file %d, api %d; want 20 and 0", st.Sinks[0].Delivered, st.Sinks[1].Delivered)
	}
}
