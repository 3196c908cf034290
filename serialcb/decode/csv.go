package decode

import (
	"errors"
	"fmt"
	"strings"

	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// csvDecoder names the columns of a delimited line.
type csvDecoder struct {
	sep     byte
	numbers bool
	keys    [][]byte // "name": per column; nil skips the column
}

// newCSV parses NAME,NAME,...[;sep=X][;numbers].
func newCSV(arg string) (*csvDecoder, error) {
	namesPart, opts, _ := strings.Cut(arg, ";")
	d := &csvDecoder{sep: ','}
	for opts != "" {
		var opt string
		if v, ok := strings.CutPrefix(opts, "sep="); ok {
			switch {
			case strings.HasPrefix(v, "tab"):
				d.sep, opts = '\t', v[3:]
			case strings.HasPrefix(v, `\t`):
				d.sep, opts = '\t', v[2:]
			case v != "":
				d.sep, opts = v[0], v[1:]
			default:
				return nil, errors.New("decode csv: sep= needs one character (or tab)")
			}
			if opts != "" && opts[0] != ';' {
				return nil, fmt.Errorf("decode csv: sep=%s: the separator is one character (or tab)", v)
			}
			opts = strings.TrimPrefix(opts, ";")
			continue
		}
		opt, opts, _ = strings.Cut(opts, ";")
		switch opt {
		case "numbers":
			d.numbers = true
		default:
			return nil, fmt.Errorf("decode csv: unknown option %q (expected sep=X or numbers)", opt)
		}
	}
	if d.sep == '\r' || d.sep == '\n' || d.sep == '"' {
		return nil, fmt.Errorf("decode csv: sep %q cannot separate columns", d.sep)
	}
	seen := map[string]bool{}
	named := 0
	for name := range strings.SplitSeq(namesPart, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return nil, fmt.Errorf("decode csv: empty column name in %q (use _ to skip a column)", namesPart)
		case name == "_":
			d.keys = append(d.keys, nil)
			continue
		case seen[name]:
			return nil, fmt.Errorf("decode csv: column name %q used twice", name)
		}
		seen[name] = true
		named++
		d.keys = append(d.keys, quotedKey(name))
	}
	if named == 0 {
		return nil, errors.New("decode csv: no column names, only _")
	}
	return d, nil
}

// Append splits payload at sep and writes the first len(names) columns by
// name. Fewer columns than names is a mismatch; extra columns are ignored.
// Values are trimmed of spaces, tabs (unless tab is the separator), CR and
// LF. There is no quoting: every sep byte separates.
func (d *csvDecoder) Append(dst, payload []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, '{')
	first := true
	rest, more := payload, true
	for _, key := range d.keys {
		if !more {
			return dst[:start], mismatch("decode csv: fewer columns than names")
		}
		var col []byte
		if i := indexByte(rest, d.sep); i >= 0 {
			col, rest = rest[:i], rest[i+1:]
		} else {
			col, more = rest, false
		}
		if key == nil {
			continue
		}
		col = d.trim(col)
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, key...)
		if d.numbers && isJSONNumber(col) {
			dst = append(dst, col...)
		} else {
			dst = jsontext.AppendString(dst, col)
		}
	}
	return append(dst, '}'), nil
}

func (d *csvDecoder) trim(b []byte) []byte {
	for len(b) > 0 && d.space(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && d.space(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func (d *csvDecoder) space(c byte) bool {
	return c == ' ' && d.sep != ' ' || c == '\t' && d.sep != '\t' || c == '\r' || c == '\n'
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
