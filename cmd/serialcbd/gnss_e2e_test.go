package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// gnssRecord is what the file sink writes for a gnss frame.
type gnssRecord struct {
	Payload  string `json:"payload"`
	Encoding string `json:"encoding"`
	Fields   struct {
		Proto string `json:"proto"`
		Class *int   `json:"class"`
		ID    *int   `json:"id"`
	} `json:"fields"`
}

// validPackets finds every checksum-valid NMEA sentence and UBX packet in
// data, independently of serialcb: at each offset a UBX packet (B5 62,
// class, id, u16 LE length, payload, Fletcher-8 over class..payload) or a
// sentence ('$' or '!', printable bytes other than '$' and '!', '*', two
// hex digits equal to the XOR of the body, CR LF or LF) is taken whole;
// any other byte is skipped.
func validPackets(data []byte) (packets []string, nmea, ubx int) {
	for i := 0; i < len(data); {
		d := data[i:]
		if len(d) >= 8 && d[0] == 0xB5 && d[1] == 0x62 {
			n := int(d[4]) | int(d[5])<<8
			if n <= 8192 && len(d) >= n+8 {
				var a, b byte
				for _, c := range d[2 : 6+n] {
					a += c
					b += a
				}
				if a == d[6+n] && b == d[7+n] {
					packets = append(packets, string(d[:n+8]))
					ubx++
					i += n + 8
					continue
				}
			}
		}
		if d[0] == '$' || d[0] == '!' {
			if s, n := sentenceAt(d); n > 0 {
				packets = append(packets, s)
				nmea++
				i += n
				continue
			}
		}
		i++
	}
	return packets, nmea, ubx
}

// sentenceAt returns the valid sentence at the start of d (without its
// line end) and the bytes it takes, or 0.
func sentenceAt(d []byte) (string, int) {
	end := bytes.IndexByte(d, '\n')
	if end < 0 || end >= 256 {
		return "", 0
	}
	line := bytes.TrimSuffix(d[:end], []byte("\r"))
	star := len(line) - 3
	if star < 1 || line[star] != '*' {
		return "", 0
	}
	var sum byte
	for _, c := range line[1:star] {
		if c < 0x20 || c > 0x7E || c == '$' || c == '!' {
			return "", 0
		}
		sum ^= c
	}
	if fmt.Sprintf("%02X", sum) != string(bytes.ToUpper(line[star+1:])) {
		return "", 0
	}
	return string(line), end + 1
}

func readGNSSRecords(t *testing.T, path string) []gnssRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var recs []gnssRecord
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r gnssRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("bad JSONL line %q: %v", line, err)
		}
		if r.Encoding == "base64" {
			p, err := base64.StdEncoding.DecodeString(r.Payload)
			if err != nil {
				t.Fatal(err)
			}
			r.Payload = string(p)
		}
		recs = append(recs, r)
	}
	return recs
}

// Every valid NMEA sentence and UBX packet of the gpsd captures, written
// through a socat pty to the daemon with --framing gnss, reaches the sink
// once, in order, with its proto field.
func TestEndToEndGNSSCaptures(t *testing.T) {
	var stream []byte
	for _, name := range []string{"bu353s4.log", "bundg_zeus_9.log", "neo-m8n.log", "nmea-fuzzy-cases.log", "ublox-zed-f9p_hpg1.11.log"} {
		data, err := os.ReadFile(realdata.Path(t, name))
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, data...)
	}
	want, nmea, ubx := validPackets(stream)
	if nmea < 8000 || ubx < 1900 {
		t.Fatalf("the reference found only %d sentences and %d UBX packets", nmea, ubx)
	}
	t.Logf("%d bytes: %d NMEA sentences, %d UBX packets", len(stream), nmea, ubx)

	dev, app := socatPair(t)
	out := filepath.Join(t.TempDir(), "frames.jsonl")
	d := startDaemon(t, "--port", app, "--baud", "115200", "--framing", "gnss", "--sink", "file:"+out)
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(stream); err != nil {
		t.Fatal(err)
	}
	var recs []gnssRecord
	for deadline := time.Now().Add(60 * time.Second); len(recs) < len(want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the sink holds %d of %d packets", len(recs), len(want))
		}
		recs = readGNSSRecords(t, out)
	}
	if err, _ := d.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	recs = readGNSSRecords(t, out)
	got := make([]string, len(recs))
	gotNMEA, gotUBX := 0, 0
	for i, r := range recs {
		got[i] = r.Payload
		switch {
		case r.Fields.Proto == "nmea" && (r.Payload[0] == '$' || r.Payload[0] == '!'):
			gotNMEA++
		case r.Fields.Proto == "ubx" && r.Payload[0] == 0xB5 && r.Fields.Class != nil && r.Fields.ID != nil &&
			*r.Fields.Class == int(r.Payload[2]) && *r.Fields.ID == int(r.Payload[3]):
			gotUBX++
		default:
			t.Errorf("record %d: proto %q for %q", i, r.Fields.Proto, r.Payload[:min(len(r.Payload), 16)])
		}
	}
	if gotNMEA != nmea || gotUBX != ubx {
		t.Errorf("sink: %d sentences and %d UBX packets, want %d and %d", gotNMEA, gotUBX, nmea, ubx)
	}
	if !slices.Equal(got, want) {
		i := 0
		for i < min(len(got), len(want)) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%d records, want %d; first difference at %d", len(got), len(want), i)
	}
}

// The last sentence of a capture framed with a regex ending in its
// terminator reaches the sink while the daemon runs: it is final when read,
// not held until a next byte that never comes (4,999 sentences used to give
// 4,998 records).
func TestEndToEndRegexLastSentence(t *testing.T) {
	data, err := os.ReadFile(realdata.Path(t, "bundg_zeus_9.log"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) > 2 && (line[0] == '$' || line[0] == '!') && bytes.HasSuffix(line, []byte("\r\n")) {
			want = append(want, string(line))
		}
	}
	if len(want) != 4999 {
		t.Fatalf("the capture has %d sentences, want 4999", len(want))
	}
	dev, app := socatPair(t)
	out := filepath.Join(t.TempDir(), "frames.jsonl")
	d := startDaemon(t, "--port", app, "--baud", "115200", "--framing", `regex:[$!][^\r\n]*\r\n`, "--sink", "file:"+out)
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	var recs []gnssRecord
	for deadline := time.Now().Add(60 * time.Second); len(recs) < len(want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the sink holds %d of %d sentences while the daemon runs", len(recs), len(want))
		}
		recs = readGNSSRecords(t, out)
	}
	if err, _ := d.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
	recs = readGNSSRecords(t, out)
	if len(recs) != len(want) || recs[len(recs)-1].Payload != want[len(want)-1] {
		t.Fatalf("%d records, want %d; last %q, want %q", len(recs), len(want), recs[len(recs)-1].Payload, want[len(want)-1])
	}
}
