package placeholder

import (
	"errors"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb"
)

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		tmpl string
		want Problem
		msg  string
	}{
		{"a}", CloseWithoutOpen, "'}' without '{'"},
		{"a{port", OpenWithoutClose, "'{' without '}'"},
		{"a{b{port}", OpenWithoutClose, "'{' without '}'"},
		{"{host}", Unknown, "unknown placeholder {host}: want {port} or {field.NAME}"},
		{"{}", Unknown, "unknown placeholder {}: want {port} or {field.NAME}"},
		{"{field.}", EmptyField, "unknown placeholder {field.}: want {port} or {field.NAME}"},
	} {
		_, err := Parse(tt.tmpl)
		var syn *SyntaxError
		if !errors.As(err, &syn) || syn.Problem != tt.want || err.Error() != tt.msg {
			t.Errorf("Parse(%q) = %v, want problem %d %q", tt.tmpl, err, tt.want, tt.msg)
		}
	}
}

func TestRender(t *testing.T) {
	word := NewSanitizer(4, false, func(c byte) bool { return c > ' ' && c != '.' })
	ascii := NewSanitizer(4, true, func(c byte) bool { return c >= 'a' && c <= 'z' })
	f := &serialcb.Frame{Port: "tty.0", Fields: []byte(`{"dev":"éééé","empty":""}`)}
	for _, tt := range []struct {
		tmpl string
		z    *Sanitizer
		want string
	}{
		{"p.{port}.{field.dev}.{field.none}", word, "p.tty_.éé.MISS"},
		{"p.{port}.{field.dev}.{field.empty}", ascii, "p.tty_.____._"},
		{"p.{port}.{field.dev}", nil, "p.tty.0.éééé"},
	} {
		segs, err := Parse(tt.tmpl)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.tmpl, err)
		}
		if got := Render(segs, f, "MISS", tt.z); got != tt.want {
			t.Errorf("Render(%q) = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
	if got := word.String("a\xffb"); got != "a_b" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}

func TestStaticAndMaxLen(t *testing.T) {
	for _, tt := range []struct {
		tmpl   string
		static bool
		maxLen int
	}{
		{"", true, 0},
		{"plain.name", true, 10},
		{"a.{port}.{field.x}", false, 3 + 2*10},
	} {
		segs, err := Parse(tt.tmpl)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := Static(segs)
		if ok != tt.static || (ok && s != tt.tmpl) {
			t.Errorf("Static(%q) = %q, %v", tt.tmpl, s, ok)
		}
		if n := MaxLen(segs, 10); n != tt.maxLen {
			t.Errorf("MaxLen(%q) = %d, want %d", tt.tmpl, n, tt.maxLen)
		}
	}
	if got := Render(nil, &serialcb.Frame{}, "", nil); got != "" {
		t.Errorf("empty template rendered %q", got)
	}
}
