package serialcb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/serialcbd/serialcbd/testdata/realdata"
)

// ubxPacket and rtcmPacket are reference encoders for the tests.
func ubxPacket(class, id byte, payload []byte) []byte {
	p := []byte{0xB5, 0x62, class, id}
	p = binary.LittleEndian.AppendUint16(p, uint16(len(payload)))
	p = append(p, payload...)
	var a, b byte
	for _, c := range p[2:] {
		a += c
		b += a
	}
	return append(p, a, b)
}

// refCRC24Q is the bitwise CRC-24Q, independent of the table in gnss.go.
func refCRC24Q(p []byte) uint32 {
	var crc uint32
	for _, c := range p {
		crc ^= uint32(c) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= 0x1864CFB
			}
		}
	}
	return crc & 0xFFFFFF
}

func rtcmPacket(msg []byte) []byte {
	p := []byte{0xD3, byte(len(msg) >> 8), byte(len(msg))}
	p = append(p, msg...)
	crc := refCRC24Q(p)
	return append(p, byte(crc>>16), byte(crc>>8), byte(crc))
}

func nmeaSentence(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X", body, sum)
}

func TestCRC24QKnownValue(t *testing.T) {
	// CRC-24Q of "123456789" is 0xCDE703 (the check value of CRC-24/LTE-A,
	// the same polynomial with init 0).
	if got := crc24q([]byte("123456789")); got != 0xCDE703 {
		t.Fatalf("crc24q = %06X", got)
	}
	if got := refCRC24Q([]byte("123456789")); got != 0xCDE703 {
		t.Fatalf("refCRC24Q = %06X", got)
	}
}

