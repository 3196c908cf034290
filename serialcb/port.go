package serialcb

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// Parity is a serial line's parity setting.
type Parity string

// The parity settings; the empty Parity means ParityNone.
const (
	ParityNone  Parity = "none"
	ParityOdd   Parity = "odd"
	ParityEven  Parity = "even"
	ParityMark  Parity = "mark"
	ParitySpace Parity = "space"
)

// Defaults applied to a zero PortConfig field.
const (
	DefaultDataBits     = 8
	DefaultMaxFrame     = 64 << 10
	DefaultReadBuffer   = 16 << 10
	DefaultReconnectMin = 100 * time.Millisecond
	DefaultReconnectMax = 5 * time.Second
)

// Upper limits: a frame or a read buffer is memory held per port.
const (
	maxMaxFrame   = 16 << 20
	maxReadBuffer = 1 << 20
)

// PortConfig describes one port: where it is, its line settings and how its
// stream is framed. The zero value of every field but Path and Baud means
// its default.
type PortConfig struct {
	// Name identifies the port in frames, logs and metrics; default Path.
	Name string
	// Path is the device, e.g. /dev/ttyUSB0 or a /dev/serial/by-id/ link.
	Path string
	// Baud is the line speed in bits per second; required.
	Baud int
	// DataBits is 5..8; default 8.
	DataBits int
	// Parity is none, odd, even, mark or space; default none.
	Parity Parity
	// StopBits is 1, 1.5 or 2; default 1. 1.5 exists on Windows only.
	StopBits float64
	// Framer cuts the stream into frames; default Lines("\n").
	Framer Framer
	// MaxFrame caps the bytes of one frame, delimiter included; longer
	// frames are dropped and counted. Default 65536.
	MaxFrame int
	// ReadBuffer is the most bytes one read system call returns; default
	// 16384.
	ReadBuffer int
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// attempts to reopen a port that vanished or cannot be opened; defaults
	// 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// SilenceTimeout, when positive, reopens the port after that long
	// without a byte: some USB adapters and devices wedge without
	// disconnecting, and a reopen (which toggles DTR) revives them.
	SilenceTimeout time.Duration
	// PartialAtStop says what Run does with a partial frame when its ctx
	// ends: PartialDrop (logged at debug) or PartialEmit (delivered as a
	// frame, counted as flushed). "" is the framer's default: emit for
	// idle framing, whose pending frame only waits for its gap, drop for
	// the others, whose pending bytes lack their end. An emitted partial
	// frame is decoded as a whole one would be (SLIP and stx-etx escapes
	// undone, STX and COBS code bytes removed). Framers whose frames are
	// only known good by a checksum (gnss) refuse emit: see Validate.
	PartialAtStop string
	// WriteQueue bounds the write requests waiting for the port (see
	// Reader.Write); a request beyond it fails at once. Default 16.
	WriteQueue int
}

// PartialAtStop values.
const (
	PartialDrop = "drop"
	PartialEmit = "emit"
)

