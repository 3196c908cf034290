package kafkasink

import (
	"errors"
	"fmt"

	"github.com/serialcbd/serialcbd/dispatch/placeholder"
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

// topicValue sanitises a placeholder value into topic characters.
var topicValue = placeholder.NewSanitizer(MaxValueLen, true, topicByte)

// template is a parsed topic template.
type template struct {
	segs   []placeholder.Segment
	static string // the topic when there is no placeholder
}

var errEmptyTopic = errors.New("empty topic: the spec is kafka://BROKER[,BROKER...]/TOPIC")

// parseTemplate parses and validates a topic template.
func parseTemplate(s string) (*template, error) {
	if s == "" {
		return nil, errEmptyTopic
	}
	segs, err := placeholder.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("topic template %q: %w", s, err)
	}
	for _, sg := range segs {
		if sg.Kind != placeholder.Literal {
			continue
		}
		for i := 0; i < len(sg.Text); i++ {
			if !topicByte(sg.Text[i]) {
				return nil, fmt.Errorf("topic template %q: %q is not allowed in a Kafka topic (letters, digits, '.', '_' and '-' only)", s, sg.Text[i])
			}
		}
	}
	if maxLen := placeholder.MaxLen(segs, MaxValueLen); maxLen > maxTopicLen {
		return nil, fmt.Errorf("topic template %q: topics can be %d bytes long (each placeholder counts %d), over Kafka's limit of %d", s, maxLen, MaxValueLen, maxTopicLen)
	}
	t := &template{segs: segs}
	if static, ok := placeholder.Static(segs); ok {
		if s == "." || s == ".." {
			return nil, fmt.Errorf("topic %q: not allowed by Kafka", s)
		}
		t.static = static
	}
	return t, nil
}

// render returns f's topic; missing replaces a field the frame lacks.
func (t *template) render(f *serialcb.Frame, missing string) string {
	if t.static != "" {
		return t.static
	}
	return placeholder.Render(t.segs, f, missing, topicValue)
}

func topicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// sanitize returns v as it appears in a topic.
func sanitize(v string) string { return topicValue.String(v) }
