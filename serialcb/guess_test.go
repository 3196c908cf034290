package serialcb

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/testdata/realdata"
)

func readSample(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// GuessFraming names the framing each kind of stream was made with, and
// explains most of its bytes.
func TestGuessFraming(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	randBytes := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.IntN(256))
		}
		return p
	}
	ccitt := func(p []byte) []byte { return binary.BigEndian.AppendUint16(p, crc16CCITT(p)) }
	modbus := func(p []byte) []byte { return binary.LittleEndian.AppendUint16(p, crc16Modbus(p)) }

	var slipStream, cobsStream, lenStream, idleStream []byte
	var gaps []int
	for range 200 {
		slipStream = slipEncode(slipStream, ccitt(randBytes(1+rng.IntN(60))))
		cobsStream = cobsEncode(cobsStream, randBytes(1+rng.IntN(60)))
		body := randBytes(1 + rng.IntN(40))
		lenStream = append(append(lenStream, 0xAA, byte(len(body))), body...)
		idleStream = append(idleStream, modbus(randBytes(4+rng.IntN(20)))...)
		gaps = append(gaps, len(idleStream))
	}
	for _, tc := range []struct {
		name, framing, validate string
		capture                 string // a real capture (see realdata), read in the subtest
		sample                  []byte
		gaps                    []int
		minShare                float64
	}{
		{"ZED-F9P: UBX and NMEA", "gnss", "", "ublox-zed-f9p_hpg1.11.log", nil, nil, 0.95},
		{"NEO-M8N: NMEA", "lines", "nmea", "neo-m8n.log", nil, nil, 0.95},
		{"sensor CSV", "lines", "", "", readSample(t, "../testdata/demo/sensor-csv.log"), nil, 0.95},
		{"SLIP with CRC-16/CCITT", "slip", "crc16-ccitt", "", slipStream, nil, 0.95},
		{"COBS", "cobs", "", "", cobsStream, nil, 0.95},
		{"length after a sync byte", "len:u8:start=AA", "", "", lenStream, nil, 0.95},
		{"Modbus RTU bursts", "idle:5ms", "crc16-modbus", "", idleStream, gaps, 0.95},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.capture != "" {
				tc.sample = readSample(t, realdata.Path(t, tc.capture))
			}
			guesses := GuessFraming(tc.sample, tc.gaps, 5*time.Millisecond)
			if len(guesses) == 0 {
				t.Fatal("no guess")
			}
			for _, g := range guesses {
				t.Logf("%5.1f%% %s %s (%s)", 100*g.Share, g.Framing, g.Validate, g.Note)
			}
			best := guesses[0]
			if best.Framing != tc.framing || best.Validate != tc.validate || best.Share < tc.minShare {
				t.Fatalf("best guess %q %q %.2f, want %q %q >= %.2f", best.Framing, best.Validate, best.Share, tc.framing, tc.validate, tc.minShare)
			}
			if _, err := ParseFraming(best.Framing); err != nil {
				t.Fatalf("the guess is not a valid spec: %v", err)
			}
		})
	}
	// Random bytes: nothing explains much.
	for _, g := range GuessFraming(randBytes(64<<10), nil, 0) {
		if g.Share > 0.2 {
			t.Errorf("random bytes: %s %s explains %.0f%% (%s)", g.Framing, g.Validate, 100*g.Share, g.Note)
		}
	}
	if g := GuessFraming(nil, nil, 0); len(g) != 0 {
		t.Errorf("empty sample: %v", g)
	}
	_ = bytes.Clone
}
