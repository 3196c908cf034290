package daemon

import (
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
)

// sdNotify sends one state to systemd when NOTIFY_SOCKET is set (Type=notify
// units); without it, it does nothing.
func (d *Daemon) sdNotify(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		d.log.Warn("systemd notify failed", zap.String("state", state), zap.Error(err))
	}
}

// notifyReady tells systemd the daemon is ready (every port present at start
// is open; absent ones are waited for) and, when the unit sets WatchdogSec,
// starts the watchdog pings. The returned stop ends the pings and waits for
// their goroutine.
func (d *Daemon) notifyReady() (stop func()) {
	d.sdNotify(sd.SdNotifyReady)
	return d.startWatchdog()
}

// startWatchdog starts the watchdog pings through the current event loop
// when the unit sets WatchdogSec; a reload that replaces the loop restarts
// them. The returned stop ends the pings and waits for their goroutine.
func (d *Daemon) startWatchdog() (stop func()) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("systemd watchdog settings ignored", zap.Error(err))
	}
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	loop := d.current().loop
	var wg sync.WaitGroup
	wg.Go(func() {
		runWatchdog(done, loop, interval/2, func() { d.sdNotify(sd.SdNotifyWatchdog) })
	})
	d.log.Debug("systemd watchdog on", zap.Duration("ping_every", interval/2))
	return func() { close(done); wg.Wait() }
}

// notifyStopping tells systemd the daemon has begun to stop.
func (d *Daemon) notifyStopping() { d.sdNotify(sd.SdNotifyStopping) }

// runWatchdog calls ping every interval, but only after the event loop has
// run a function handed to it with CallSoon: a stuck loop stops the pings,
// and systemd restarts the service. The ping itself (a datagram to systemd)
// is sent from this goroutine, so the loop does no I/O. At most one check is
// queued on the loop at a time. It returns when stop is closed.
func runWatchdog(stop <-chan struct{}, loop *asyncloop.Loop, interval time.Duration, ping func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	beat := make(chan struct{}, 1) // room for the one check in flight: the loop never waits on it
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := loop.CallSoon(func() { beat <- struct{}{} }); err != nil {
			continue // queue full past its timeout, or the loop is stopping: no ping
		}
		select {
		case <-beat:
			ping()
			t.Reset(interval) // after a stall: next ping one interval on, no stale tick
		case <-stop:
			return
		}
	}
}
