//go:build ignore

// Command gen regenerates serialcbd's demo recordings: a GPS receiver (NMEA 0183, 1 Hz,
// GGA/GSA/GSV/RMC/VTG, CRLF) driving a loop, and a 10 Hz environment sensor (CSV); and the
// golden stream framing/gnss/mixed.bin: a GNSS receiver's NMEA, UBX and RTCM 3 packets on one
// port, with the faults gnss framing must survive (see gnssMixed).
package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strings"
	"time"
)

func cs(s string) string {
	var c byte
	for i := 0; i < len(s); i++ {
		c ^= s[i]
	}
	return fmt.Sprintf("$%s*%02X\r\n", s, c)
}

func dm(v float64, pos, neg string, degw int) (string, string) {
	h := pos
	if v < 0 {
		h, v = neg, -v
	}
	d := math.Floor(v)
	m := (v - d) * 60
	return fmt.Sprintf("%0*d%07.4f", degw, int(d), m), h
}

func main() {
	r := rand.New(rand.NewSource(7))
	var b strings.Builder
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	lat0, lon0 := 48.858370, 2.294481
	for i := 0; i < 120; i++ {
		t := t0.Add(time.Duration(i) * time.Second)
		ang := float64(i) / 120 * 2 * math.Pi
		lat := lat0 + 0.0009*math.Sin(ang)
		lon := lon0 + 0.0013*(1-math.Cos(ang))
		spd := 11.5 + r.Float64()*1.5
		crs := math.Mod(ang*180/math.Pi+90, 360)
		hms := t.Format("150405") + ".00"
		la, lh := dm(lat, "N", "S", 2)
		lo, loh := dm(lon, "E", "W", 3)
		sats := 8 + r.Intn(3)
		b.WriteString(cs(fmt.Sprintf("GPGGA,%s,%s,%s,%s,%s,1,%02d,%.1f,%.1f,M,47.3,M,,", hms, la, lh, lo, loh, sats, 0.9+r.Float64()*0.3, 35+r.Float64()*2)))
		b.WriteString(cs(fmt.Sprintf("GPGSA,A,3,04,05,09,12,17,19,24,25,,,,,%.1f,%.1f,%.1f", 1.6, 0.9, 1.3)))
		if i%5 == 0 {
			svs := []int{4, 5, 9, 12, 17, 19, 24, 25, 28, 31, 32}
			n := len(svs)
			pages := (n + 3) / 4
			for p := 0; p < pages; p++ {
				s := fmt.Sprintf("GPGSV,%d,%d,%02d", pages, p+1, n)
				for k := p * 4; k < min(n, p*4+4); k++ {
					s += fmt.Sprintf(",%02d,%02d,%03d,%02d", svs[k], 10+r.Intn(70), r.Intn(360), 20+r.Intn(25))
				}
				b.WriteString(cs(s))
			}
		}
		b.WriteString(cs(fmt.Sprintf("GPRMC,%s,A,%s,%s,%s,%s,%.2f,%.2f,%s,,,A", hms, la, lh, lo, loh, spd, crs, t.Format("020106"))))
		b.WriteString(cs(fmt.Sprintf("GPVTG,%.2f,T,,M,%.2f,N,%.2f,K,A", crs, spd, spd*1.852)))
	}
	os.WriteFile("testdata/demo/gps-nmea.log", []byte(b.String()), 0o644)

	var c strings.Builder
	c.WriteString("# device=envsensor-7 fields=ms,temp_c,rh_pct,pressure_hpa,co2_ppm rate=10Hz\n")
	temp, rh, p, co2 := 21.4, 44.0, 1013.2, 612.0
	for i := 0; i < 1200; i++ {
		temp += (r.Float64() - 0.5) * 0.04
		rh += (r.Float64() - 0.5) * 0.1
		p += (r.Float64() - 0.5) * 0.02
		co2 += (r.Float64() - 0.48) * 2
		fmt.Fprintf(&c, "%d,%.2f,%.1f,%.2f,%.0f\n", i*100, temp, rh, p, co2)
	}
	os.WriteFile("testdata/demo/sensor-csv.log", []byte(c.String()), 0o644)

	os.WriteFile("testdata/framing/gnss/mixed.bin", gnssMixed(), 0o644)
}

