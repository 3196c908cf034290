package dispatch_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

type record struct {
	ID         string          `json:"id"`
	Port       string          `json:"port"`
	Seq        uint64          `json:"seq"`
	ReceivedAt string          `json:"received_at"`
	Payload    string          `json:"payload"`
	Encoding   string          `json:"encoding"`
	Fields     json.RawMessage `json:"fields"`
}

func decodeRecord(t testing.TB, b []byte) record {
	t.Helper()
	var r record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("invalid JSON %q: %v", b, err)
	}
	return r
}

func payloadOf(t testing.TB, r record) []byte {
	if r.Encoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return []byte(r.Payload)
}

func TestAppendJSON(t *testing.T) {
	var gen serialcb.IDGen
	at := time.Date(2026, 3, 14, 9, 26, 53, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name     string
		payload  []byte
		encoding string
	}{
		{"nmea", []byte("$GPGGA,092653.00,4851.5022,N*5B"), ""},
		{"quotes and control", []byte("a\"b\\c\td\x00e\x1f\r"), ""},
		{"line separators", []byte("x\u2028y\u2029z"), ""},
		{"utf-8", []byte("température 21,4 °C"), ""},
		{"invalid utf-8", []byte{0xb5, 0x62, 0x01, 0x07, 0xff}, "base64"},
		{"empty", []byte{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &serialcb.Frame{ID: gen.New(at), Port: "gps-1", Seq: 42, ReceivedAt: at, Payload: tt.payload}
			r := decodeRecord(t, dispatch.AppendJSON(nil, f))
			if r.ID != f.ID.String() || r.Port != "gps-1" || r.Seq != 42 || r.Encoding != tt.encoding {
				t.Errorf("record %+v", r)
			}
			if r.ReceivedAt != "2026-03-14T08:26:53.123456789Z" {
				t.Errorf("received_at %q, want UTC with 9 digits", r.ReceivedAt)
			}
			if got := payloadOf(t, r); !bytes.Equal(got, tt.payload) {
				t.Errorf("payload %q, want %q", got, tt.payload)
			}
		})
	}
}

func TestAppendJSONFields(t *testing.T) {
	at := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	tests := []struct {
		name    string
		payload []byte
		fields  []byte
		want    string // the record's tail after received_at
	}{
		{"none", []byte("x"), nil, `"payload":"x"}`},
		{"empty is none", []byte("x"), []byte{}, `"payload":"x"}`},
		{"text payload", []byte("21.5,40"), []byte(`{"temp":"21.5","rh":"40"}`), `"payload":"21.5,40","fields":{"temp":"21.5","rh":"40"}}`},
		{"binary payload", []byte{0xff, 0}, []byte(`{"hex":"ff00"}`), `"payload":"/wA=","encoding":"base64","fields":{"hex":"ff00"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &serialcb.Frame{Port: "p", Seq: 1, ReceivedAt: at, Payload: tt.payload, Fields: tt.fields}
			b := dispatch.AppendJSON(nil, f)
			if !bytes.HasSuffix(b, []byte(tt.want)) {
				t.Errorf("record %s\nwant it to end with %s", b, tt.want)
			}
			r := decodeRecord(t, b)
			if !bytes.Equal(r.Fields, tt.fields) && (len(r.Fields) != 0 || len(tt.fields) != 0) {
				t.Errorf("fields %s, want %s", r.Fields, tt.fields)
			}
		})
	}
	f := &serialcb.Frame{Port: "p", ReceivedAt: at, Payload: []byte("x"), Fields: []byte(`{"a":"b"}`)}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = dispatch.AppendJSON(buf[:0], f) }); n != 0 {
		t.Errorf("%v allocs with fields, want 0", n)
	}
}

// FuzzAppendJSON checks that any payload round-trips and that fields, when
// they are one JSON object (what decoders produce), come back unchanged in
// a record that is still valid JSON. Whitespace after the object is not
// part of it: a JSON decoder drops it (testdata: "{} ").
func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte("hello"), []byte(nil))
	f.Add([]byte{0, 0xff, '"', '\\', 0xe2, 0x80, 0xa8}, []byte(`{"hex":"00ff"}`))
	f.Fuzz(func(t *testing.T, payload, fields []byte) {
		fields = bytes.TrimRight(fields, " \t\r\n")
		if !json.Valid(fields) || len(fields) == 0 || fields[0] != '{' {
			fields = nil
		}
		fr := &serialcb.Frame{Port: "p", Seq: 1, ReceivedAt: time.Unix(0, 1), Payload: payload, Fields: fields}
		r := decodeRecord(t, dispatch.AppendJSON(nil, fr))
		if got := payloadOf(t, r); !bytes.Equal(got, payload) {
			t.Fatalf("payload %q round-tripped to %q", payload, got)
		}
		if !bytes.Equal(r.Fields, fields) && (len(r.Fields) != 0 || len(fields) != 0) {
			t.Fatalf("fields %q came back as %q", fields, r.Fields)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	var gen serialcb.IDGen
	f := &serialcb.Frame{ID: gen.New(time.Now()), Port: "gps", Seq: 1, ReceivedAt: time.Now(), Payload: bytes.Repeat([]byte("a"), 64)}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = dispatch.AppendJSON(buf[:0], f)
	}
}

func TestAppendBody(t *testing.T) {
	f := &serialcb.Frame{Port: "p", Payload: []byte("raw"), Fields: []byte(`{"a":1}`)}
	record := string(dispatch.AppendJSON(nil, f))
	for _, tt := range []struct {
		format, want string
		size         int
	}{
		{dispatch.FormatRaw, "raw", 3},
		{dispatch.FormatFields, `{"a":1}`, 7},
		{dispatch.FormatJSON, record, 128 + 1 + 3*4/3},
		{"", record, 128 + 1 + 3*4/3},
	} {
		got, err := dispatch.AppendBody([]byte("pre:"), f, tt.format)
		if err != nil || string(got) != "pre:"+tt.want {
			t.Errorf("AppendBody(%q) = %q, %v; want %q", tt.format, got, err, "pre:"+tt.want)
		}
		if n := dispatch.BodySize(f, tt.format); n != tt.size {
			t.Errorf("BodySize(%q) = %d, want %d", tt.format, n, tt.size)
		}
	}
	got, err := dispatch.AppendBody([]byte("pre:"), &serialcb.Frame{}, dispatch.FormatFields)
	if !errors.Is(err, dispatch.ErrNoFields) || string(got) != "pre:" {
		t.Errorf("no fields: %q, %v; want \"pre:\" and ErrNoFields", got, err)
	}
}
