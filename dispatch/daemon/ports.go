package daemon

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/decode"
)

// invalidLogEvery rate-limits the invalid-frame warning per port: the
// first one is logged, then at most one line per interval with the count.
const invalidLogEvery = 10 * time.Second

// portCheck validates and decodes one port's frames. Only invalid and
// undecoded are shared; the rest is owned by the port's read loop goroutine
// (the onFrame callback).
type portCheck struct {
	v           serialcb.Validator // nil: frames are not checked
	invalidPort string             // "" drops invalid frames; else they are submitted under this port name
	action      string             // for the log: drop or sink:NAME
	invalid     atomic.Uint64

	lastLog time.Time // of the last warning
	pending uint64    // invalid frames not yet reported

	dec        decode.Decoder // nil: frames are not decoded
	decodeSpec string         // for the log
	undecoded  atomic.Uint64  // frames dec could not read, kept without fields
	scratch    []byte         // dec's output, copied into the frame

	lastDecodeLog  time.Time // of the last undecoded warning
	pendingDecoded uint64    // undecoded frames not yet reported
}

// maxScratch bounds the decode buffer a port keeps between frames.
const maxScratch = 64 << 10

// accept reports whether f goes on, with the port name to submit it under.
// An invalid frame is counted and logged at a limited rate. A valid frame
// is then decoded (with decode set): its fields go to f.Fields; a payload
// the decoder cannot read goes on without fields, counted and logged at a
// limited rate. Invalid frames sent to an on_invalid sink are not decoded.
// It does not allocate for a valid frame without a decoder; with one, it
// allocates f.Fields (and what the decoder needs: see serialcb/decode).
func (c *portCheck) accept(log *zap.Logger, f *serialcb.Frame) bool {
	ok, _ := c.check(log, f)
	return ok
}

// check is accept that also returns the validation error of an invalid
// frame, for reply matching.
func (c *portCheck) check(log *zap.Logger, f *serialcb.Frame) (bool, error) {
	if c.v != nil {
		if err := c.v.Valid(f.Payload); err != nil {
			return c.reject(log, f, err), err
		}
	}
	if c.dec != nil {
		c.decode(log, f)
	}
	return true, nil
}

// decode sets f.Fields from the port's decoder. An empty object ("{}", a
// regex whose named groups all missed) leaves f.Fields nil.
func (c *portCheck) decode(log *zap.Logger, f *serialcb.Frame) {
	out, err := c.dec.Append(c.scratch[:0], f.Payload)
	c.scratch = out[:0]
	if cap(out) > maxScratch {
		c.scratch = nil
	}
	if err == nil {
		if len(out) > 2 {
			f.Fields = bytes.Clone(out)
		}
		return
	}
	total := c.undecoded.Add(1)
	c.pendingDecoded++
	if c.lastDecodeLog.IsZero() || f.ReceivedAt.Sub(c.lastDecodeLog) >= invalidLogEvery {
		log.Warn("frames not decoded; delivered without fields", zap.Uint64("frames", c.pendingDecoded),
			zap.Uint64("total", total), zap.String("decode", c.decodeSpec), zap.Uint64("last_seq", f.Seq),
			zap.Error(err), zap.Duration("log_every", invalidLogEvery))
		c.lastDecodeLog, c.pendingDecoded = f.ReceivedAt, 0
	}
}

// logUndecoded reports undecoded frames not logged yet because of the rate
// limit. Call it once c is no longer used by the port's read loop.
func (c *portCheck) logUndecoded(log *zap.Logger, port string) {
	if c.pendingDecoded > 0 {
		log.Warn("frames not decoded; delivered without fields", zap.String("port", port),
			zap.Uint64("frames", c.pendingDecoded), zap.Uint64("total", c.undecoded.Load()), zap.String("decode", c.decodeSpec))
		c.pendingDecoded = 0
	}
}