// ubx is a u-blox UBX packet: B5 62, class, id, u16 LE length, payload, and the 8-bit
// Fletcher checksum over class to payload.
func ubx(class, id byte, payload []byte) []byte {
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

// crc24q is RTCM 3's CRC-24Q (poly 0x1864CFB, init 0), bit by bit. It gives 36 0B 98 for
// the message 1005 example of RTCM 10403 (D3 00 13 3E D7 D3 02 02 98 0E DE EF 34 B4 BD 62
// AC 09 41 98 6F 33), which gnssMixed checks before writing.
func crc24q(p []byte) uint32 {
	var crc uint32
	for _, b := range p {
		crc ^= uint32(b) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= 0x1864CFB
			}
		}
	}
	return crc & 0xFFFFFF
}

// rtcm3 is an RTCM 3 frame: D3, 6 zero bits and a 10-bit length, the message, CRC-24Q.
func rtcm3(msg []byte) []byte {
	p := append([]byte{0xD3, byte(len(msg) >> 8), byte(len(msg))}, msg...)
	crc := crc24q(p)
	return append(p, byte(crc>>16), byte(crc>>8), byte(crc))
}

// bits packs big-endian bit fields, as RTCM 3 messages are laid out.
type bits struct {
	b []byte
	n int
}

func (w *bits) put(width int, v int64) {
	for i := width - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 == 1 {
			w.b[len(w.b)-1] |= 0x80 >> uint(w.n%8)
		}
		w.n++
	}
}

// msg1005 is RTCM 3 message 1005 (stationary reference station ARP): the ECEF position of a
// station at lat, lon (degrees) and height h (m) on WGS 84, in 0.1 mm.
func msg1005(station int64, lat, lon, h float64) []byte {
	const a, f = 6378137.0, 1 / 298.257223563
	e2 := f * (2 - f)
	phi, lam := lat*math.Pi/180, lon*math.Pi/180
	n := a / math.Sqrt(1-e2*math.Sin(phi)*math.Sin(phi))
	x := (n + h) * math.Cos(phi) * math.Cos(lam)
	y := (n + h) * math.Cos(phi) * math.Sin(lam)
	z := (n*(1-e2) + h) * math.Sin(phi)
	var w bits
	w.put(12, 1005)    // DF002 message number
	w.put(12, station) // DF003 reference station ID
	w.put(6, 0)        // DF021 ITRF realisation year
	w.put(1, 1)        // DF022 GPS
	w.put(1, 1)        // DF023 GLONASS
	w.put(1, 1)        // DF024 Galileo
	w.put(1, 0)        // DF141 physical reference station
	w.put(38, int64(math.Round(x*1e4)))
	w.put(1, 0) // DF142 single receiver oscillator
	w.put(1, 0) // DF001 reserved
	w.put(38, int64(math.Round(y*1e4)))
	w.put(2, 0) // DF364 quarter cycle indicator
	w.put(38, int64(math.Round(z*1e4)))
	return w.b
}

