package kafkasink

import (
	"errors"
	"fmt"
	"strings"

	"github.com/serialcbd/serialcbd/serialcb"
)

// Topic templates.
//
// A template is a Kafka topic name whose text may hold placeholders: {port}
// is the frame's port name and {field.NAME} the decoder field NAME
// (Frame.Field). Kafka allows only ASCII letters, digits, '.', '_' and '-'
// in a topic name, at most 249 of them; so every other byte of a
// placeholder value becomes '_', an empty value becomes "_", and a value is
// cut to MaxValueLen bytes. Validate checks that the longest topic the
// template can render fits in 249 bytes.

// MaxValueLen is the longest placeholder value put in a topic, in bytes.
const MaxValueLen = 64

// maxTopicLen is Kafka's limit on a topic name.
const maxTopicLen = 249

type segKind uint8

const (
	segLiteral segKind = iota
	segPort
	segField
)

type segment struct {
	kind segKind
	text string // the literal, or the field name
}

// template is a parsed topic template.
type template struct {
	segs   []segment
	static string // the topic when there is no placeholder
}

var errEmptyTopic = errors.New("empty topic: the spec is kafka://BROKER[,BROKER...]/TOPIC")

// parseTemplate parses and validates a topic template.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, errEmptyTopic
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
			return nil, fmt.Errorf("topic template %q: '}' without '{'", s)
		}
		if open > 0 {
			t.segs = append(t.segs, segment{kind: segLiteral, text: rest[:open]})
			maxLen += open
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("topic template %q: '{' without '}'", s)
		}
		name := rest[open+1 : open+1+end]
		switch {
		case name == "port":
			t.segs = append(t.segs, segment{kind: segPort})
		case strings.HasPrefix(name, "field.") && len(name) > len("field."):
			t.segs = append(t.segs, segment{kind: segField, text: strings.TrimPrefix(name, "field.")})
		default:
			return nil, fmt.Errorf("topic template %q: unknown placeholder {%s}: want {port} or {field.NAME}", s, name)
		}
		maxLen += MaxValueLen
		rest = rest[open+1+end+1:]
	}
	for _, sg := range t.segs {
		if sg.kind != segLiteral {
			continue
		}
		for i := 0; i < len(sg.text); i++ {
			if !topicByte(sg.text[i]) {
				return nil, fmt.Errorf("topic template %q: %q is not allowed in a Kafka topic (letters, digits, '.', '_' and '-' only)", s, sg.text[i])
			}
		}
	}
	if maxLen > maxTopicLen {
		return nil, fmt.Errorf("topic template %q: topics can be %d bytes long (each placeholder counts %d), over Kafka's limit of %d", s, maxLen, MaxValueLen, maxTopicLen)
	}
	if len(t.segs) == 1 && t.segs[0].kind == segLiteral {
		if s == "." || s == ".." {
			return nil, fmt.Errorf("topic %q: not allowed by Kafka", s)
		}
		t.static = s
	}
	return t, nil
}

// render returns f's topic; missing replaces a field the frame lacks.
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
			writeValue(&b, f.Port)
		case segField:
			if v, ok := f.Field(sg.text); ok {
				writeValue(&b, v)
			} else {
				b.WriteString(missing)
			}
		}
	}
	return b.String()
}

func topicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// writeValue writes the sanitised form of v.
func writeValue(b *strings.Builder, v string) {
	if v == "" {
		b.WriteByte('_')
		return
	}
	if len(v) > MaxValueLen {
		v = v[:MaxValueLen]
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !topicByte(c) {
			c = '_'
		}
		b.WriteByte(c)
	}
}

// sanitize returns v as it appears in a topic.
func sanitize(v string) string {
	var b strings.Builder
	writeValue(&b, v)
	return b.String()
}
