package serialcb

import (
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// framingHelp documents the grammar, for ParseFraming's errors and docs.
const framingHelp = `"lines" (same as ""), "lines:<delimiter>" with Go escapes (lines:\r\n, lines:\x03, lines:;), ` +
	`either with ":flush=DUR" (lines:flush=200ms, lines:\r\n:flush=200ms) and/or ":include" (keep the delimiter), ` +
	`"idle:Nc" or "idle:DUR" (idle:3.5c, idle:5ms) with optional ":on_full=emit", "fixed:N", ` +
	`"len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive][:start=HEX][:adjust=±N][:max=N]", ` +
	`"between:STARTHEX:ENDHEX[:include]", "stx-etx[:esc=0xNN]", "slip", "cobs", ` +
	`"gnss" (NMEA 0183 mixed with UBX and RTCM 3), "regex:EXPR"; any of them may end with ":ready=HEX"`

// parseBinaryFraming parses the specs other than lines; ok is false for an
// unknown name.
func parseBinaryFraming(spec string) (f Framer, ok bool, err error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	fail := func(format string, args ...any) (Framer, bool, error) {
		return nil, true, fmt.Errorf("framing %q: %s", spec, fmt.Sprintf(format, args...))
	}
	switch name {
	case "idle":
		if !hasArg {
			return fail("want idle:Nc (such as idle:3.5c) or idle:DUR (such as idle:5ms)")
		}
		f, err := parseIdle(arg)
		if err != nil {
			return fail("%v", err)
		}
		return f, true, nil
	case "fixed":
		n, err := strconv.Atoi(arg)
		if !hasArg || err != nil || n < 1 {
			return fail("want fixed:N with N >= 1 bytes")
		}
		return Fixed(n), true, nil
	case "len":
		if !hasArg {
			return fail("want len:u8|u16be|u16le|u32be|u32le[:offset=K][:inclusive][:start=HEX][:adjust=±N][:max=N]")
		}
		parts := strings.Split(arg, ":")
		var cfg LenConfig
		switch parts[0] {
		case "u8":
			cfg.Width = 1
		case "u16be":
			cfg.Width = 2
		case "u16le":
			cfg.Width, cfg.LittleEndian = 2, true
		case "u32be":
			cfg.Width = 4
		case "u32le":
			cfg.Width, cfg.LittleEndian = 4, true
		default:
			return fail("length type %q: want u8, u16be, u16le, u32be or u32le", parts[0])
		}
		hasOffset := false
		for _, opt := range parts[1:] {
			k, v, _ := strings.Cut(opt, "=")
			switch {
			case opt == "inclusive":
				cfg.Inclusive = true
			case k == "offset":
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 || n > 1024 {
					return fail("offset=%q: want 0..1024", v)
				}
				cfg.Offset, hasOffset = n, true
			case k == "start":
				b, err := parseHex(v)
				if err != nil || len(b) > 16 {
					return fail("start=%q: want 1 to 16 bytes in hex, such as start=AA55", v)
				}
				cfg.Start = b
			case k == "adjust":
				n, err := strconv.Atoi(v)
				if err != nil || n < -1024 || n > 1024 {
					return fail("adjust=%q: want -1024..+1024, such as adjust=3 (ccTalk) or adjust=1 (CCSDS)", v)
				}
				cfg.Adjust = n
			case k == "max":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > maxMaxFrame {
					return fail("max=%q: want 1..%d, the largest value the length field may hold", v, maxMaxFrame)
				}
				cfg.Max = n
			default:
				return fail("unknown option %q: want offset=K, inclusive, start=HEX, adjust=±N or max=N", opt)
			}
		}
		if !hasOffset {
			cfg.Offset = len(cfg.Start) // the length follows the sync bytes
		}
		l, err := Len(cfg)
		if err != nil {
			return fail("%v", err)
		}
		return l, true, nil
	case "stx-etx":
		if !hasArg {
			return StxEtx(0, false), true, nil
		}
		v, ok := strings.CutPrefix(arg, "esc=")
		if !ok {
			return fail("unknown option %q: want esc=0xNN", arg)
		}
		b, err := strconv.ParseUint(v, 0, 8)
		if err != nil {
			return fail("esc=%q: want a byte such as 0x10", v)
		}
		if b == stxByte || b == etxByte {
			return fail("the escape byte cannot be STX or ETX")
		}
		return StxEtx(byte(b), true), true, nil
	case "between":
		parts := strings.Split(arg, ":")
		if !hasArg || len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "include") {
			return fail("want between:STARTHEX:ENDHEX[:include], such as between:3C3C:3E3E")
		}
		start, err := parseHex(parts[0])
		if err != nil || len(start) > 16 {
			return fail("start %q: want 1 to 16 bytes in hex", parts[0])
		}
		end, err := parseHex(parts[1])
		if err != nil || len(end) > 16 {
			return fail("end %q: want 1 to 16 bytes in hex", parts[1])
		}
		return Between(start, end, len(parts) == 3), true, nil
	case "gnss":
		if hasArg {
			return fail("gnss takes no arguments")
		}
		return GNSS(), true, nil
	case "slip", "cobs":
		if hasArg {
			return fail("%s takes no arguments", name)
		}
		if name == "slip" {
			return SLIP(), true, nil
		}
		return COBS(), true, nil
	case "regex":
		if !hasArg || arg == "" {
			return fail("want regex:EXPR")
		}
		re, err := regexp.Compile(arg)
		if err != nil {
			return fail("%v", err)
		}
		if re.Match(nil) {
			return fail("the pattern matches the empty string")
		}
		return Regex(re), true, nil
	}
	return nil, false, nil
}

// parseHex parses bytes written in hex: "AA55", "0xAA55", "aa 55" or
// "AA,55". It returns an error for an empty or odd-length sequence.
func parseHex(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = strings.NewReplacer(" ", "", ",", "").Replace(s)
	if s == "" {
		return nil, errors.New("empty")
	}
	return hex.DecodeString(s)
}
