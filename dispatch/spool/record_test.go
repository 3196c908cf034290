package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// recordV1 builds a version 1 record by hand, as builds before fields
// wrote it, independently of appendRecord.
func recordV1(f *serialcb.Frame) []byte {
	body := []byte{1}
	body = append(body, f.ID[:]...)
	body = binary.AppendUvarint(body, f.Seq)
	body = binary.AppendVarint(body, f.ReceivedAt.Unix())
	body = binary.AppendUvarint(body, uint64(f.ReceivedAt.Nanosecond()))
	body = binary.AppendUvarint(body, uint64(len(f.Port)))
	body = append(body, f.Port...)
	body = binary.AppendUvarint(body, uint64(len(f.Payload)))
	body = append(body, f.Payload...)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
	rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(body, castagnoli))
	return append(rec, body...)
}

func TestRecordVersions(t *testing.T) {
	at := time.Date(2026, 3, 14, 9, 26, 53, 123456789, time.UTC)
	plain := &serialcb.Frame{ID: serialcb.ID{7, 1}, Port: "gps", Seq: 300, ReceivedAt: at, Payload: []byte("$GPGGA,1")}
	withFields := *plain
	withFields.Fields = []byte(`{"talker":"GP","type":"GGA"}`)

	// Without fields: version 1, the same bytes as before fields existed.
	rec := appendRecord(nil, plain)
	if want := recordV1(plain); !bytes.Equal(rec, want) {
		t.Fatalf("frame without fields encodes as\n%x\nwant the version 1 record\n%x", rec, want)
	}
	// With fields: version 2, read back with the fields.
	rec2 := appendRecord(nil, &withFields)
	if rec2[recHeaderSize] != bodyVersion2 || len(rec2) != recordSize(&withFields) {
		t.Fatalf("version %d, len %d (recordSize %d)", rec2[recHeaderSize], len(rec2), recordSize(&withFields))
	}
	for _, tt := range []struct {
		name string
		rec  []byte
		want *serialcb.Frame
	}{{"v1", rec, plain}, {"v2", rec2, &withFields}} {
		v, n, err := decodeRecord(tt.rec)
		if err != nil || n != len(tt.rec) {
			t.Fatalf("%s: %v (n %d of %d)", tt.name, err, n, len(tt.rec))
		}
		if v.id != tt.want.ID || v.seq != tt.want.Seq || !v.receivedAt().Equal(at) || string(v.port) != "gps" ||
			!bytes.Equal(v.payload, tt.want.Payload) || !bytes.Equal(v.fields, tt.want.Fields) {
			t.Errorf("%s: decoded %+v", tt.name, v)
		}
	}
	// A version 2 body with empty fields, or a version 3, is not a record.
	for _, body := range [][]byte{
		append(append([]byte{2}, recordV1(plain)[recHeaderSize+1:]...), 0),
		append([]byte{3}, recordV1(plain)[recHeaderSize+1:]...),
	} {
		rec := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
		rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(body, castagnoli))
		if _, _, err := decodeRecord(append(rec, body...)); !errors.Is(err, errBadBody) {
			t.Errorf("body version %d: err %v, want errBadBody", body[0], err)
		}
	}
}

// Fields survive the spool: appended, closed, reopened and read back, next
// to frames without fields (version 1 records in the same segment).
func TestSpoolKeepsFields(t *testing.T) {
	dir := t.TempDir()
	in := mkFrames("gps", 1, 6, -1)
	for i, f := range in {
		if i%2 == 0 {
			f.Fields = []byte(`{"seq":"` + string(rune('0'+i)) + `"}`)
		}
	}
	s := open(t, Options{Dir: dir})
	if err := s.Append(in); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Options{Dir: dir})
	got, _ := readAll(t, s, 4)
	if len(got) != len(in) {
		t.Fatalf("read %d frames, want %d", len(got), len(in))
	}
	for i := range in {
		if !sameFrame(got[i], in[i]) || !bytes.Equal(got[i].Fields, in[i].Fields) {
			t.Errorf("frame %d: fields %q, want %q", i, got[i].Fields, in[i].Fields)
		}
		if len(in[i].Fields) == 0 && got[i].Fields != nil {
			t.Errorf("frame %d: fields %q, want nil", i, got[i].Fields)
		}
	}
}
