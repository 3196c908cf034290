package serialcb

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestValidate(t *testing.T) {
	ok := PortConfig{Path: "/dev/ttyUSB0", Baud: 9600}
	want15 := "stop bits 1.5 is not supported" // by go.bug.st/serial on Unix
	if runtime.GOOS == "windows" {
		want15 = ""
	}
	tests := []struct {
		name    string
		mod     func(*PortConfig)
		wantErr string // "" = valid
	}{
		{name: "minimal", mod: func(*PortConfig) {}},
		{name: "all set", mod: func(c *PortConfig) {
			*c = PortConfig{Name: "gps", Path: "/dev/ttyACM0", Baud: 115200, DataBits: 7, Parity: ParityEven,
				StopBits: 2, Framer: Lines([]byte("\r\n")), MaxFrame: 1024, ReadBuffer: 4096,
				ReconnectMin: time.Second, ReconnectMax: time.Minute}
		}},
		{name: "odd non-standard baud", mod: func(c *PortConfig) { c.Baud = 250000 }},
		{name: "no path", mod: func(c *PortConfig) { c.Path = "" }, wantErr: "path must not be empty"},
		{name: "no baud", mod: func(c *PortConfig) { c.Baud = 0 }, wantErr: "baud must be > 0"},
		{name: "negative baud", mod: func(c *PortConfig) { c.Baud = -1 }, wantErr: "baud must be > 0"},
		{name: "data bits 4", mod: func(c *PortConfig) { c.DataBits = 4 }, wantErr: "data bits must be 5..8"},
		{name: "data bits 9", mod: func(c *PortConfig) { c.DataBits = 9 }, wantErr: "data bits must be 5..8"},
		{name: "data bits 5", mod: func(c *PortConfig) { c.DataBits = 5 }},
		{name: "parity typo", mod: func(c *PortConfig) { c.Parity = "Even" }, wantErr: "parity must be one of none, odd, even, mark, space"},
		{name: "parity mark", mod: func(c *PortConfig) { c.Parity = ParityMark }},
		{name: "stop bits 1.5", mod: func(c *PortConfig) { c.StopBits = 1.5 }, wantErr: want15},
		{name: "stop bits 3", mod: func(c *PortConfig) { c.StopBits = 3 }, wantErr: "stop bits must be 1, 1.5 or 2"},
		{name: "max frame negative", mod: func(c *PortConfig) { c.MaxFrame = -1 }, wantErr: "max frame must be"},
		{name: "max frame huge", mod: func(c *PortConfig) { c.MaxFrame = 1 << 30 }, wantErr: "max frame must be"},
		{name: "read buffer negative", mod: func(c *PortConfig) { c.ReadBuffer = -5 }, wantErr: "read buffer must be"},
		{name: "reconnect negative", mod: func(c *PortConfig) { c.ReconnectMin = -time.Second }, wantErr: "must not be negative"},
		{name: "reconnect min > max", mod: func(c *PortConfig) { c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second }, wantErr: "must not exceed"},
		{name: "reconnect min above default max", mod: func(c *PortConfig) { c.ReconnectMin = time.Minute }},
		{name: "errors are joined and name the port", mod: func(c *PortConfig) { c.Name, c.Baud, c.DataBits = "meter", 0, 1 },
			wantErr: "port \"meter\": baud must be > 0 (e.g. 9600 or 115200), got 0\ndata bits must be 5..8, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if _, err2 := NewReader(c, nil); (err2 == nil) != (err == nil) {
				t.Fatalf("NewReader disagrees with Validate: %v", err2)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := PortConfig{Path: "/dev/ttyUSB0", Baud: 9600}.withDefaults()
	if c.Name != "/dev/ttyUSB0" || c.DataBits != 8 || c.Parity != ParityNone || c.StopBits != 1 ||
		c.Framer == nil || c.MaxFrame != 65536 || c.ReadBuffer != 16384 ||
		c.ReconnectMin != 100*time.Millisecond || c.ReconnectMax != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	m := PortConfig{Path: "x", Baud: 19200, DataBits: 7, Parity: ParityOdd, StopBits: 2}.withDefaults().mode()
	if *m != (serial.Mode{BaudRate: 19200, DataBits: 7, Parity: serial.OddParity, StopBits: serial.TwoStopBits}) {
		t.Fatalf("mode %+v", m)
	}
}

// TestClassifyOpenError covers the failures a test cannot provoke as root
// (permission) or without a second process (busy).
func TestClassifyOpenError(t *testing.T) {
	cfg := PortConfig{Path: "/dev/ttyUSB0", Baud: 9600}.withDefaults()
	tests := []struct {
		err      error
		kind     OpenErrorKind
		sentinel error
		hint     string
	}{
		{syscall.ENOENT, OpenNotFound, ErrPortNotFound, "plugged in"},
		{syscall.ENODEV, OpenNotFound, ErrPortNotFound, "plugged in"},
		{syscall.EACCES, OpenPermission, ErrPermission, "ls -l /dev/ttyUSB0"}, // no such device here: the hint cannot know its group
		{syscall.EPERM, OpenPermission, ErrPermission, "owner, group and mode"},
		{syscall.EBUSY, OpenBusy, ErrPortBusy, "another process"},
		{&serial.PortError{}, OpenBusy, ErrPortBusy, "fuser"}, // the zero PortError is PortBusy
		{fmt.Errorf("wrapped: %w", &serial.PortError{}), OpenBusy, ErrPortBusy, "fuser"},
		{errors.New("something else"), OpenFailed, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			e := classifyOpenError(cfg, tt.err, false)
			if e.Kind != tt.kind || !strings.Contains(e.Hint, tt.hint) {
				t.Fatalf("kind %v hint %q, want %v and %q", e.Kind, e.Hint, tt.kind, tt.hint)
			}
			for _, s := range []error{ErrPortNotFound, ErrPermission, ErrPortBusy} {
				if errors.Is(e, s) != (s == tt.sentinel) {
					t.Errorf("errors.Is(%v) = %v", s, !(s == tt.sentinel))
				}
			}
			if !errors.Is(e, tt.err) {
				t.Error("does not unwrap to the cause")
			}
			if !strings.HasPrefix(e.Error(), "open serial port /dev/ttyUSB0: ") {
				t.Errorf("message %q", e.Error())
			}
		})
	}
}

// TestOversizeLogRateLimit drives the rate limiter with synthetic read times:
// the first oversize frame is logged, later ones within 10 s are counted
// and reported by the next line after the interval.
func TestOversizeLogRateLimit(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	r, err := NewReader(PortConfig{Path: "/dev/null", Baud: 9600}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, at := range []time.Duration{0, time.Second, 5 * time.Second, 9 * time.Second, 10 * time.Second, 11 * time.Second} {
		r.noteOversize(100+i, t0.Add(at))
	}
	got := logs.FilterMessage("oversize frames dropped").All()
	if len(got) != 2 {
		t.Fatalf("%d log lines, want 2", len(got))
	}
	if f := got[0].ContextMap()["frames"]; f != int64(1) {
		t.Errorf("first line reports %v frames, want 1", f)
	}
	if f, b := got[1].ContextMap()["frames"], got[1].ContextMap()["bytes"]; f != int64(4) || b != int64(101+102+103+104) {
		t.Errorf("second line reports %v frames %v bytes, want 4 and %d", f, b, 101+102+103+104)
	}
	r.logStop() // the frame at 11 s is reported at stop
	if n := logs.FilterMessage("oversize frames dropped").Len(); n != 3 {
		t.Errorf("%d lines after stop, want 3", n)
	}
	if st := r.Stats(); st.Oversize != 6 {
		t.Errorf("counted %d, want 6", st.Oversize)
	}
}