// Validate checks c without any I/O, so a config can be checked on a machine
// without the device.
func (c PortConfig) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Path == "" {
		add("path must not be empty")
	}
	if c.Baud <= 0 {
		add("baud must be > 0 (e.g. 9600 or 115200), got %d", c.Baud)
	}
	if p := c.PartialAtStop; p != "" && p != PartialDrop && p != PartialEmit {
		add("partial frame at stop must be %q or %q, got %q", PartialEmit, PartialDrop, p)
	}
	if g, ok := innerFramer(c.Framer).(partialGuard); ok && c.PartialAtStop == PartialEmit {
		add("%v", g.partialErr())
	}
	if c.DataBits != 0 && (c.DataBits < 5 || c.DataBits > 8) {
		add("data bits must be 5..8, got %d", c.DataBits)
	}
	if _, ok := serialParity(c.Parity); !ok {
		add("parity must be one of none, odd, even, mark, space; got %q", c.Parity)
	}
	switch c.StopBits {
	case 0, 1, 2:
	case 1.5:
		if runtime.GOOS != "windows" {
			add("stop bits 1.5 is not supported on %s (use 1 or 2)", runtime.GOOS)
		}
	default:
		add("stop bits must be 1, 1.5 or 2, got %v", c.StopBits)
	}
	if c.MaxFrame < 0 || c.MaxFrame > maxMaxFrame {
		add("max frame must be 0 (default %d) or 1..%d bytes, got %d", DefaultMaxFrame, maxMaxFrame, c.MaxFrame)
	}
	if c.ReadBuffer < 0 || c.ReadBuffer > maxReadBuffer {
		add("read buffer must be 0 (default %d) or 1..%d bytes, got %d", DefaultReadBuffer, maxReadBuffer, c.ReadBuffer)
	}
	if c.WriteQueue < 0 || c.WriteQueue > maxWriteQueue {
		add("write queue must be 0 (default %d) or 1..%d requests, got %d", DefaultWriteQueue, maxWriteQueue, c.WriteQueue)
	}
	if c.SilenceTimeout < 0 {
		add("silence timeout must not be negative (0 turns the watchdog off)")
	}
	if c.ReconnectMin < 0 || c.ReconnectMax < 0 {
		add("reconnect delays must not be negative")
	} else if d := c.withDefaults(); d.ReconnectMin > d.ReconnectMax {
		add("reconnect min (%v) must not exceed reconnect max (%v)", d.ReconnectMin, d.ReconnectMax)
	}
	if err := errors.Join(errs...); err != nil {
		name := c.Name
		if name == "" {
			name = c.Path
		}
		return fmt.Errorf("port %q: %w", name, err)
	}
	return nil
}

// serialParity maps p to go.bug.st/serial's value; "" is none.
func serialParity(p Parity) (serial.Parity, bool) {
	switch p {
	case "", ParityNone:
		return serial.NoParity, true
	case ParityOdd:
		return serial.OddParity, true
	case ParityEven:
		return serial.EvenParity, true
	case ParityMark:
		return serial.MarkParity, true
	case ParitySpace:
		return serial.SpaceParity, true
	}
	return 0, false
}

// withDefaults fills the zero fields.
func (c PortConfig) withDefaults() PortConfig {
	if c.Name == "" {
		c.Name = c.Path
	}
	if c.DataBits == 0 {
		c.DataBits = DefaultDataBits
	}
	if c.Parity == "" {
		c.Parity = ParityNone
	}
	if c.StopBits == 0 {
		c.StopBits = 1
	}
	if c.Framer == nil {
		c.Framer = Lines(nil)
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.WriteQueue == 0 {
		c.WriteQueue = DefaultWriteQueue
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = max(DefaultReconnectMax, c.ReconnectMin)
	}
	return c
}

// CharTime returns how long one character takes on c's line: a start bit,
// the data bits, a parity bit unless parity is none, and the stop bits, at
// Baud bits per second. Zero fields count as their defaults (8 data bits,
// no parity, 1 stop bit); a Baud of 0 or less gives 0. Modbus RTU's 8E1 at
// 9600 baud is 11 bits: 1.146 ms.
func (c PortConfig) CharTime() time.Duration { return c.charTimes(1) }

// charTimes returns n character times, rounded once (so 3.5 of them are
// not 3.5 times a rounded one).
func (c PortConfig) charTimes(n float64) time.Duration {
	if c.Baud <= 0 {
		return 0
	}
	bits := 1.0 + float64(DefaultDataBits)
	if c.DataBits != 0 {
		bits = 1 + float64(c.DataBits)
	}
	if c.Parity != "" && c.Parity != ParityNone {
		bits++
	}
	if c.StopBits != 0 {
		bits += c.StopBits
	} else {
		bits++
	}
	return time.Duration(n * bits * float64(time.Second) / float64(c.Baud))
}

func (c PortConfig) mode() *serial.Mode {
	stop := serial.OneStopBit
	switch c.StopBits {
	case 1.5:
		stop = serial.OnePointFiveStopBits
	case 2:
		stop = serial.TwoStopBits
	}
	parity, _ := serialParity(c.Parity)
	return &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits, Parity: parity, StopBits: stop}
}

