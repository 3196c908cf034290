package dispatch

import (
	"encoding/base64"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// TimeLayout is how received_at is written in text records: UTC with all
// nine fractional digits, so that text order is time order.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Message body formats, the format setting of the sinks that publish one
// message per frame.
const (
	FormatJSON   = "json"   // the frame's JSON record (AppendJSON)
	FormatRaw    = "raw"    // the payload, unchanged
	FormatFields = "fields" // the decoder's fields object
)

// ErrNoFields is AppendBody's error when the format is FormatFields and the
// frame has no decoded fields; retrying cannot change it.
var ErrNoFields = errors.New("frame has no decoded fields (format: fields)")

// AppendBody appends f's message body in format: the payload (FormatRaw),
// the decoded fields (FormatFields; ErrNoFields and dst unchanged when
// there are none) or, for any other format, the JSON record (AppendJSON).
func AppendBody(dst []byte, f *serialcb.Frame, format string) ([]byte, error) {
	switch format {
	case FormatRaw:
		return append(dst, f.Payload...), nil
	case FormatFields:
		if len(f.Fields) == 0 {
			return dst, ErrNoFields
		}
		return append(dst, f.Fields...), nil
	}
	return AppendJSON(dst, f), nil
}

// BodySize estimates the bytes AppendBody appends for f in format, to size
// a batch's buffer.
func BodySize(f *serialcb.Frame, format string) int {
	switch format {
	case FormatRaw:
		return len(f.Payload)
	case FormatFields:
		return len(f.Fields)
	}
	return 128 + len(f.Port) + len(f.Payload)*4/3
}

// AppendJSON appends the frame's record as one JSON object (no newline):
//
//	{"id":"…","port":"…","seq":1,"received_at":"…","payload":"…"}
//	{"id":"…","port":"…","seq":1,"received_at":"…","payload":"…","fields":{…}}
//
// The payload is text when it is valid UTF-8; otherwise it is base64 and the
// object has "encoding":"base64". When the frame has decoded fields
// (len(f.Fields) > 0) they follow as "fields", copied as they are: f.Fields
// must hold one JSON object, as the decoders of serialcb/decode append. It
// does not allocate when dst has room.
func AppendJSON(dst []byte, f *serialcb.Frame) []byte {
	dst = append(dst, `{"id":"`...)
	dst, _ = f.ID.AppendText(dst)
	dst = append(dst, `","port":`...)
	dst = jsontext.AppendString(dst, f.Port)
	dst = append(dst, `,"seq":`...)
	dst = appendUint(dst, f.Seq)
	dst = append(dst, `,"received_at":"`...)
	dst = f.ReceivedAt.UTC().AppendFormat(dst, TimeLayout)
	dst = append(dst, `",`...)
	dst = AppendPayload(dst, f.Payload, f.Fields)
	return append(dst, '}')
}

// AppendPayload appends the members "payload" (text when payload is valid
// UTF-8, else base64 followed by "encoding":"base64") and, when fields is
// not empty, "fields" (fields as they are: one JSON object), as every
// record with a payload writes them.
func AppendPayload(dst, payload, fields []byte) []byte {
	dst = append(dst, `"payload":`...)
	if utf8.Valid(payload) {
		dst = jsontext.AppendString(dst, payload)
	} else {
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, payload)
		dst = append(dst, `","encoding":"base64"`...)
	}
	if len(fields) > 0 {
		dst = append(dst, `,"fields":`...)
		dst = append(dst, fields...)
	}
	return dst
}

// FormatTime formats t as records store received_at.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// TimeCache appends times exactly as t.UTC().AppendFormat(dst, TimeLayout)
// does, but formats the date and clock only when the Unix second changes:
// frames of a batch usually share it, and then only the nine fractional
// digits are written. The zero value is ready to use; it is not safe for
// concurrent use.
type TimeCache struct {
	sec    int64
	prefix [20]byte // "2006-01-02T15:04:05." of sec, in UTC
	ok     bool
}

// Append appends t as TimeLayout in UTC.
func (c *TimeCache) Append(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if !c.ok || sec != c.sec {
		start := len(dst)
		dst = t.UTC().AppendFormat(dst, TimeLayout)
		// Years outside 0000..9999 change the length: never cached.
		out := dst[start:]
		c.ok = len(out) == len(c.prefix)+10 && out[len(c.prefix)-1] == '.' && out[len(out)-1] == 'Z'
		if c.ok {
			copy(c.prefix[:], out)
			c.sec = sec
		}
		return dst
	}
	dst = append(dst, c.prefix[:]...)
	var b [10]byte
	ns := t.Nanosecond()
	for i := 8; i >= 0; i-- {
		b[i] = byte('0' + ns%10)
		ns /= 10
	}
	b[9] = 'Z'
	return append(dst, b[:]...)
}

func appendUint(dst []byte, v uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}
