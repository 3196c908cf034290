package serialcb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/testdata/realdata"
)

func TestValidators(t *testing.T) {
	tests := []struct {
		spec, in string
		want     error // nil, ErrChecksum or ErrMalformed
	}{
		{"crc16-modbus", "\x01\x03\x00\x00\x00\x0a\xc5\xcd", nil},
		{"crc16-modbus", "\x01\x03\x00\x00\x00\x0a\xcd\xc5", ErrChecksum},
		{"crc16-modbus", "\x01\x03\x00\x01\x00\x0a\xc5\xcd", ErrChecksum},
		{"crc16-modbus", "\x01\x03", ErrMalformed},
		// CRC-16/CCITT-FALSE check value: "123456789" -> 29B1.
		{"crc16-ccitt", "123456789\x29\xb1", nil},
		{"crc16-ccitt", "123456789\xb1\x29", ErrChecksum},
		// CRC-32 check value: "123456789" -> CBF43926, stored little-endian.
		{"crc32", "123456789\x26\x39\xf4\xcb", nil},
		{"crc32", "123456789\xcb\xf4\x39\x26", ErrChecksum},
		{"crc32", "\x00\x00\x00\x00", ErrMalformed},
		{"sum8", "\x01\x02\x03\x06", nil},
		{"sum8", "\xff\x02\x01", nil},
		{"sum8", "\x01\x02\x03\x07", ErrChecksum},
		{"sum8", "\x01", ErrMalformed},
		{"nmea", "$GPGLL,4916.45,N,12311.12,W,225444,A*31", nil},
		{"nmea", "$GPGLL,4916.45,N,12311.12,W,225444,A*31\r\n", nil},
		{"nmea", "$gpgll,4916.45,N,12311.12,W,225444,A*31", ErrChecksum},
		{"nmea", "!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*26", nil},
		{"nmea", "$GPGLL,4916.45,N,12311.12,W,225444,A*3G", ErrMalformed},
		{"nmea", "$GPGLL,4916.45,N,12311.12,W,225444,A", ErrMalformed},
		{"nmea", "GPGLL*00", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.spec+"/"+strings.ToValidUTF8(tt.in, "?"), func(t *testing.T) {
			v, err := ParseValidator(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			err = v.Valid([]byte(tt.in))
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Valid = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ParseValidator("crc8"); err == nil || !strings.Contains(err.Error(), `"sum8"`) {
		t.Fatalf("ParseValidator(crc8) = %v", err)
	}
}

// nmeaLines returns the sentences of the gpsd regression log name (see
// realdata: skipped when the captures are not there).
func nmeaLines(t *testing.T, name string) []string {
	t.Helper()
	data, err := os.ReadFile(realdata.Path(t, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "$") || strings.HasPrefix(line, "!") {
			out = append(out, line)
		}
	}
	return out
}

// TestNMEARealData: every sentence of a real u-blox log checks out.
func TestNMEARealData(t *testing.T) {
	lines := nmeaLines(t, "neo-m8n.log")
	if len(lines) < 100 {
		t.Fatalf("only %d sentences", len(lines))
	}
	for _, l := range lines {
		if err := (NMEA{}).Valid([]byte(l)); err != nil {
			t.Errorf("%q: %v", l, err)
		}
	}
}

// TestNMEAFuzzyCases: the gpsd "fuzzy" cases; each sentence either checks
// out or is reported as a checksum mismatch, and changing any body byte of
// a good one makes it fail.
func TestNMEAFuzzyCases(t *testing.T) {
	lines := nmeaLines(t, "nmea-fuzzy-cases.log")
	good, bad := 0, 0
	for _, l := range lines {
		err := (NMEA{}).Valid([]byte(l))
		switch {
		case err == nil:
			good++
			b := []byte(l)
			b[3] ^= 0x01
			if (NMEA{}).Valid(b) == nil {
				t.Errorf("%q with a flipped bit still valid", b)
			}
		case errors.Is(err, ErrChecksum):
			bad++
		default:
			t.Errorf("%q: %v", l, err)
		}
	}
	t.Logf("%d good, %d bad checksums", good, bad)
	if good == 0 {
		t.Fatal("no valid sentence")
	}
}

func BenchmarkValidateCRC16Modbus(b *testing.B) {
	p := bytes.Repeat([]byte{0x5a}, 254)
	p = binary.LittleEndian.AppendUint16(p, crc16Modbus(p)) // valid: no error to build
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		_ = CRC16Modbus{}.Valid(p)
	}
}
