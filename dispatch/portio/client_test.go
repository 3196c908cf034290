//go:build linux

package portio_test

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

// TestPostWrite: the client side of the write endpoint tells a write, a
// refusal, a port the daemon owns and no daemon apart.
func TestPostWrite(t *testing.T) {
	g := newPtyRig(t, &meter.Meter{Delay: time.Millisecond}, portio.Config{Writable: true, MaxBytes: 16, PerSecond: 1000})
	g.p.Start(nil)
	srv := httptest.NewServer(portio.HTTPHandler(func(name string) (portio.HTTPPort, bool) {
		switch name {
		case "/dev/meter":
			return portio.HTTPPort{Port: g.p, Token: "s3cret", HTTP: true}, true
		case "owned":
			return portio.HTTPPort{Port: g.p}, true
		}
		return portio.HTTPPort{}, false
	}))
	target := func(port string) string {
		t.Helper()
		u, err := portio.WriteURL(srv.Listener.Addr().String(), port, false)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	a, err := portio.PostWrite(t.Context(), target("/dev/meter"), []byte("hello"), "s3cret")
	if err != nil || !a.OK || a.Bytes != 5 || a.RequestID == "" {
		t.Fatalf("write: %+v, %v", a, err)
	}
	var re *portio.RemoteError
	if _, err := portio.PostWrite(t.Context(), target("/dev/meter"), []byte("x"), ""); !errors.As(err, &re) || re.Status != 401 {
		t.Errorf("without a token: %v, want a *RemoteError with 401", err)
	}
	if _, err := portio.PostWrite(t.Context(), target("owned"), []byte("x"), ""); !errors.As(err, &re) || !re.Answer.Owned {
		t.Errorf("owned port: %v, want a *RemoteError with Owned", err)
	}
	if _, err := portio.PostWrite(t.Context(), target("nope"), []byte("x"), ""); !errors.Is(err, portio.ErrNoWriter) {
		t.Errorf("unknown port: %v, want ErrNoWriter", err)
	}
	srv.Close()
	if _, err := portio.PostWrite(t.Context(), target("/dev/meter"), []byte("x"), ""); !errors.Is(err, portio.ErrNoWriter) {
		t.Errorf("nothing listening: %v, want ErrNoWriter", err)
	}
}

func TestWriteURL(t *testing.T) {
	for _, tc := range []struct {
		addr, port string
		expect     bool
		want       string
	}{
		{"127.0.0.1:9464", "meter", false, "http://127.0.0.1:9464/ports/meter/write"},
		{"http://[::1]:9464", "/dev/ttyUSB0", true, "http://[::1]:9464/ports/%2Fdev%2FttyUSB0/write?expect_reply=true"},
	} {
		if got, err := portio.WriteURL(tc.addr, tc.port, tc.expect); err != nil || got != tc.want {
			t.Errorf("WriteURL(%q, %q) = %q, %v; want %q", tc.addr, tc.port, got, err, tc.want)
		}
	}
	if _, err := portio.WriteURL("127.0.0.1:94 64", "meter", false); err == nil {
		t.Error("a malformed address gives no error")
	}
}
