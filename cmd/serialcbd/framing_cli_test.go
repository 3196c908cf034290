package main

import (
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// The framing specs of the sync-hunting and GNSS options pass `validate`,
// and their mistakes fail it with exit 2 and the key.
func TestValidateFramingOptions(t *testing.T) {
	for _, tc := range []struct {
		framing, extra string
		code           int
		stderr         []string
	}{
		{framing: "gnss", code: exitOK},
		{framing: "len:u8:start=AA55:max=64", code: exitOK},
		{framing: "len:u8:offset=1:adjust=3", code: exitOK},
		{framing: "len:u16be:offset=4:adjust=1", code: exitOK},
		{framing: "between:3C3C:3E3E:include", code: exitOK},
		{framing: `lines:\r\n:include`, code: exitOK},
		{framing: "idle:20ms:on_full=emit", code: exitOK},
		{framing: "slip:ready=52454144590D0A", code: exitOK},
		{framing: "gnss", extra: "    partial_at_stop: emit\n", code: exitUsage, stderr: []string{"ports[0]", "gnss", "checksum"}},
		{framing: "len:u8:start=ZZ", code: exitUsage, stderr: []string{"ports[0].framing", "start="}},
		{framing: "between:AA", code: exitUsage, stderr: []string{"ports[0].framing", "between:STARTHEX:ENDHEX"}},
		{framing: "idle:5ms:on_full=maybe", code: exitUsage, stderr: []string{"ports[0].framing", "on_full"}},
		{framing: "lines:ready=", code: exitUsage, stderr: []string{"ports[0].framing", "ready="}},
	} {
		t.Run(tc.framing+tc.extra, func(t *testing.T) {
			cfg := strings.Replace(validConfig, "    framing: 'lines:\\r\\n'\n", "    framing: '"+tc.framing+"'\n"+tc.extra, 1)
			code, _, stderr := runCLI(t, "validate", "--config", writeFile(t, "f.yaml", cfg))
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
}

// monitor --framing gnss on the ZED-F9P capture shows each packet with
// its protocol fields.
func TestMonitorGNSSFile(t *testing.T) {
	code, stdout, stderr := runCLI(t, "monitor", "--file", realdata.Path(t, "ublox-zed-f9p_hpg1.11.log"), "--framing", "gnss")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{`"$GNRMC,011903.00,A,4552.65550,S,17030.00756,E,0.214,,120419,,,A,V*0F"`,
		`fields {"proto":"nmea","sentence":"GNRMC"}`, `fields {"proto":"ubx","class":1,"id":34}`,
		"# 4583 frames, 0 invalid, 0 oversize, 1245774 bytes read"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}
