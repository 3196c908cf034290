//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// TestRunStopsOnContext is the Windows service's stop, run here: the
// service manager's stop cancels the context given to runContext, and run
// stops as on SIGTERM: it exits 0, and what it read was delivered.
func TestRunStopsOnContext(t *testing.T) {
	p, err := vport.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Write([]byte("one\ntwo\nthree\n")); err != nil {
		t.Fatal(err)
	}
	// An HTTP sink that says when it has all three frames.
	var mu sync.Mutex
	var bodies []string
	seen := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if bodies = append(bodies, string(body)); len(bodies) == 3 {
			close(seen)
		}
	}))
	defer srv.Close()
	received := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(bodies, "\n")
	}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"run", "--metrics-addr", "", "--spool=false", "--state-dir", t.TempDir(),
			"--port", "dev=" + p.Path(), "--sink", srv.URL + "/ingest"}, &out, &errb)
	}()
	select {
	case <-seen:
	case code := <-done:
		t.Fatalf("run ended with %d before delivering: %s", code, errb.String())
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("3 frames not delivered after 10s; got %q, stderr %s", received(), errb.String())
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("exit %d after the context ended, want 0; stderr: %s", code, errb.String())
	}
	for _, want := range []string{`"payload":"one"`, `"payload":"two"`, `"payload":"three"`} {
		if !strings.Contains(received(), want) {
			t.Errorf("the sink did not get %s: %q", want, received())
		}
	}
}
