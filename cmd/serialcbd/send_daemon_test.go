//go:build linux

package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	modbus "github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

func runSend(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newSendCmd(&globals{stdout: &out, stderr: &out})
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// send never opens a port another process holds exclusively, even as root.
func TestSendRefusesExclusivePort(t *testing.T) {
	pair, err := vport.Open()
	if err != nil {
		t.Skip(err)
	}
	defer pair.Close()
	held, err := serialcb.Open(serialcb.PortConfig{Path: pair.Path(), Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = runSend(t, "--daemon", "none", "--port", pair.Path(), "hello")
	if err == nil || !strings.Contains(err.Error(), "held exclusively") {
		t.Fatalf("err = %v", err)
	}
	// The hold is intact: another open still fails for a non-root user,
	// and the flag is still set for everyone.
	if h, err := serialcb.HeldExclusively(pair.Path()); err != nil || !h {
		t.Fatalf("hold after send: %v %v", h, err)
	}
}

// send talks to the daemon that owns the port, by name or by path.
func TestSendThroughDaemon(t *testing.T) {
	pair, err := vport.Open()
	if err != nil {
		t.Skip(err)
	}
	framer, _ := serialcb.ParseFraming("idle:3.5c")
	r, err := serialcb.NewReader(serialcb.PortConfig{Name: "meter", Path: pair.Path(), Baud: 9600, Framer: framer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loop := asyncloop.New(asyncloop.Options{})
	loop.Start()
	p, err := portio.New(loop, r, portio.Config{Port: "meter", Writable: true, PerSecond: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &modbus.Meter{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Serve(ctx, pair) })
	wg.Go(func() { _ = r.Run(ctx, func(f serialcb.Frame) { p.OnFrame(&f, nil) }) })
	<-r.Opened()
	p.Start(nil)
	defer func() {
		p.Stop()
		<-p.Idle()
		cancel()
		pair.Close()
		wg.Wait()
		loop.Shutdown(context.Background())
	}()
	srv := httptest.NewServer(portio.HTTPHandler(func(name string) (portio.HTTPPort, bool) {
		return portio.HTTPPort{Port: p, HTTP: true}, name == "meter" || name == pair.Path()
	}))
	defer srv.Close()

	out, err := runSend(t, "--daemon", srv.URL, "--port", pair.Path(), "--hex", "00 ff 10")
	if err != nil || !strings.Contains(out, "sent 3 bytes to "+pair.Path()+" through the daemon") {
		t.Fatalf("by path: %q %v", out, err)
	}
	out, err = runSend(t, "--daemon", strings.TrimPrefix(srv.URL, "http://"), "--port", "meter", "--expect-reply", "--hex", "01 03 00 00 00 02 C4 0B")
	if err != nil || !strings.Contains(out, "reply after") || !strings.Contains(out, "01030400") {
		t.Fatalf("request: %q %v", out, err)
	}
	if !m.WaitReceived(t.Context(), func(b []byte) bool { return bytes.Contains(b, []byte{0, 0xff, 0x10}) }) {
		t.Fatal("device did not get the bytes")
	}
	// The daemon's hold was never touched.
	if h, err := serialcb.HeldExclusively(pair.Path()); err != nil || !h {
		t.Fatalf("hold: %v %v", h, err)
	}
}
