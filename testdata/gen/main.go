//go:build ignore

// Command gen regenerates serialcbd's demo recordings: a GPS receiver (NMEA 0183, 1 Hz,
// GGA/GSA/GSV/RMC/VTG, CRLF) driving a loop, and a 10 Hz environment sensor (CSV).
package main

import (
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
}
