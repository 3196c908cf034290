package spool

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// FuzzDecodeRecord checks that arbitrary bytes never panic the decoder or
// the segment scanner, that whatever decodes re-encodes to a record that
// decodes to the same frame, and that a frame built from the input survives
// encode → decode unchanged.
func FuzzDecodeRecord(f *testing.F) {
	for i, fr := range mkFrames("ttyUSB0", 1, 4, -1) {
		if i%2 == 1 {
			fr.Fields = []byte(`{"hex":"0102"}`) // a version 2 record
		}
		rec := appendRecord(nil, fr)
		f.Add(rec)
		f.Add(rec[:len(rec)-1])
	}
	f.Add([]byte{})
	f.Add([]byte(segMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := decodeRecord(data)
		if err == nil {
			if n > len(data) {
				t.Fatalf("n %d > len %d", n, len(data))
			}
			fr := &serialcb.Frame{ID: v.id, Port: string(v.port), Seq: v.seq, ReceivedAt: v.receivedAt(), Payload: v.payload, Fields: v.fields}
			rec := appendRecord(nil, fr)
			if len(rec) != recordSize(fr) {
				t.Fatalf("recordSize %d, encoded %d", recordSize(fr), len(rec))
			}
			w, _, err := decodeRecord(rec)
			if err != nil || w.id != v.id || w.seq != v.seq || w.sec != v.sec || w.nsec != v.nsec ||
				!bytes.Equal(w.port, v.port) || !bytes.Equal(w.payload, v.payload) || !bytes.Equal(w.fields, v.fields) {
				t.Fatalf("re-encoded record differs: %v", err)
			}
		}
		sc := scanSegment(append([]byte(segMagic), data...), int64(len(data)/2))
		if sc.end > int64(len(data))+segHeaderSize || sc.ackOff > sc.end {
			t.Fatalf("scan out of range: %+v", sc)
		}

		// Encode → decode a frame made from the input.
		var fr serialcb.Frame
		copy(fr.ID[:], data)
		var seq, ns uint64
		if len(data) >= 8 {
			seq = binary.LittleEndian.Uint64(data)
		}
		if len(data) >= 16 {
			ns = binary.LittleEndian.Uint64(data[8:])
		}
		fr.Seq = seq
		fr.ReceivedAt = time.Unix(int64(seq>>1)%(1<<40), int64(ns%1e9)).UTC()
		if len(data) > 0 {
			k := int(data[0]) % (len(data) + 1)
			fr.Port, fr.Payload = string(data[:k]), data[k:]
			if len(data) > 1 && data[1]&1 == 1 {
				// Fields are opaque to the spool: any bytes round-trip.
				j := len(fr.Payload) / 2
				fr.Payload, fr.Fields = fr.Payload[:j], fr.Payload[j:]
			}
		}
		rec := appendRecord(nil, &fr)
		w, n, err := decodeRecord(append(rec, 0xEE)) // trailing byte belongs to the next record
		if err != nil || n != len(rec) {
			t.Fatalf("round trip: %v (n %d, len %d)", err, n, len(rec))
		}
		if w.id != fr.ID || w.seq != fr.Seq || !w.receivedAt().Equal(fr.ReceivedAt) ||
			string(w.port) != fr.Port || !bytes.Equal(w.payload, fr.Payload) || !bytes.Equal(w.fields, fr.Fields) {
			t.Fatal("round trip changed the frame")
		}
	})
}
