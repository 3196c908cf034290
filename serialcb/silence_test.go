//go:build linux

package serialcb

import (
	"testing"
	"time"
)

// A port that goes quiet past SilenceTimeout is reopened (logged, counted),
// and frames sent after the reopen are delivered.
func TestIntegrationReaderSilenceWatchdog(t *testing.T) {
	p := newPair(t)
	log, logs := newLogWatch()
	r := newReader(t, PortConfig{Name: "quiet", Path: p.Path(), SilenceTimeout: 50 * time.Millisecond, ReconnectMin: time.Millisecond}, log)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	if _, err := p.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 1)
	logs.waitFor(t, "no data from the serial port: reopening it", 1)
	logs.waitFor(t, "serial port back", 1)
	if _, err := p.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	c.waitN(t, 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.SilenceReopens < 1 || st.Reconnects < 1 {
		t.Errorf("stats %+v: want a silence reopen and a reconnect", st)
	}
	if got := c.payloads(); got[0] != "before" || got[1] != "after" {
		t.Errorf("frames %q", got)
	}
}

func TestSilenceTimeoutValidate(t *testing.T) {
	if err := (PortConfig{Name: "p", Path: "/dev/x", Baud: 9600, SilenceTimeout: -time.Second}).Validate(); err == nil {
		t.Error("negative silence timeout accepted")
	}
}
