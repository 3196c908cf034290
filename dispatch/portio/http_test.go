//go:build linux

package portio_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

func post(t *testing.T, url, token string, body []byte) (int, portio.Outcome) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var o portio.Outcome
	_ = json.Unmarshal(b, &o)
	return resp.StatusCode, o
}

func TestHTTPWrites(t *testing.T) {
	m := &meter.Meter{Delay: time.Millisecond}
	g := newPtyRig(t, m, portio.Config{Writable: true, MaxBytes: 16, PerSecond: 1000})
	g.p.Start(nil)
	srv := httptest.NewServer(portio.HTTPHandler(func(name string) (portio.HTTPPort, bool) {
		return portio.HTTPPort{Port: g.p, Token: "s3cret", HTTP: true}, name == "meter" || name == "/dev/meter"
	}))
	defer srv.Close()
	url := srv.URL + "/ports/meter/write"

	payload := []byte{0x02, 'S', 'E', 'T', 0x00, 0xff, 0x03}
	code, o := post(t, url, "s3cret", payload)
	if code != 200 || !o.OK || o.Bytes != len(payload) || o.Source != "http" || o.Port != "meter" {
		t.Fatalf("write: %d %+v", code, o)
	}
	if code, _ := post(t, url, "", payload); code != 401 {
		t.Fatalf("without token: %d", code)
	}
	if code, _ := post(t, url, "wrong", payload); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, o := post(t, srv.URL+"/ports/%2Fdev%2Fmeter/write", "s3cret", []byte("by path")); code != 200 || !o.OK {
		t.Fatalf("by path: %d %+v", code, o)
	}
	if code, _ := post(t, srv.URL+"/ports/nope/write", "s3cret", payload); code != 404 {
		t.Fatalf("unknown port: %d", code)
	}
	if code, o := post(t, url, "s3cret", make([]byte, 17)); code != 413 || o.OK || o.Error == "" {
		t.Fatalf("17 bytes: %d %+v", code, o)
	}
	// A request with ?expect_reply=true returns the reply.
	code, o = post(t, url+"?expect_reply=true", "s3cret", meter.Request(1, 3, 0, 2))
	if code != 200 || o.Reply == nil || o.RTTMicros <= 0 {
		t.Fatalf("request: %d %+v", code, o)
	}
	g.stop()
	if code, _ := post(t, url, "s3cret", []byte("e")); code != 503 {
		t.Fatalf("after stop: %d", code)
	}
	if !bytes.Contains(m.Received(), payload) {
		t.Fatalf("device got %x", m.Received())
	}
}

// Over per_second is 429 at once. The rate is low enough that no token
// comes back between the two requests even on a loaded machine.
func TestHTTPRateLimited(t *testing.T) {
	g := newPtyRig(t, &meter.Meter{}, portio.Config{Writable: true, PerSecond: 0.01})
	g.p.Start(nil)
	srv := httptest.NewServer(portio.HTTPHandler(func(string) (portio.HTTPPort, bool) { return portio.HTTPPort{Port: g.p, HTTP: true}, true }))
	defer srv.Close()
	if code, _ := post(t, srv.URL+"/ports/meter/write", "", []byte("a")); code != 200 {
		t.Fatalf("first write: %d", code)
	}
	if code, o := post(t, srv.URL+"/ports/meter/write", "", []byte("b")); code != 429 || o.OK {
		t.Fatalf("second write: %d %+v", code, o)
	}
}

func TestHTTPPortDown(t *testing.T) {
	m := &meter.Meter{}
	g := newPtyRig(t, m, portio.Config{Writable: true})
	g.p.Start(nil)
	srv := httptest.NewServer(portio.HTTPHandler(func(string) (portio.HTTPPort, bool) { return portio.HTTPPort{Port: g.p, HTTP: true}, true }))
	defer srv.Close()
	g.pair.Close() // the device vanishes: the Reader loses the port
	for {
		code, o := post(t, srv.URL+"/ports/meter/write", "", []byte("x"))
		if code == 409 {
			break
		}
		if code != 200 && code != 500 {
			t.Fatalf("while the port goes: %d %+v", code, o)
		}
		time.Sleep(5 * time.Millisecond) // until the Reader has noticed
	}
}
