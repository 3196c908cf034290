package mqttsink

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/dispatch/placeholder"
	"github.com/serialcbd/serialcbd/serialcb"
)

// template is a parsed topic: literal text and placeholders, in order.
// Its placeholders are those of the other sinks' name templates, but MQTT
// topics keep their values as they are, so a rendered topic is checked
// instead.
type template struct {
	segs []placeholder.Segment
	// fixed is the whole topic when it has no placeholder.
	fixed string
}

const fieldPrefix = "field."

// parseTemplate parses a topic template: literal text with {port} and
// {field.NAME} placeholders. The literal text must be a valid topic name
// without wildcards.
func parseTemplate(s string) (template, error) {
	var t template
	if err := checkTopicText(s); err != nil {
		return t, err
	}
	if len(s) > maxTopicLen {
		return t, fmt.Errorf("%d bytes: over MQTT's limit of %d", len(s), maxTopicLen)
	}
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		if cl := strings.IndexByte(rest, '}'); cl >= 0 && (open < 0 || cl < open) {
			return template{}, errors.New("'}' without '{': placeholders are {port} and {field.NAME}")
		}
		if open < 0 {
			t.segs = append(t.segs, placeholder.Segment{Kind: placeholder.Literal, Text: rest})
			break
		}
		if open > 0 {
			t.segs = append(t.segs, placeholder.Segment{Kind: placeholder.Literal, Text: rest[:open]})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return template{}, errors.New("'{' without '}': placeholders are {port} and {field.NAME}")
		}
		name := rest[open+1 : open+end]
		switch {
		case name == "port":
			t.segs = append(t.segs, placeholder.Segment{Kind: placeholder.Port})
		case strings.HasPrefix(name, fieldPrefix) && len(name) > len(fieldPrefix) && !strings.ContainsRune(name, '{'):
			t.segs = append(t.segs, placeholder.Segment{Kind: placeholder.Field, Text: name[len(fieldPrefix):]})
		default:
			return template{}, fmt.Errorf("unknown placeholder {%s}: placeholders are {port} and {field.NAME}", name)
		}
		rest = rest[open+end+1:]
	}
	if len(t.segs) == 1 && t.segs[0].Kind == placeholder.Literal {
		t.fixed = t.segs[0].Text
	}
	return t, nil
}

// checkTopicText reports why s cannot be (part of) a topic to publish to:
// MQTT forbids wildcards, NUL and invalid UTF-8 there.
func checkTopicText(s string) error {
	switch {
	case strings.ContainsAny(s, "+#"):
		return errors.New("MQTT wildcards '+' and '#' are not allowed in a topic to publish to")
	case strings.ContainsRune(s, 0):
		return errors.New("NUL is not allowed in a topic")
	case !utf8.ValidString(s):
		return errors.New("a topic must be valid UTF-8")
	}
	return nil
}

// render returns the topic of frame f. A field the frame lacks becomes
// missing. It fails when a substituted value makes the topic invalid.
func (t *template) render(f *serialcb.Frame, missing string) (string, error) {
	if t.fixed != "" {
		return t.fixed, nil
	}
	topic := placeholder.Render(t.segs, f, missing, nil)
	if err := checkTopicText(topic); err != nil {
		return "", fmt.Errorf("mqtt sink: topic %q: %w", topic, err)
	}
	if topic == "" {
		return "", errors.New("mqtt sink: topic is empty for this frame")
	}
	if len(topic) > maxTopicLen {
		return "", fmt.Errorf("mqtt sink: topic of %d bytes: over MQTT's limit of %d", len(topic), maxTopicLen)
	}
	return topic, nil
}
