package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
)

// The daemon speaks sd_notify to a real datagram socket: READY=1 once the
// port is open, WATCHDOG=1 pings while the loop runs, STOPPING=1 at stop.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "20000") // pings every 10ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	// next waits for the next datagram; the deadline only bounds a failure.
	next := func() string {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		return string(buf[:n])
	}
	p := startPipeline(t, false)
	if got := next(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if got := next(); got != "WATCHDOG=1" {
		t.Fatalf("second notification %q, want WATCHDOG=1", got)
	}
	p.stop()
	for {
		got := next()
		if got == "STOPPING=1" {
			break
		}
		if got != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q before STOPPING=1", got)
		}
	}
}

// A stuck event loop stops the watchdog pings; they resume when it does.
func TestWatchdogFollowsLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop := asyncloop.New(asyncloop.Options{})
		loop.Start()
		var pings atomic.Int32
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			runWatchdog(stop, loop, 10*time.Millisecond, func() { pings.Add(1) })
		}()
		check := func(want int32) {
			t.Helper()
			synctest.Wait()
			if got := pings.Load(); got != want {
				t.Fatalf("pings = %d, want %d", got, want)
			}
		}
		time.Sleep(10 * time.Millisecond)
		check(1)
		time.Sleep(10 * time.Millisecond)
		check(2)

		release := make(chan struct{})
		if err := loop.CallSoon(func() { <-release }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		check(2) // ten intervals, no ping: the loop is stuck
		close(release)
		check(3) // the pending check runs, the ping goes out
		time.Sleep(10 * time.Millisecond)
		check(4)

		close(stop)
		<-done
		if err := loop.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}
