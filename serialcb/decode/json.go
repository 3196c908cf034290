package decode

import (
	"encoding/json"
	"unicode/utf8"
)

// jsonDecoder passes a payload that is one JSON object through, compacted.
type jsonDecoder struct{}

// Append checks that payload is valid UTF-8 holding one JSON object and
// appends it without the whitespace between tokens.
func (jsonDecoder) Append(dst, payload []byte) ([]byte, error) {
	i := 0
	for i < len(payload) && isJSONSpace(payload[i]) {
		i++
	}
	if i == len(payload) || payload[i] != '{' {
		return dst, mismatch("decode json: not a JSON object")
	}
	if !utf8.Valid(payload) || !json.Valid(payload) {
		return dst, mismatch("decode json: invalid JSON")
	}
	// Valid JSON: copy runs of bytes, dropping whitespace outside strings.
	inString, escaped := false, false
	from := i
	for j := i; j < len(payload); j++ {
		c := payload[j]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case isJSONSpace(c):
			dst = append(dst, payload[from:j]...)
			from = j + 1
		}
	}
	return append(dst, payload[from:]...), nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