// OpenErrorKind classifies why a port could not be opened.
type OpenErrorKind int

// The kinds of OpenError.
const (
	OpenFailed     OpenErrorKind = iota // none of the below
	OpenNotFound                        // no such device
	OpenPermission                      // the user may not open it
	OpenBusy                            // another process holds it
	OpenInvalid                         // not a serial device, or it rejects the line settings
)

// String returns a short description of k.
func (k OpenErrorKind) String() string {
	switch k {
	case OpenNotFound:
		return "not found"
	case OpenPermission:
		return "permission denied"
	case OpenBusy:
		return "busy"
	case OpenInvalid:
		return "not a usable serial port"
	}
	return "failed"
}

// Sentinels for errors.Is on an OpenError, by kind.
var (
	ErrPortNotFound = errors.New("serial port not found")
	ErrPermission   = errors.New("permission denied on serial port")
	ErrPortBusy     = errors.New("serial port busy")
)

// OpenError is returned by Open: the port, the kind of failure, the
// underlying error and a hint saying what to do about it.
type OpenError struct {
	Path string
	Kind OpenErrorKind
	Err  error
	Hint string
	// PID is, with OpenBusy, the process holding the port's lock when
	// known (from the device's flock or its UUCP lock file), else 0.
	PID int
}

// Error reads "open serial port PATH: KIND: ERR; HINT", without KIND when
// ERR says it already ("Permission denied", "Serial port busy").
func (e *OpenError) Error() string {
	s := fmt.Sprintf("open serial port %s: %s: %v", e.Path, e.Kind, e.Err)
	if e.Err != nil && strings.Contains(strings.ToLower(e.Err.Error()), e.Kind.String()) {
		s = fmt.Sprintf("open serial port %s: %v", e.Path, e.Err)
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// Unwrap returns the underlying error (often a *serial.PortError or a
// syscall.Errno).
func (e *OpenError) Unwrap() error { return e.Err }

// Is matches the sentinel of e's kind: ErrPortNotFound, ErrPermission or
// ErrPortBusy.
func (e *OpenError) Is(target error) bool {
	switch target {
	case ErrPortNotFound:
		return e.Kind == OpenNotFound
	case ErrPermission:
		return e.Kind == OpenPermission
	case ErrPortBusy:
		return e.Kind == OpenBusy
	}
	return false
}

// Open opens the port described by cfg with its line settings, for blocking
// reads (no read timeout; Close wakes a blocked Read). Its failures are
// *OpenError values whose message says what to do: join the device's group,
// find the process holding the port, or pick one of the ports that exist.
func Open(cfg PortConfig) (serial.Port, error) {
	return openPort(cfg, true)
}

// openPort is Open; listPorts false leaves the list of existing ports out of
// a not-found hint, which a reconnect loop retrying every few seconds wants:
// enumerating opens every /dev/ttyS* to see whether it is real.
func openPort(cfg PortConfig, listPorts bool) (serial.Port, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// The advisory locks (lock_unix.go) first: a port another process
	// holds is refused before opening it, even to root.
	lock, err := lockPort(cfg.Path, uucpLockDir)
	if err != nil {
		return nil, err
	}
	// Before serial.Open, whose TIOCEXCL would refuse this second open to
	// anyone but root; on failure it is nil and serial.Open says why.
	poll := openPollReader(cfg.Path)
	port, err := serial.Open(cfg.Path, cfg.mode())
	if err != nil {
		poll.Close()
		lock.release()
		return nil, classifyOpenError(cfg, err, listPorts)
	}
	if err := port.SetReadTimeout(serial.NoTimeout); err != nil {
		poll.Close()
		port.Close()
		lock.release()
		return nil, &OpenError{Path: cfg.Path, Kind: OpenFailed, Err: err}
	}
	return &lockedPort{Port: port, lock: lock, poll: poll}, nil
}

func classifyOpenError(cfg PortConfig, err error, listPorts bool) *OpenError {
	e := &OpenError{Path: cfg.Path, Kind: OpenFailed, Err: err}
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound:
			e.Kind = OpenNotFound
		case serial.PermissionDenied:
			e.Kind = OpenPermission
		case serial.PortBusy:
			e.Kind = OpenBusy
		case serial.InvalidSerialPort, serial.InvalidSpeed, serial.InvalidDataBits,
			serial.InvalidParity, serial.InvalidStopBits:
			e.Kind = OpenInvalid
		}
	} else {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
			e.Kind = OpenNotFound
		case errors.Is(err, fs.ErrPermission):
			e.Kind = OpenPermission
		case errors.Is(err, syscall.EBUSY):
			e.Kind = OpenBusy
		}
	}
	switch e.Kind {
	case OpenNotFound:
		e.Hint = "check the path and that the device is plugged in"
		if listPorts {
			e.Hint = notFoundHint()
		}
	case OpenPermission:
		e.Hint = permissionHint(cfg.Path) // perm_unix.go, perm_other.go
	case OpenBusy:
		e.Hint = busyHint(cfg.Path)
	case OpenInvalid:
		e.Hint = fmt.Sprintf("check that %s is a serial device and supports %d baud, %d data bits, parity %s, %v stop bits",
			cfg.Path, cfg.Baud, cfg.DataBits, cfg.Parity, cfg.StopBits)
	}
	return e
}

