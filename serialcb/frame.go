package serialcb

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Frame is one unit cut from a port's byte stream. It is the record every
// sink stores, unchanged across retries.
type Frame struct {
	// ID is unique and time-ordered (UUIDv7); sinks use it to make retried
	// writes idempotent.
	ID ID
	// Port is the configured name of the port the frame came from.
	Port string
	// Seq counts frames per port, starting at 1 each time the daemon starts.
	Seq uint64
	// ReceivedAt is when the frame's last byte was read, in UTC.
	ReceivedAt time.Time
	// Payload holds the frame's exact bytes without the delimiter. The frame
	// owns it: callers may keep it.
	Payload []byte
	// Fields holds the named values a decoder found in the payload, as one
	// JSON object ({"name":value,...}); nil when the port has no decoder or
	// the decoder found nothing. A framer that knows what it cut (gnss:
	// {"proto":"ubx","class":1,"id":7}) sets them at the read loop; a
	// decoder that reads the payload replaces them. Encoded once, where the frame is cut, so
	// every sink writes the same bytes and the spool keeps them.
	Fields []byte
}

// Field returns the value of the top-level field name in f.Fields: a JSON
// string unquoted, any other value (number, bool, object) as its JSON text.
// ok is false when there is no such field. It is for templates and routing
// rules, not for hot loops over many names.
func (f *Frame) Field(name string) (value string, ok bool) {
	if len(f.Fields) == 0 {
		return "", false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(f.Fields, &m) != nil {
		return "", false
	}
	raw, ok := m[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	return string(raw), true
}

// ID is a UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit
// counter that keeps IDs from one generator ordered within a millisecond,
// then 62 random bits.
type ID [16]byte

// String returns the canonical 36-character hyphenated form.
func (id ID) String() string {
	var b [36]byte
	id.appendTo(b[:0])
	return string(b[:])
}

// AppendText appends the canonical form to dst (encoding.TextAppender).
func (id ID) AppendText(dst []byte) ([]byte, error) { return id.appendTo(dst), nil }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return id.appendTo(make([]byte, 0, 36)), nil }

func (id ID) appendTo(dst []byte) []byte {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	return append(dst, b[:]...)
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ErrBadID is returned by ParseID for text that is not a hyphenated UUID.
var ErrBadID = errors.New("not a UUID in 8-4-4-4-12 hex form")

// ParseID parses the canonical 36-character form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, ErrBadID
	}
	src := []byte(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if _, err := hex.Decode(id[:], src); err != nil {
		return id, ErrBadID
	}
	return id, nil
}

// Time returns the millisecond timestamp embedded in the ID.
func (id ID) Time() time.Time {
	ms := int64(binary.BigEndian.Uint64(id[0:8]) >> 16)
	return time.UnixMilli(ms).UTC()
}

// IDGen makes IDs that are strictly increasing for one generator, even when
// the wall clock steps back or many IDs fall in one millisecond. It is safe
// for concurrent use; each port's read loop normally owns one.
type IDGen struct {
	mu      sync.Mutex
	lastMS  int64
	counter uint16 // 12 bits used
}

// New returns the next ID for a frame received at t.
func (g *IDGen) New(t time.Time) ID {
	ms := t.UnixMilli()
	g.mu.Lock()
	if ms > g.lastMS {
		g.lastMS = ms
		// Start the counter low but random, so it rarely overflows and two
		// generators in one millisecond still differ in more than the tail.
		g.counter = uint16(rand.Uint32() & 0x1ff)
	} else {
		g.counter++
		if g.counter > 0xfff {
			// Counter exhausted: borrow the next millisecond (RFC 9562 6.2).
			g.lastMS++
			g.counter = 0
		}
		ms = g.lastMS
	}
	counter := g.counter
	g.mu.Unlock()

	var id ID
	binary.BigEndian.PutUint64(id[0:8], uint64(ms)<<16|0x7000|uint64(counter))
	binary.BigEndian.PutUint64(id[8:16], rand.Uint64())
	id[8] = id[8]&0x3f | 0x80 // variant 10
	return id
}
