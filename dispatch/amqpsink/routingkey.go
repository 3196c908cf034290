package amqpsink

import (
	"fmt"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/dispatch/placeholder"
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

// keyWord sanitises a placeholder value into one word of a routing key.
var keyWord = placeholder.NewSanitizer(MaxValueLen, false, func(c byte) bool {
	return c > ' ' && c != 0x7f && c != '.' && c != '*' && c != '#'
})

type template struct {
	segs     []placeholder.Segment
	static   string
	isStatic bool
}

func parseTemplate(s string) (*template, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("routing key %q: not valid UTF-8", s)
	}
	segs, err := placeholder.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("routing key template %q: %w", s, err)
	}
	if maxLen := placeholder.MaxLen(segs, MaxValueLen); maxLen > maxKeyLen {
		return nil, fmt.Errorf("routing key template %q: keys can be %d bytes long (each placeholder counts %d), over AMQP's limit of %d", s, maxLen, MaxValueLen, maxKeyLen)
	}
	t := &template{segs: segs}
	t.static, t.isStatic = placeholder.Static(segs)
	return t, nil
}

func (t *template) render(f *serialcb.Frame, missing string) string {
	if t.isStatic {
		return t.static
	}
	return placeholder.Render(t.segs, f, missing, keyWord)
}

func sanitize(v string) string { return keyWord.String(v) }
