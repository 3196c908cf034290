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

// A regex frame that cannot grow is delivered as soon as it is read, not
// when the next byte comes; one that could grow is delivered whole at stop
// even with the default drop of partial frames.
func TestIntegrationReaderRegexLastFrame(t *testing.T) {
	pair := newPair(t)
	framer, err := ParseFraming(`regex:\$GP[^\r\n]*\r\n`)
	if err != nil {
		t.Fatal(err)
	}
	r := newReader(t, PortConfig{Name: "p", Path: pair.Path(), Framer: framer}, nil)
	c := newCollector()
	stop := startReader(t, r, c.onFrame)
	const last = "$GPGSV,4,4,13,29,07,034,*7F\r\n"
	if _, err := pair.Write([]byte(last)); err != nil {
		t.Fatal(err)
	}
	if got := c.waitN(t, 1); string(got[0].Payload) != last { // no further byte is ever written
		t.Fatalf("frame %q", got[0].Payload)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	pair2 := newPair(t)
	framer, err = ParseFraming(`regex:[0-9]+`)
	if err != nil {
		t.Fatal(err)
	}
	r = newReader(t, PortConfig{Name: "p", Path: pair2.Path(), Framer: framer}, nil)
	c = newCollector()
	stop = startReader(t, r, c.onFrame)
	if _, err := pair2.Write([]byte("x12")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Bytes < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of 3 bytes", r.Stats().Bytes)
		}
		time.Sleep(time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := c.payloads(); len(got) != 1 || got[0] != "12" {
		t.Fatalf("frames at stop %q, want [12]", got)
	}
}