// reject counts and logs an invalid frame and reports whether it goes on
// (to the on_invalid sink, under the invalid port name).
func (c *portCheck) reject(log *zap.Logger, f *serialcb.Frame, err error) bool {
	total := c.invalid.Add(1)
	c.pending++
	if c.lastLog.IsZero() || f.ReceivedAt.Sub(c.lastLog) >= invalidLogEvery {
		log.Warn("invalid frames", zap.Uint64("frames", c.pending), zap.Uint64("total", total),
			zap.String("on_invalid", c.action), zap.Uint64("last_seq", f.Seq), zap.Error(err),
			zap.Duration("log_every", invalidLogEvery))
		c.lastLog, c.pending = f.ReceivedAt, 0
	}
	if c.invalidPort == "" {
		return false
	}
	f.Port = c.invalidPort
	return true
}

// invalidFrames returns how many frames of port i (of the current
// pipeline) failed validation.
func (d *Daemon) invalidFrames(i int) uint64 { return d.current().ports[i].check.Load().invalid.Load() }

// undecodedFrames returns how many frames of port i (of the current
// pipeline) its decoder could not read; they were delivered without fields.
func (d *Daemon) undecodedFrames(i int) uint64 {
	return d.current().ports[i].check.Load().undecoded.Load()
}

// newPortCheck builds port i's validation from validate and on_invalid,
// and its decoder from decode.
func newPortCheck(cfg *configs.Config, i int) (*portCheck, error) {
	p := cfg.Ports[i]
	c := &portCheck{action: "drop"}
	if p.Decode != "" {
		dec, err := decode.Parse(p.Decode)
		if err != nil {
			if cfg.File() == "" {
				return nil, Usagef("--decode: %v", err)
			}
			return nil, portErr(cfg, i, "decode", err)
		}
		c.dec, c.decodeSpec = dec, p.Decode
	}
	if p.Validate == "" {
		return c, nil
	}
	v, err := serialcb.ParseValidator(p.Validate)
	if err != nil {
		return nil, portErr(cfg, i, "validate", err)
	}
	c.v = v
	if s := p.InvalidSink(); s != "" {
		c.invalidPort, c.action = p.InvalidPort(), "sink:"+s
	}
	return c, nil
}

// portConfig maps config entry i to the read loop's settings.
func portConfig(cfg *configs.Config, i int) (serialcb.PortConfig, error) {
	p := cfg.Ports[i]
	framer, err := serialcb.ParseFraming(p.Framing)
	if err != nil {
		return serialcb.PortConfig{}, portErr(cfg, i, "framing", err)
	}
	pc := serialcb.PortConfig{
		Name:     p.Name,
		Path:     p.Path,
		Baud:     p.Baud,
		DataBits: p.DataBits,
		Parity:   serialcb.Parity(p.Parity),
		StopBits: p.StopBits,
		Framer:   framer,
		MaxFrame: p.MaxFrame,

		SilenceTimeout: p.SilenceTimeout,
		PartialAtStop:  p.PartialAtStop,
	}
	if pc.Baud == 0 {
		pc.Baud = 9600
	}
	if err := pc.Validate(); err != nil {
		return pc, portErr(cfg, i, "", err)
	}
	return pc, nil
}

func portErr(cfg *configs.Config, i int, key string, err error) error {
	if cfg.File() == "" {
		flag := map[string]string{"framing": "--framing", "validate": "--validate", "": "--port"}[key]
		return Usagef("%s: %v", flag, err)
	}
	path := fmt.Sprintf("ports[%d]", i)
	if key != "" {
		path += "." + key
	}
	return cfg.Errorf(path, "%v", err)
}

// logInvalid reports port's invalid frames not logged yet because of the
// rate limit. Call it once c is no longer used by the port's read loop.
func (d *Daemon) logInvalid(c *portCheck, port string) {
	if c.pending > 0 {
		d.log.Warn("invalid frames", zap.String("port", port), zap.Uint64("frames", c.pending),
			zap.Uint64("total", c.invalid.Load()), zap.String("on_invalid", c.action))
		c.pending = 0
	}
	c.logUndecoded(d.log, port)
}
