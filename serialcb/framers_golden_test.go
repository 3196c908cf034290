package serialcb

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

// framerGoldenCases says how each recorded stream under
// ../testdata/framing/<dir>/ is framed; every .bin file in those
// directories must be listed. The lines directory has its own test.
var framerGoldenCases = map[string]map[string]struct {
	spec string
	max  int
}{
	"fixed": {
		"modbus_rtu.bin":     {"fixed:8", 8},
		"modbus_capture.bin": {"fixed:8", 8},
	},
	"len": {
		"u16be.bin":               {"len:u16be", 32},
		"u32be_garbage.bin":       {"len:u32be", 64},
		"u8_offset_inclusive.bin": {"len:u8:offset=1:inclusive", 24},
		"sync_hunt.bin":           {"len:u8:start=AA55:max=32", 32},
		"cctalk.bin":              {"len:u8:offset=1:adjust=3", 64},
		"ccsds.bin":               {"len:u16be:offset=4:adjust=1", 64},
	},
	"between": {
		"angle.bin":         {"between:3C3C:3E3E", 24},
		"angle_include.bin": {"between:3C3C:3E3E:include", 24},
		"dle.bin":           {"between:1002:1003", 24},
	},
	"ready": {
		"banner.bin": {"lines:ready=52454144590D0A", 64},
	},
	"stx-etx": {
		"plain.bin": {"stx-etx", 16},
		"dle.bin":   {"stx-etx:esc=0x10", 16},
	},
	"slip": {
		"slip.bin":    {"slip", 16},
		"capture.bin": {"slip", 256},
	},
	"cobs": {
		"cobs.bin": {"cobs", 16},
	},
	"gnss": {
		// NMEA, UBX and RTCM 3 with noise, bad checksums and cut packets
		// (testdata/gen); max 64 shows gnss raising it to its largest packet.
		"mixed.bin": {"gnss", 64},
	},
	"regex": {
		"nmea.bin": {`regex:\$GP[A-Z]{3},[^\r\n]*\r\n`, 64},
	},
}

// cloneChunks copies each chunk: escaping framers decode complete frames
// in place in the slices fed to the Cutter, so a stream fed several times
// must be fed from fresh copies.
func cloneChunks(chunks [][]byte) [][]byte {
	out := make([][]byte, len(chunks))
	for i, c := range chunks {
		out[i] = bytes.Clone(c)
	}
	return out
}

// TestGoldenFramers feeds every recorded stream whole, split in two at
// every byte boundary, and one byte at a time, like TestGoldenLines: the
// frames, drops and remainder must not depend on the read boundaries.
func TestGoldenFramers(t *testing.T) {
	for dir, cases := range framerGoldenCases {
		root := filepath.Join("../testdata/framing", dir)
		inputs, err := filepath.Glob(filepath.Join(root, "*.bin"))
		if err != nil || len(inputs) == 0 {
			t.Fatalf("no inputs in %s: %v", root, err)
		}
		for name := range cases {
			if !slices.Contains(inputs, filepath.Join(root, name)) {
				t.Errorf("%s/%s is listed but missing", dir, name)
			}
		}
		for _, path := range inputs {
			name := filepath.Base(path)
			t.Run(dir+"/"+name, func(t *testing.T) {
				tc, ok := cases[name]
				if !ok {
					t.Fatalf("%s is not listed in framerGoldenCases[%q]", name, dir)
				}
				checkGolden(t, tc.spec, tc.max, path)
			})
		}
	}
}
