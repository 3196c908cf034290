package natssink

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/dispatch/placeholder"
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

// subjectToken sanitises a placeholder value into one subject token.
var subjectToken = placeholder.NewSanitizer(MaxValueLen, false, func(c byte) bool {
	return c > ' ' && c != 0x7f && c != '.' && c != '*' && c != '>'
})

// template is a parsed subject template.
type template struct {
	segs []placeholder.Segment
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
	segs, err := placeholder.Parse(s)
	var syn *placeholder.SyntaxError
	if errors.As(err, &syn) && syn.Problem == placeholder.EmptyField {
		return nil, fmt.Errorf("subject template %q: {field.} needs a field name, e.g. {field.device}", s)
	}
	if err != nil {
		return nil, fmt.Errorf("subject template %q: %w", s, err)
	}
	t := &template{segs: segs}
	for _, sg := range segs {
		if sg.Kind == placeholder.Field {
			t.fields = true
		}
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
		if sg.Kind != placeholder.Literal {
			wild = true
			tok.WriteString("x")
			continue
		}
		for i := 0; i < len(sg.Text); i++ {
			c := sg.Text[i]
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
	t.static, _ = placeholder.Static(segs)
	return t, nil
}

// render returns f's subject; missing replaces a field the frame lacks.
func (t *template) render(f *serialcb.Frame, missing string) string {
	if t.static != "" {
		return t.static
	}
	return placeholder.Render(t.segs, f, missing, subjectToken)
}

// sanitize returns v as it appears in a subject token (see the package
// notes on templates).
func sanitize(v string) string { return subjectToken.String(v) }

// validToken reports whether s can be used whole as a subject token.
func validToken(s string) bool {
	return s != "" && sanitize(s) == s && len(s) <= MaxValueLen
}
