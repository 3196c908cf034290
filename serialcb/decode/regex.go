package decode

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// regexDecoder writes the named groups of the first match as string fields.
type regexDecoder struct {
	re     *regexp.Regexp
	groups []int    // indexes of the named groups
	keys   [][]byte // "name": for each of groups
}

func newRegex(expr string) (*regexDecoder, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("decode regex: %w", err)
	}
	d := &regexDecoder{re: re}
	seen := map[string]bool{}
	for i, name := range re.SubexpNames() {
		if name == "" {
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("decode regex: group name %q used twice", name)
		}
		seen[name] = true
		d.groups = append(d.groups, i)
		d.keys = append(d.keys, quotedKey(name))
	}
	if len(d.groups) == 0 {
		return nil, errors.New("decode regex: no named group: name the values to keep, as in (?P<temp>[0-9.]+)")
	}
	return d, nil
}

// Append writes {"name":"text",...} for the named groups of the leftmost
// match; a group that took no part in the match is left out.
func (d *regexDecoder) Append(dst, payload []byte) ([]byte, error) {
	loc := d.re.FindSubmatchIndex(payload)
	if loc == nil {
		return dst, mismatch("decode regex: no match")
	}
	dst = append(dst, '{')
	first := true
	for k, g := range d.groups {
		s, e := loc[2*g], loc[2*g+1]
		if s < 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, d.keys[k]...)
		dst = jsontext.AppendString(dst, payload[s:e])
	}
	return append(dst, '}'), nil
}
