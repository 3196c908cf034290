package serialcb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Validator checks a frame's integrity, typically a checksum carried in
// the payload. Valid returns nil for a good payload; it must not keep or
// modify payload.
type Validator interface {
	Valid(payload []byte) error
}

// ErrChecksum is wrapped by every checksum mismatch; ErrMalformed by a
// payload too short or without the checksum field.
var (
	ErrChecksum  = errors.New("checksum mismatch")
	ErrMalformed = errors.New("no checksum field")
)

// NMEA checks NMEA 0183 sentences: '$' or '!', the body, '*' and two hex
// digits that are the XOR of the body's bytes. A trailing "\r\n" (or "\n")
// is allowed, so it works with or without line framing.
type NMEA struct{}

// CRC16Modbus checks CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF)
// over all but the last 2 bytes, which hold the CRC little-endian, as in a
// Modbus RTU frame.
type CRC16Modbus struct{}

// CRC16CCITT checks CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
// reflection) over all but the last 2 bytes, which hold the CRC big-endian.
type CRC16CCITT struct{}

// CRC32 checks the IEEE CRC-32 (as zlib, Ethernet and hash/crc32) over all
// but the last 4 bytes, which hold the CRC little-endian (the order most
// microcontroller CRC units and Ethernet's FCS use).
type CRC32 struct{}

// Sum8 checks that the last byte is the sum, modulo 256, of the bytes
// before it.
type Sum8 struct{}

var (
	_ Validator = NMEA{}
	_ Validator = CRC16Modbus{}
	_ Validator = CRC16CCITT{}
	_ Validator = CRC32{}
	_ Validator = Sum8{}
)

// Valid implements Validator.
func (NMEA) Valid(p []byte) error {
	p = bytes.TrimSuffix(p, []byte{'\n'})
	p = bytes.TrimSuffix(p, []byte{'\r'})
	if len(p) < 4 || (p[0] != '$' && p[0] != '!') || p[len(p)-3] != '*' {
		return fmt.Errorf("nmea: %w: want $...*hh", ErrMalformed)
	}
	want, ok := hexByte(p[len(p)-2], p[len(p)-1])
	if !ok {
		return fmt.Errorf("nmea: %w: %q is not hex", ErrMalformed, p[len(p)-2:])
	}
	var sum byte
	for _, c := range p[1 : len(p)-3] {
		sum ^= c
	}
	if sum != want {
		return fmt.Errorf("nmea: %w: computed %02X, frame says %02X", ErrChecksum, sum, want)
	}
	return nil
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexDigit(hi)
	l, ok2 := hexDigit(lo)
	return h<<4 | l, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Valid implements Validator.
func (CRC16Modbus) Valid(p []byte) error {
	if len(p) < 3 {
		return fmt.Errorf("crc16-modbus: %w: %d bytes", ErrMalformed, len(p))
	}
	got, want := crc16Modbus(p[:len(p)-2]), binary.LittleEndian.Uint16(p[len(p)-2:])
	if got != want {
		return fmt.Errorf("crc16-modbus: %w: computed %04X, frame says %04X", ErrChecksum, got, want)
	}
	return nil
}

// Valid implements Validator.
func (CRC16CCITT) Valid(p []byte) error {
	if len(p) < 3 {
		return fmt.Errorf("crc16-ccitt: %w: %d bytes", ErrMalformed, len(p))
	}
	got, want := crc16CCITT(p[:len(p)-2]), binary.BigEndian.Uint16(p[len(p)-2:])
	if got != want {
		return fmt.Errorf("crc16-ccitt: %w: computed %04X, frame says %04X", ErrChecksum, got, want)
	}
	return nil
}

// Valid implements Validator.
func (CRC32) Valid(p []byte) error {
	if len(p) < 5 {
		return fmt.Errorf("crc32: %w: %d bytes", ErrMalformed, len(p))
	}
	got, want := crc32.ChecksumIEEE(p[:len(p)-4]), binary.LittleEndian.Uint32(p[len(p)-4:])
	if got != want {
		return fmt.Errorf("crc32: %w: computed %08X, frame says %08X", ErrChecksum, got, want)
	}
	return nil
}

// Valid implements Validator.
func (Sum8) Valid(p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("sum8: %w: %d bytes", ErrMalformed, len(p))
	}
	var sum byte
	for _, c := range p[:len(p)-1] {
		sum += c
	}
	if want := p[len(p)-1]; sum != want {
		return fmt.Errorf("sum8: %w: computed %02X, frame says %02X", ErrChecksum, sum, want)
	}
	return nil
}

// crc16ModbusTable and crc16CCITTTable are computed once and never written.
var (
	crc16ModbusTable = makeCRC16Table(func(c uint16) uint16 {
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		return c
	}, false)
	crc16CCITTTable = makeCRC16Table(func(c uint16) uint16 {
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		return c
	}, true)
)

func makeCRC16Table(step func(uint16) uint16, msb bool) *[256]uint16 {
	var t [256]uint16
	for i := range t {
		c := uint16(i)
		if msb {
			c <<= 8
		}
		t[i] = step(c)
	}
	return &t
}

func crc16Modbus(p []byte) uint16 {
	c := uint16(0xFFFF)
	for _, b := range p {
		c = c>>8 ^ crc16ModbusTable[byte(c)^b]
	}
	return c
}

func crc16CCITT(p []byte) uint16 {
	c := uint16(0xFFFF)
	for _, b := range p {
		c = c<<8 ^ crc16CCITTTable[byte(c>>8)^b]
	}
	return c
}

// validatorSpecs lists the valid specs, for error messages.
const validatorSpecs = `"nmea", "crc16-modbus", "crc16-ccitt", "crc32", "sum8"`

// ParseValidator turns a --validate spec into a Validator: "nmea",
// "crc16-modbus", "crc16-ccitt" (CCITT-FALSE), "crc32" or "sum8".
func ParseValidator(spec string) (Validator, error) {
	switch spec {
	case "nmea":
		return NMEA{}, nil
	case "crc16-modbus":
		return CRC16Modbus{}, nil
	case "crc16-ccitt":
		return CRC16CCITT{}, nil
	case "crc32":
		return CRC32{}, nil
	case "sum8":
		return Sum8{}, nil
	}
	return nil, fmt.Errorf("unknown validator %q: valid specs are %s", spec, validatorSpecs)
}
