package jsontext

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain text", `"plain text"`},
		{"q\"b\\", `"q\"b\\"`},
		{"\n\r\t\x00\x1f", `"\n\r\t\u0000\u001f"`},
		{"é€😀", `"é€😀"`},
		{"a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"bad\xffbyte", `"bad\ufffdbyte"`},
		{"cut\xe2\x80", `"cut\ufffd\ufffd"`},
	}
	for _, tt := range tests {
		if got := string(AppendString([]byte("x"), tt.in)); got != "x"+tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got[1:], tt.want)
		}
		if got := string(AppendString(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("AppendString([]byte %q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestAppendStringAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := "port \"A\"\n é \u2028 \xff"
	if n := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], s) }); n != 0 {
		t.Fatalf("%.0f allocations, want 0", n)
	}
}

// FuzzAppendString: the output is always valid JSON; valid UTF-8 comes back
// unchanged, and a string and its bytes give the same text.
func FuzzAppendString(f *testing.F) {
	f.Add("hello\n\"x\"\u2028\xff\xe2\x80")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		if string(out) != string(AppendString(nil, []byte(s))) {
			t.Fatalf("string and []byte differ for %q", s)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q → %s: not valid JSON: %v", s, out, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q → %s → %q", s, out, back)
		}
	})
}
