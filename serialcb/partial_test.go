//go:build linux

package serialcb

import (
	"testing"
	"time"
)

// A stop with a frame in progress emits it or drops it as configured.
func TestIntegrationReaderPartialAtStop(t *testing.T) {
	for _, tc := range []struct {
		name, framing, setting string
		want                   []string
	}{
		{"lines drop by default", "lines", "", []string{"whole"}},
		{"lines emit", "lines", PartialEmit, []string{"whole", "half"}},
		{"idle emits by default", "idle:1h", "", []string{"whole\nhalf"}},
		{"idle drop", "idle:1h", PartialDrop, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair := newPair(t)
			framer, err := ParseFraming(tc.framing)
			if err != nil {
				t.Fatal(err)
			}
			r := newReader(t, PortConfig{Name: "p", Path: pair.Path(), Framer: framer, PartialAtStop: tc.setting}, nil)
			c := newCollector()
			stop := startReader(t, r, c.onFrame)
			if _, err := pair.Write([]byte("whole\nhalf")); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for r.Stats().Bytes < 10 { // every byte read: "half" is the frame in progress
				if time.Now().After(deadline) {
					t.Fatalf("read %d of 10 bytes", r.Stats().Bytes)
				}
				time.Sleep(time.Millisecond)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := c.payloads()
			if len(got) != len(tc.want) {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("frames %q, want %q", got, tc.want)
				}
			}
		})
	}
}
