// Package placeholder parses and renders the name templates of the sinks
// that publish each frame under a name of its own (an AMQP routing key, a
// Kafka topic, a NATS subject): literal text with the placeholders {port},
// the frame's port name, and {field.NAME}, the decoder field NAME
// (Frame.Field).
//
// What differs between sinks stays with them: which characters a value may
// keep (a Sanitizer), which literal text is allowed, how long a name may be
// and how their errors read. A SyntaxError's text has no prefix: the sink
// adds its own ("topic template %q: %w").
package placeholder

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Kind is what a Segment stands for.
type Kind uint8

// The kinds of segment.
const (
	Literal Kind = iota // Text as it is
	Port                // the frame's port name
	Field               // the decoder field named Text
)

// Segment is a piece of a template: literal text or one placeholder.
type Segment struct {
	Kind Kind
	Text string // the literal, or the field name
}

// Problem is what is wrong with a template's placeholders.
type Problem uint8

// The problems Parse reports.
const (
	CloseWithoutOpen Problem = iota + 1 // a '}' before any '{'
	OpenWithoutClose                    // a '{' with no '}' before the next '{' or the end
	Unknown                             // a placeholder other than {port} and {field.NAME}
	EmptyField                          // {field.} without a name
)

// SyntaxError is a template's placeholder mistake. Name is the text between
// the braces for Unknown and EmptyField.
type SyntaxError struct {
	Problem Problem
	Name    string
}

func (e *SyntaxError) Error() string {
	switch e.Problem {
	case CloseWithoutOpen:
		return "'}' without '{'"
	case OpenWithoutClose:
		return "'{' without '}'"
	}
	return fmt.Sprintf("unknown placeholder {%s}: want {port} or {field.NAME}", e.Name)
}

const fieldPrefix = "field."

// Parse splits template s into segments. Its error is a *SyntaxError.
func Parse(s string) ([]Segment, error) {
	var segs []Segment
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			segs = append(segs, Segment{Kind: Literal, Text: rest})
			break
		}
		if rest[open] == '}' {
			return nil, &SyntaxError{Problem: CloseWithoutOpen}
		}
		if open > 0 {
			segs = append(segs, Segment{Kind: Literal, Text: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, &SyntaxError{Problem: OpenWithoutClose}
		}
		name := rest[open+1 : open+1+end]
		switch {
		case name == "port":
			segs = append(segs, Segment{Kind: Port})
		case name == fieldPrefix:
			return nil, &SyntaxError{Problem: EmptyField, Name: name}
		case strings.HasPrefix(name, fieldPrefix):
			segs = append(segs, Segment{Kind: Field, Text: name[len(fieldPrefix):]})
		default:
			return nil, &SyntaxError{Problem: Unknown, Name: name}
		}
		rest = rest[open+1+end+1:]
	}
	return segs, nil
}

// Static returns the name segs always render and true when they hold no
// placeholder.
func Static(segs []Segment) (string, bool) {
	switch {
	case len(segs) == 0:
		return "", true
	case len(segs) == 1 && segs[0].Kind == Literal:
		return segs[0].Text, true
	}
	return "", false
}

// MaxLen returns the length of the longest name segs can render when each
// placeholder value is at most perValue bytes long.
func MaxLen(segs []Segment, perValue int) int {
	n := 0
	for _, sg := range segs {
		if sg.Kind == Literal {
			n += len(sg.Text)
		} else {
			n += perValue
		}
	}
	return n
}

// Render returns the name segs give frame f: a placeholder value is written
// through z (as it is when z is nil), and missing stands, as it is, for a
// field the frame lacks.
func Render(segs []Segment, f *serialcb.Frame, missing string, z *Sanitizer) string {
	var b strings.Builder
	for _, sg := range segs {
		switch sg.Kind {
		case Literal:
			b.WriteString(sg.Text)
		case Port:
			z.write(&b, f.Port)
		case Field:
			if v, ok := f.Field(sg.Text); ok {
				z.write(&b, v)
			} else {
				b.WriteString(missing)
			}
		}
	}
	return b.String()
}

// Sanitizer rewrites a placeholder value so that it stays one word of the
// name: an ASCII byte it does not keep becomes '_', an empty value becomes
// "_", and a value is cut to a maximum length.
type Sanitizer struct {
	max       int
	asciiOnly bool
	keep      [utf8.RuneSelf]bool
}

// NewSanitizer returns a Sanitizer that keeps the ASCII bytes keep accepts
// and cuts values to maxLen bytes. With asciiOnly, every other byte becomes
// '_' and the cut is at maxLen bytes exactly; without it, other valid UTF-8
// stays, each invalid byte becomes '_' and the cut falls on a rune
// boundary.
func NewSanitizer(maxLen int, asciiOnly bool, keep func(c byte) bool) *Sanitizer {
	z := &Sanitizer{max: maxLen, asciiOnly: asciiOnly}
	for c := range z.keep {
		z.keep[c] = keep(byte(c))
	}
	return z
}

// String returns v as it appears in a name.
func (z *Sanitizer) String(v string) string {
	var b strings.Builder
	z.write(&b, v)
	return b.String()
}

func (z *Sanitizer) write(b *strings.Builder, v string) {
	if z == nil {
		b.WriteString(v)
		return
	}
	if v == "" {
		b.WriteByte('_')
		return
	}
	if len(v) > z.max {
		cut := z.max
		for !z.asciiOnly && cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf || z.asciiOnly {
			if c >= utf8.RuneSelf || !z.keep[c] {
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
