package natssink

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Subject templates.
//
// A template is a NATS subject whose tokens may hold placeholders:
// {port} is the frame's port name and {field.NAME} the value of the
// decoder's field NAME (Frame.Field). A placeholder value is sanitised so
// that it stays inside its token: every byte that is not allowed in a
// subject token (space and other ASCII control or white space, '.', '*',
// '>') becomes '_', an empty value becomes "_", invalid UTF-8 becomes '_',
// and a value is cut to MaxValueLen bytes. A frame therefore never
// publishes to a wildcard or to a subject with more tokens than the
// template has.

// MaxValueLen is the longest placeholder value put in a subject, in bytes;
// longer values are cut (on a UTF-8 boundary). It keeps a runaway decoder
// field from producing a subject longer than the server's control line.
const MaxValueLen = 128

// maxTemplateLen bounds the template's literal text.
const maxTemplateLen = 1024

type segKind uint8

const (
	segLiteral segKind = iota
	segPort
	segField
)

// segment is a piece of a template: literal text or one placeholder.
type segment struct {
	kind segKind
	text string // the literal, or the field name
}

// template is a parsed subject template.
type template struct {
	segs []segment
	// static is the subject when the template has no placeholder.
	static string
	// fields reports whether any placeholder reads the frame's fields.
	fields bool
	// pattern is the subject filter that matches every subject the
	// template can render: each token holding a placeholder becomes '*'.
	pattern string
}

// errEmptySubject is returned for a spec without a subject.
var errEmptySubject = errors.New("empty subject: the spec is nats://HOST:PORT/SUBJECT")

// parseTemplate parses and validates a subject template.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, errEmptySubject
	}
	if len(s) > maxTemplateLen {
		return nil, fmt.Errorf("subject template is %d bytes long, at most %d", len(s), maxTemplateLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("subject template %q: not valid UTF-8", s)
	}
	t := &template{}
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.segs = append(t.segs, segment{kind: segLiteral, text: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("subject template %q: '}' without '{'", s)
		}
		if open > 0 {
			t.segs = append(t.segs, segment{kind: segLiteral, text: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("subject template %q: '{' without '}'", s)
		}
		name := rest[open+1 : open+1+end]
		switch {
		case name == "port":
			t.segs = append(t.segs, segment{kind: segPort})
		case strings.HasPrefix(name, "field."):
			field := strings.TrimPrefix(name, "field.")
			if field == "" {
				return nil, fmt.Errorf("subject template %q: {field.} needs a field name, e.g. {field.device}", s)
			}
			t.segs = append(t.segs, segment{kind: segField, text: field})
			t.fields = true
		default:
			return nil, fmt.Errorf("subject template %q: unknown placeholder {%s}: want {port} or {field.NAME}", s, name)
		}
		rest = rest[open+1+end+1:]
	}

	// Check the tokens, placeholders standing for non-empty values, and
	// build the stream pattern.
	var tokens []string
	var tok strings.Builder
	wild := false
	flush := func() {
		if wild {
			tokens = append(tokens, "*")
		} else {
			tokens = append(tokens, tok.String())
		}
		tok.Reset()
		wild = false
	}
	for _, sg := range t.segs {
		if sg.kind != segLiteral {
			wild = true
			tok.WriteString("x")
			continue
		}
		for i := 0; i < len(sg.text); i++ {
			c := sg.text[i]
			switch {
			case c == '.':
				flush()
			case c == '*' || c == '>':
				return nil, fmt.Errorf("subject template %q: wildcard %q: a sink publishes to one subject per frame", s, c)
			case c <= ' ' || c == 0x7f:
				return nil, fmt.Errorf("subject template %q: white space or control character %q", s, c)
			default:
				tok.WriteByte(c)
			}
		}
	}
	flush()
	for _, tk := range tokens {
		if tk == "" {
			return nil, fmt.Errorf("subject template %q: empty token (a leading, trailing or double '.')", s)
		}
	}
	t.pattern = strings.Join(tokens, ".")
	if len(t.segs) == 1 && t.segs[0].kind == segLiteral {
		t.static = t.segs[0].text
	}
	return t, nil
}

// render returns f's subject; missing replaces a field the frame lacks.
func (t *template) render(f *serialcb.Frame, missing string) string {
	if t.static != "" {
		return t.static
	}
	var b strings.Builder
	for _, sg := range t.segs {
		switch sg.kind {
		case segLiteral:
			b.WriteString(sg.text)
		case segPort:
			writeToken(&b, f.Port)
		case segField:
			if v, ok := f.Field(sg.text); ok {
				writeToken(&b, v)
			} else {
				b.WriteString(missing)
			}
		}
	}
	return b.String()
}

// sanitize returns v as it appears in a subject token (see the package
// notes on templates).
func sanitize(v string) string {
	var b strings.Builder
	writeToken(&b, v)
	return b.String()
}

// writeToken writes the sanitised form of v.
func writeToken(b *strings.Builder, v string) {
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
			if c <= ' ' || c == 0x7f || c == '.' || c == '*' || c == '>' {
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

// validToken reports whether s can be used whole as a subject token.
func validToken(s string) bool {
	return s != "" && sanitize(s) == s && len(s) <= MaxValueLen
}