// notFoundHint lists the ports that exist, so a typo is easy to fix.
func notFoundHint() string {
	ports, err := ListPorts()
	if err != nil {
		return "check the path (listing the ports failed: " + err.Error() + ")"
	}
	if len(ports) == 0 {
		return "no serial ports found: is the device plugged in? (" + arrivalHint + ")"
	}
	names := make([]string, 0, len(ports))
	for _, p := range ports {
		if p.ByID != "" {
			names = append(names, p.Name+" ("+p.ByID+")")
		} else {
			names = append(names, p.Name)
		}
	}
	return "ports present: " + strings.Join(names, ", ")
}

// PortInfo describes a serial port found on the system.
type PortInfo struct {
	// Name is the device path, e.g. /dev/ttyUSB0.
	Name string `json:"name"`
	// ByID is the stable /dev/serial/by-id/ link to it, if any: prefer it
	// in configs, since ttyUSB numbers change with plug order.
	ByID string `json:"by_id,omitempty"`
	// IsUSB is true for USB adapters and CDC devices.
	IsUSB bool `json:"usb"`
	// VID, PID, SerialNumber and Product come from USB descriptors.
	VID          string `json:"vid,omitempty"`
	PID          string `json:"pid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	Product      string `json:"product,omitempty"`
}

// ListPorts returns the serial ports present, sorted by name. Virtual ports
// (ptys made by socat or vport) are not listed. On Linux, go.bug.st/serial
// opens each /dev/ttyS* briefly to tell real UARTs from placeholders, so this
// is not free of side effects on those. USBDetails says whether this build
// can fill the USB fields.
func ListPorts() ([]PortInfo, error) {
	ports, err := listPorts()
	if err != nil {
		return nil, fmt.Errorf("list serial ports: %w", err)
	}
	slices.SortFunc(ports, func(a, b PortInfo) int { return strings.Compare(a.Name, b.Name) })
	return ports, nil
}

// DefaultName is the name a port gets from its path when none is given:
// its last element (ttyUSB0 for /dev/ttyUSB0, cu.usbserial-A1 for
// /dev/cu.usbserial-A1, COM10 for \\.\COM10 or COM10).
func DefaultName(path string) string {
	for _, prefix := range []string{`\\.\`, `//./`} {
		path = strings.TrimPrefix(path, prefix)
	}
	path = strings.TrimRight(path, `/\`)
	if i := strings.LastIndexAny(path, `/\`); i >= 0 {
		path = path[i+1:]
	}
	return path
}
