package amqpsink

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Routing key templates.
//
// A template is a routing key whose text may hold placeholders: {port} is
// the frame's port name and {field.NAME} the decoder field NAME
// (Frame.Field). A value is sanitised so that it stays one word of a topic
// exchange's key: white space and control characters, '.', '*' and '#'
// become '_', invalid UTF-8 becomes '_', an empty value becomes "_", and a
// value is cut to MaxValueLen bytes. Validate checks that the longest key
// the template can render fits AMQP's 255 bytes.

// MaxValueLen is the longest placeholder value put in a routing key.
const MaxValueLen = 64

const maxKeyLen = 255

type segKind uint8

const (
	segLiteral segKind = iota
	segPort
	segField
)

type segment struct {
	kind segKind
	text string
}

type template struct {
	segs     []segment
	static   string
	isStatic bool
}

func parseTemplate(s string) (*template, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("routing key %q: not valid UTF-8", s)
	}
	t := &template{}
	maxLen := 0
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.segs = append(t.segs, segment{kind: segLiteral, text: rest})
			maxLen += len(rest)
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("routing key template %q: '}' without '{'", s)
		}
		if open > 0 {
			t.segs = append(t.segs, segment{kind: segLiteral, text: rest[:open]})
			maxLen += open
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("routing key template %q: '{' without '}'", s)
		}
		name := rest[open+1 : open+1+end]
		switch {
		case name == "port":
			t.segs = append(t.segs, segment{kind: segPort})
		case strings.HasPrefix(name, "field.") && len(name) > len("field."):
			t.segs = append(t.segs, segment{kind: segField, text: strings.TrimPrefix(name, "field.")})
		default:
			return nil, fmt.Errorf("routing key template %q: unknown placeholder {%s}: want {port} or {field.NAME}", s, name)
		}
		maxLen += MaxValueLen
		rest = rest[open+1+end+1:]
	}
	if maxLen > maxKeyLen {
		return nil, fmt.Errorf("routing key template %q: keys can be %d bytes long (each placeholder counts %d), over AMQP's limit of %d", s, maxLen, MaxValueLen, maxKeyLen)
	}
	if len(t.segs) == 0 || (len(t.segs) == 1 && t.segs[0].kind == segLiteral) {
		t.static, t.isStatic = s, true
	}
	return t, nil
}

func (t *template) render(f *serialcb.Frame, missing string) string {
	if t.isStatic {
		return t.static
	}
	var b strings.Builder
	for _, sg := range t.segs {
		switch sg.kind {
		case segLiteral:
			b.WriteString(sg.text)
		case segPort:
			writeWord(&b, f.Port)
		case segField:
			if v, ok := f.Field(sg.text); ok {
				writeWord(&b, v)
			} else {
				b.WriteString(missing)
			}
		}
	}
	return b.String()
}

func sanitize(v string) string {
	var b strings.Builder
	writeWord(&b, v)
	return b.String()
}

func writeWord(b *strings.Builder, v string) {
	if v == "" {
		b.WriteByte('_')
		return
	}
	if len(v) > MaxValueLen {
		cut := MaxValueLen
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '#' {
				c = '_'
			}
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('_')
		} else {
			b.WriteString(v[i : i+n])
		}
		i += n
	}
}