// gnssMixed is what a u-blox receiver with NMEA, UBX and RTCM 3 output enabled sends in two
// seconds, with the faults of a real line: boot noise, binary packets glued to the next '$'
// (no line break), a UBX packet with a bad checksum, a sentence with a bad checksum, a
// sentence and a UBX packet cut short by the next packet, a false RTCM sync, and a UBX
// packet still arriving at the end. Nothing random: the same bytes every run.
func gnssMixed() []byte {
	// The generator's CRC must give the standard's example value.
	example := []byte{0xD3, 0x00, 0x13, 0x3E, 0xD7, 0xD3, 0x02, 0x02, 0x98, 0x0E, 0xDE, 0xEF, 0x34, 0xB4,
		0xBD, 0x62, 0xAC, 0x09, 0x41, 0x98, 0x6F, 0x33}
	if crc24q(example) != 0x360B98 {
		panic(fmt.Sprintf("crc24q of the RTCM 10403 example = %06X, want 360B98", crc24q(example)))
	}
	nmea := func(body string) string { return strings.TrimSuffix(cs(body), "\r\n") }
	t0 := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	le32 := func(p []byte, v int32) []byte { return binary.LittleEndian.AppendUint32(p, uint32(v)) }
	navPVT := func(t time.Time) []byte { // UBX-NAV-PVT (01 07), 92 bytes
		tow := (int(t.Weekday())*86400 + t.Hour()*3600 + t.Minute()*60 + t.Second() + 18) * 1000
		p := le32(nil, int32(tow))
		p = binary.LittleEndian.AppendUint16(p, uint16(t.Year()))
		p = append(p, byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0x37)
		p = le32(p, 25)                              // tAcc ns
		p = le32(p, 0)                               // nano
		p = append(p, 3, 0x01, 0xEA, 12)             // 3D fix, gnssFixOK, flags2, numSV
		p = le32(p, 22944810)                        // lon 1e-7 deg
		p = le32(p, 488583700)                       // lat
		p = le32(p, 82400)                           // height mm
		p = le32(p, 35100)                           // hMSL mm
		p = le32(p, 1250)                            // hAcc mm
		p = le32(p, 1870)                            // vAcc mm
		p = le32(p, -4)                              // velN mm/s
		p = le32(p, 11)                              // velE
		p = le32(p, -2)                              // velD
		p = le32(p, 12)                              // gSpeed
		p = le32(p, 0)                               // headMot
		p = le32(p, 310)                             // sAcc
		p = le32(p, 18000000)                        // headAcc
		p = binary.LittleEndian.AppendUint16(p, 123) // pDOP 0.01
		p = append(p, make([]byte, 6)...)            // flags3, reserved
		p = le32(p, 0)                               // headVeh
		return append(p, 0, 0, 0, 0)                 // magDec, magAcc
	}
	navClock := func(t time.Time) []byte { // UBX-NAV-CLOCK (01 22), 20 bytes
		tow := (int(t.Weekday())*86400 + t.Hour()*3600 + t.Minute()*60 + t.Second() + 18) * 1000
		p := le32(nil, int32(tow))
		p = le32(p, 481337) // clkB ns
		p = le32(p, 760)    // clkD ns/s
		p = le32(p, 21)     // tAcc ns
		return le32(p, 404) // fAcc ps/s
	}
	sentences := func(t time.Time) (rmc, vtg, gga, gsa, gll string) {
		hms := t.Format("150405") + ".00"
		rmc = nmea("GNRMC," + hms + ",A,4851.50220,N,00217.66886,E,0.023,,140326,,,A,V")
		vtg = nmea("GNVTG,,T,,M,0.023,N,0.043,K,A")
		gga = nmea("GNGGA," + hms + ",4851.50220,N,00217.66886,E,1,12,0.92,35.1,M,47.3,M,,")
		gsa = nmea("GNGSA,A,3,04,05,09,12,17,19,24,25,,,,,1.23,0.92,0.81,1")
		gll = nmea("GNGLL,4851.50220,N,00217.66886,E," + hms + ",A,A")
		return
	}
	var b []byte
	put := func(s ...string) {
		for _, x := range s {
			b = append(b, x...)
		}
	}

	// Boot: line noise, a banner that is no sentence, a false RTCM sync (D3 then a byte
	// with reserved bits set), then the receiver's first sentence.
	b = append(b, 0x00, 0xFF, 0xFE)
	put("u-blox boot\r\n")
	b = append(b, 0xD3, 0xFF, 0x00)
	put(nmea("GNTXT,01,01,02,u-blox AG - www.u-blox.com"), "\r\n")

	// Second 1, all well: NMEA, then UBX and RTCM glued to the next '$', a sentence with
	// LF only, a UBX poll (no payload) and an ACK.
	rmc, vtg, gga, gsa, gll := sentences(t0)
	put(rmc, "\r\n")
	b = append(b, ubx(0x01, 0x07, navPVT(t0))...)
	put(vtg, "\r\n", gga, "\r\n")
	b = append(b, ubx(0x01, 0x22, navClock(t0))...)
	b = append(b, rtcm3(msg1005(2003, 48.858370, 2.294481, 82.4))...)
	put(gsa, "\r\n", gll, "\n")
	b = append(b, ubx(0x0A, 0x04, nil)...)
	b = append(b, ubx(0x05, 0x01, []byte{0x06, 0x8A})...)

	// Second 2, faults: a UBX packet whose checksum fails (glued to the next '$'), a
	// sentence with a bad checksum, a sentence cut short by the next '$', a UBX packet cut
	// short by the next sentence.
	t1 := t0.Add(time.Second)
	rmc, vtg, gga, gsa, gll = sentences(t1)
	bad := ubx(0x01, 0x22, navClock(t1))
	bad[len(bad)-1] ^= 0x40
	b = append(b, bad...)
	put(rmc, "\r\n")
	put(vtg[:len(vtg)-2], "00\r\n")
	put(gga[:30], gga, "\r\n")
	b = append(b, ubx(0x01, 0x07, navPVT(t1))[:40]...)
	put(gsa, "\r\n", gll, "\r\n")
	b = append(b, rtcm3(msg1005(2003, 48.858370, 2.294481, 82.4))...)

	// Second 3 starts: a sentence, then a UBX packet still arriving when the recording ends.
	t2 := t1.Add(time.Second)
	rmc, _, _, _, _ = sentences(t2)
	put(rmc, "\r\n")
	return append(b, ubx(0x01, 0x07, navPVT(t2))[:30]...)
}
