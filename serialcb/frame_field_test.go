package serialcb

import "testing"

func TestFrameField(t *testing.T) {
	f := &Frame{Fields: []byte(`{"type":"GGA","n":3,"ok":true,"o":{"a":1},"q":"a\"b"}`)}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"type", "GGA", true},
		{"n", "3", true},
		{"ok", "true", true},
		{"o", `{"a":1}`, true},
		{"q", `a"b`, true},
		{"missing", "", false},
	} {
		got, ok := f.Field(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Field(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := (&Frame{}).Field("x"); ok {
		t.Error("Field on a frame without fields reported ok")
	}
	if _, ok := (&Frame{Fields: []byte("not json")}).Field("x"); ok {
		t.Error("Field on malformed fields reported ok")
	}
}
