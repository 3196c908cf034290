package serialcb

import (
	"testing"
)

// A partial frame flushed at stop (partial_at_stop: emit) is decoded as
// the whole frame would have been: no start byte, no escapes, no COBS code
// bytes.
func TestFlushDecodesPartial(t *testing.T) {
	for _, tc := range []struct {
		spec, in string
		want     string // "" for nothing emitted
	}{
		{"lines", "abc\r", "abc"},
		{"slip", "\x01\xdb\xdc\x02", "\x01\xc0\x02"},
		{"slip", "\xc0\x01\xdb\xdd", "\x01\xdb"},
		{"slip", "\x01\xdb", "\x01"}, // a dangling ESC is dropped, as before END
		{"stx-etx", "\x02abc", "abc"},
		{"stx-etx", "\x02", ""},
		{"stx-etx:esc=0x10", "\x02a\x10\x03b\x10\x10", "a\x03b\x10"},
		{"stx-etx:esc=0x10", "\x02a\x10", "a"},
		{"cobs", "\x03ab\x02c", "ab\x00c"},
		{"cobs", "\x05ab", ""}, // the code points past the end: malformed, as it would be whole
		{"fixed:4", "abc", "abc"},
		{"len:u8", "\x05ab", "\x05ab"},
		{"idle:5ms", "a\x00b", "a\x00b"},
		{`regex:\$GP[^\r\n]*\r\n`, "$GPGGA,1", "$GPGGA,1"},
	} {
		t.Run(tc.spec+"/"+tc.in, func(t *testing.T) {
			f, err := ParseFraming(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			c := NewCutter(f, 64)
			c.Feed([]byte(tc.in), func(b []byte) { t.Fatalf("frame %q before the flush", b) }, nil)
			var got []string
			c.Flush(func(b []byte) { got = append(got, string(b)) }, nil)
			switch {
			case tc.want == "" && len(got) != 0:
				t.Fatalf("flushed %q, want nothing", got)
			case tc.want != "" && (len(got) != 1 || got[0] != tc.want):
				t.Fatalf("flushed %q, want %q", got, tc.want)
			}
			if c.Pending() != nil {
				t.Fatalf("still pending %q", c.Pending())
			}
		})
	}
}