// TestGNSSMixedStream: packets of every kind, glued together without line
// breaks, with noise, corrupted packets and false syncs between them.
func TestGNSSMixedStream(t *testing.T) {
	rmc := nmeaSentence("GNRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
	gga := nmeaSentence("GPGGA,1,2")
	ubx := ubxPacket(0x01, 0x07, bytes.Repeat([]byte{0x24, 0xB5, 0x0A, 0xD3}, 23)) // '$', syncs, LF inside
	ubxEmpty := ubxPacket(0x05, 0x01, nil)
	rtcm := rtcmPacket([]byte{0x3E, 0xD0, 0x00, 0x03, 0x24}) // message 1005
	badUBX := ubxPacket(0x01, 0x03, []byte{1, 2, 3})
	badUBX[len(badUBX)-1]++
	aivdm := "!" + nmeaSentence("AIVDM,1,1,,A,13aG?P0P00PD;88MD5MTDww@2<0L,0")[1:]
	badNMEA := []byte(gga)
	badNMEA[3] ^= 1

	var in bytes.Buffer
	in.WriteString("\x00garbage\xff\r\n")
	in.WriteString(rmc + "\r\n")
	in.Write(ubx)
	in.WriteString(gga + "\n") // LF only, right after a binary packet
	in.Write(badUBX)
	in.Write(badNMEA)
	in.WriteString("\r\n")
	in.WriteString("$GPGGA,cut sh") // a sentence cut short by the next
	in.Write(rtcm)
	in.Write([]byte{0xB5, 0x62, 0x01, 0x02, 0xFF, 0xFF}) // impossible length
	in.Write([]byte{0xD3, 0xFF})                         // reserved bits set
	in.Write(ubxEmpty)
	in.WriteString(aivdm + "\r\n")
	in.WriteString(gga + "\r\n")

	want := []string{rmc, string(ubx), gga, string(rtcm), string(ubxEmpty),
		aivdm, gga}
	wantFields := []string{
		`{"proto":"nmea","sentence":"GNRMC"}`,
		`{"proto":"ubx","class":1,"id":7}`,
		`{"proto":"nmea","sentence":"GPGGA"}`,
		`{"proto":"rtcm3","msg":1005}`,
		`{"proto":"ubx","class":5,"id":1}`,
		`{"proto":"nmea","sentence":"AIVDM"}`,
		`{"proto":"nmea","sentence":"GPGGA"}`,
	}
	if (NMEA{}).Valid([]byte(aivdm)) != nil {
		t.Fatal("the AIVDM test sentence is not valid")
	}
	stream := in.Bytes()
	f := GNSS()
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 50 {
		c := NewCutter(f, 0)
		var got, fields []string
		emit := func(p []byte) {
			got = append(got, string(p))
			fields = append(fields, string(f.(fielder).appendFields(nil, p)))
		}
		for p := stream; len(p) > 0; {
			n := len(p)
			if round > 0 {
				n = min(1+rng.IntN(40), len(p))
			}
			c.Feed(bytes.Clone(p[:n]), emit, func(n int) { t.Fatalf("oversize %d", n) })
			p = p[n:]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: frames\n%q\nwant\n%q", round, got, want)
		}
		if !slices.Equal(fields, wantFields) {
			t.Fatalf("fields %q, want %q", fields, wantFields)
		}
		if c.Pending() != nil {
			t.Fatalf("pending %q", c.Pending())
		}
		frameBytes := len(rmc) + len(ubx) + len(gga) + len(rtcm) + len(ubxEmpty) + len(aivdm) + len(gga) + 7 // + line ends
		if got := int(c.Noise()); got != len(stream)-frameBytes {
			t.Fatalf("noise %d, want %d", got, len(stream)-frameBytes)
		}
	}
}

func TestGNSSRefusesPartialEmit(t *testing.T) {
	err := PortConfig{Path: "/dev/x", Baud: 9600, Framer: GNSS(), PartialAtStop: PartialEmit}.Validate()
	if err == nil || !regexp.MustCompile(`gnss .*checksum`).MatchString(err.Error()) {
		t.Fatalf("Validate = %v", err)
	}
	if err := (PortConfig{Path: "/dev/x", Baud: 9600, Framer: GNSS(), PartialAtStop: PartialDrop}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// gnssRefSentence matches an NMEA sentence at the start of the input: the
// reference for the capture test, written apart from the framer.
var gnssRefSentence = regexp.MustCompile(`^[$!][\x20\x22\x23\x25-\x7e]*\*[0-9A-Fa-f]{2}\r?\n`)

// RefGNSSPackets extracts every checksum-valid NMEA sentence and UBX and
// RTCM 3 packet from data the obvious way: at each offset, try each kind;
// a valid packet is taken whole, anything else skips one byte.
func refGNSSPackets(data []byte) (nmea, ubx, rtcm int, packets []string) {
	for i := 0; i < len(data); {
		d := data[i:]
		if len(d) >= 8 && d[0] == 0xB5 && d[1] == 0x62 {
			n := int(d[4]) | int(d[5])<<8
			if n <= 8192 && len(d) >= n+8 {
				if p := ubxPacket(d[2], d[3], d[6:6+n]); bytes.Equal(p, d[:n+8]) {
					ubx++
					packets = append(packets, string(p))
					i += len(p)
					continue
				}
			}
		}
		if len(d) >= 6 && d[0] == 0xD3 && d[1]&0xFC == 0 {
			n := int(d[1])<<8 | int(d[2])
			if len(d) >= n+6 {
				if p := rtcmPacket(d[3 : 3+n]); bytes.Equal(p, d[:n+6]) {
					rtcm++
					packets = append(packets, string(p))
					i += len(p)
					continue
				}
			}
		}
		if d[0] == '$' || d[0] == '!' {
			if m := gnssRefSentence.Find(d); m != nil {
				s := bytes.TrimRight(m, "\r\n")
				if len(m) <= 256 && (NMEA{}).Valid(s) == nil {
					nmea++
					packets = append(packets, string(s))
					i += len(m)
					continue
				}
			}
		}
		i++
	}
	return nmea, ubx, rtcm, packets
}

// gnssCaptures lists the gpsd captures (see realdata) with the count
// of valid packets in each (NMEA, UBX), as the reference scanner finds them.
var gnssCaptures = map[string][2]int{
	"bu353s4.log":               {90, 0},
	"neo-m8n.log":               {293, 0},
	"nmea-fuzzy-cases.log":      {28, 0},
	"bundg_zeus_9.log":          {4999, 0},
	"ublox-zed-f9p_hpg1.11.log": {2620, 1963},
}

// TestGNSSCaptures: gnss framing recovers exactly the valid packets of
// each real capture, in order, however the reads cut the stream.
func TestGNSSCaptures(t *testing.T) {
	for name, counts := range gnssCaptures {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(realdata.Path(t, name))
			if err != nil {
				t.Fatal(err)
			}
			nmea, ubx, rtcm, want := refGNSSPackets(data)
			t.Logf("%s: %d NMEA, %d UBX, %d RTCM 3", name, nmea, ubx, rtcm)
			if counts != [2]int{nmea, ubx} {
				t.Errorf("reference scanner found %d NMEA and %d UBX, the table says %v", nmea, ubx, counts)
			}
			rng := rand.New(rand.NewPCG(5, uint64(len(data))))
			for round := range 3 {
				c := NewCutter(GNSS(), 1024)
				var got []string
				for p := data; len(p) > 0; {
					n := len(p)
					if round > 0 {
						n = min(1+rng.IntN(round*200), len(p))
					}
					c.Feed(bytes.Clone(p[:n]), func(b []byte) { got = append(got, string(b)) },
						func(n int) { t.Fatalf("oversize %d", n) })
					p = p[n:]
				}
				if !slices.Equal(got, want) {
					i := 0
					for i < min(len(got), len(want)) && got[i] == want[i] {
						i++
					}
					t.Fatalf("round %d: %d frames, reference %d; first difference at %d", round, len(got), len(want), i)
				}
			}
		})
	}
}

// Lines framing with the nmea validator loses the sentences glued to a
// UBX packet; gnss does not (the motivating measurement).
func TestGNSSBeatsLines(t *testing.T) {
	data, err := os.ReadFile(realdata.Path(t, "ublox-zed-f9p_hpg1.11.log"))
	if err != nil {
		t.Fatal(err)
	}
	nmea, _, _, _ := refGNSSPackets(data)
	lineValid := 0
	frames, _, _ := cutAll(Lines(nil), DefaultMaxFrame, data)
	for _, f := range frames {
		if (NMEA{}).Valid([]byte(f)) == nil {
			lineValid++
		}
	}
	t.Logf("lines+nmea: %d of %d sentences", lineValid, nmea)
	if lineValid >= nmea {
		t.Fatalf("lines+nmea found %d of %d: the capture no longer shows the problem", lineValid, nmea)
	}
}

func FuzzGNSS(f *testing.F) {
	f.Add([]byte(nmeaSentence("GPGGA,1")+"\r\n"), uint16(16), []byte{1})
	f.Add(append(ubxPacket(1, 7, []byte("$GP*00\r\n")), "$GPX*58\n"...), uint16(4), []byte{3})
	f.Add(append(rtcmPacket([]byte{0x3E, 0xD0}), 0xB5, 0x62, 1, 2, 0xFF, 0x00, '$'), uint16(4), []byte{2, 1})
	f.Fuzz(func(t *testing.T, in []byte, maxRaw uint16, pattern []byte) {
		fuzzFramer(t, "gnss", in, maxRaw, pattern, true)
		// Every frame is a packet that checks out.
		frames, _, _ := cutAll(GNSS(), 0, bytes.Clone(in))
		for _, fr := range frames {
			p := []byte(fr)
			switch p[0] {
			case '$', '!':
				if (NMEA{}).Valid(p) != nil {
					t.Fatalf("invalid sentence %q", p)
				}
			case 0xB5:
				n := int(binary.LittleEndian.Uint16(p[4:6]))
				if !bytes.Equal(ubxPacket(p[2], p[3], p[6:6+n]), p) {
					t.Fatalf("invalid UBX %x", p)
				}
			case 0xD3:
				if !bytes.Equal(rtcmPacket(p[3:len(p)-3]), p) {
					t.Fatalf("invalid RTCM %x", p)
				}
			default:
				t.Fatalf("frame %q", p)
			}
		}
	})
}
