package serialcb

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// benchFrame is a 64-byte-on-the-wire frame body with no byte any framer
// treats specially, plus a few that SLIP, COBS and DLE must escape.
func benchPayload(n int) []byte {
	p := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
	p[5], p[17], p[33] = 0xC0, 0x00, 0x10
	return p
}

// benchFramer feeds a 64 KiB stream of frames in 4093-byte reads, each
// copied into a read buffer first as a port read would (the escaping
// framers decode in place), and checks the frame count.
func benchFramer(b *testing.B, spec string, frame []byte) {
	f, err := ParseFraming(spec)
	if err != nil {
		b.Fatal(err)
	}
	stream := bytes.Repeat(frame, (64<<10)/len(frame))
	want := len(stream) / len(frame)
	const chunk = 4093 // prime: frames straddle every read
	readBuf := make([]byte, chunk)
	c := NewCutter(f, DefaultMaxFrame)
	frames := 0
	emit := func([]byte) { frames++ }
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for p := stream; len(p) > 0; {
			n := copy(readBuf, p)
			c.Feed(readBuf[:n], emit, nil)
			p = p[n:]
		}
	}
	if frames != want*b.N {
		b.Fatalf("%d frames, want %d", frames, want*b.N)
	}
}

func BenchmarkFramerFixed(b *testing.B) { benchFramer(b, "fixed:64", benchPayload(64)) }

func BenchmarkFramerLen(b *testing.B) {
	benchFramer(b, "len:u16be", append(binary.BigEndian.AppendUint16(nil, 62), benchPayload(62)...))
}

func BenchmarkFramerStxEtx(b *testing.B) {
	p := bytes.ReplaceAll(benchPayload(62), []byte{0x10}, []byte{'x'})
	benchFramer(b, "stx-etx", stxEncode(nil, p, 0x10))
}

func BenchmarkFramerStxEtxEsc(b *testing.B) {
	benchFramer(b, "stx-etx:esc=0x10", stxEncode(nil, benchPayload(61), 0x10))
}

func BenchmarkFramerSLIP(b *testing.B) { benchFramer(b, "slip", slipEncode(nil, benchPayload(60))[1:]) }

func BenchmarkFramerCOBS(b *testing.B) { benchFramer(b, "cobs", cobsEncode(nil, benchPayload(62))) }

func BenchmarkFramerRegex(b *testing.B) {
	line := []byte("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,*47\r\n")
	benchFramer(b, `regex:\$GP[A-Z]{3},[^\r\n]*\r\n`, line)
}

// BenchmarkFramerGNSSNMEA: 64-byte NMEA sentences (CR LF included).
func BenchmarkFramerGNSSNMEA(b *testing.B) {
	s := nmeaSentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,") + "\r\n"
	benchFramer(b, "gnss", []byte(s))
}

// BenchmarkFramerGNSSUBX: 64-byte UBX packets.
func BenchmarkFramerGNSSUBX(b *testing.B) {
	benchFramer(b, "gnss", ubxPacket(0x01, 0x07, benchPayload(56)))
}
